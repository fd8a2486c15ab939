terraform {
  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
    }
  }
}

variable "name" {
  type        = string
  description = "Base name: the project and environment, lowercase letters, digits and hyphens"
}

variable "compact" {
  type        = string
  description = "The base name without hyphens, at most 14 characters"
}

variable "suffix" {
  type        = string
  description = "A short hash of project and environment, for globally unique names"
}

variable "resource_group_name" {
  type = string
}

variable "location" {
  type = string
}

variable "tags" {
  type = map(string)
}

variable "tier" {
  type        = string
  description = "dev, standard or premium"
}

locals {
  database = "app"
}

resource "azurerm_cosmosdb_account" "db" {
  #checkov:skip=CKV_AZURE_99:the application reaches the account over its public endpoint; branch environments have no private network
  #checkov:skip=CKV_AZURE_101:the application reaches the account over its public endpoint; branch environments have no private network
  #checkov:skip=CKV_AZURE_100:Microsoft-managed keys; customer-managed keys need a key vault per environment
  #checkov:skip=CKV_AZURE_140:MongoDB drivers authenticate with the account key (kept in Key Vault when chosen)
  name                               = "cosmos-${trim(substr(var.name, 0, 30), "-")}-${var.suffix}"
  resource_group_name                = var.resource_group_name
  location                           = var.location
  offer_type                         = "Standard"
  kind                               = "MongoDB"
  mongo_server_version               = "4.2"
  public_network_access_enabled      = true
  access_key_metadata_writes_enabled = false
  minimal_tls_version                = "Tls12"
  tags                               = var.tags

  capabilities {
    name = "EnableMongo"
  }

  # Serverless in the dev tier: no cost while an environment is idle.
  dynamic "capabilities" {
    for_each = var.tier == "dev" ? ["EnableServerless"] : []
    content {
      name = capabilities.value
    }
  }

  consistency_policy {
    consistency_level = "Session"
  }

  geo_location {
    location          = var.location
    failover_priority = 0
  }
}

resource "azurerm_cosmosdb_mongo_database" "app" {
  name                = local.database
  resource_group_name = var.resource_group_name
  account_name        = azurerm_cosmosdb_account.db.name
}

output "database_name" {
  value = azurerm_cosmosdb_mongo_database.app.name
}

output "connection_string" {
  value     = azurerm_cosmosdb_account.db.primary_mongodb_connection_string
  sensitive = true
}
