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

# A storage account and container for the application's files, reached with the
# application's managed identity (no account keys).
resource "azurerm_storage_account" "files" {
  #checkov:skip=CKV_AZURE_33:the application uses no queues
  #checkov:skip=CKV_AZURE_35:the application reaches the account over its public endpoint with Entra ID; branch environments have no private network
  #checkov:skip=CKV_AZURE_59:the application reaches the account over its public endpoint with Entra ID; branch environments have no private network
  #checkov:skip=CKV_AZURE_206:locally redundant storage for branch environments; use GRS in production
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; customer-managed keys need a key vault per environment
  #checkov:skip=CKV2_AZURE_33:no private endpoints: branch environments have no private network
  name                            = "st${var.compact}${var.suffix}b"
  resource_group_name             = var.resource_group_name
  location                        = var.location
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  shared_access_key_enabled       = false
  allow_nested_items_to_be_public = false
  tags                            = var.tags

  sas_policy {
    expiration_period = "00.01:00:00"
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }
}

resource "azurerm_storage_container" "files" {
  #checkov:skip=CKV2_AZURE_21:read-request logging needs a diagnostic setting and a workspace per environment; left to production set-ups
  name                  = "app"
  storage_account_id    = azurerm_storage_account.files.id
  container_access_type = "private"
}

output "account_id" {
  value = azurerm_storage_account.files.id
}

output "account_name" {
  value = azurerm_storage_account.files.name
}

output "blob_endpoint" {
  value = azurerm_storage_account.files.primary_blob_endpoint
}

output "container_name" {
  value = azurerm_storage_container.files.name
}
