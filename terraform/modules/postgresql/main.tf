terraform {
  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
    }
    random = {
      source = "hashicorp/random"
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
  skus = {
    dev      = "B_Standard_B1ms"
    standard = "GP_Standard_D2ds_v5"
    premium  = "GP_Standard_D4ds_v5"
  }
  username = "nubesadmin"
  database = "app"
  host     = azurerm_postgresql_flexible_server.db.fqdn
}

# The administrator password lives only in Terraform state (and Key Vault, if chosen).
resource "random_password" "admin" {
  length      = 32
  special     = false
  min_upper   = 2
  min_lower   = 2
  min_numeric = 2
}

resource "azurerm_postgresql_flexible_server" "db" {
  #checkov:skip=CKV_AZURE_136:geo-redundant backups are for production; branch environments are recreated from the repository
  #checkov:skip=CKV2_AZURE_57:no private endpoints: branch environments have no private network
  name                          = "psql-${var.name}-${var.suffix}"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  version                       = "16"
  administrator_login           = local.username
  administrator_password        = random_password.admin.result
  sku_name                      = local.skus[var.tier]
  storage_mb                    = 32768
  backup_retention_days         = 7
  geo_redundant_backup_enabled  = false
  public_network_access_enabled = true
  tags                          = var.tags

  lifecycle {
    # Azure picks the zone; do not move the server afterwards.
    ignore_changes = [zone]
  }
}

# Azure services only (0.0.0.0): the application reaches the server, the internet does not.
resource "azurerm_postgresql_flexible_server_firewall_rule" "azure" {
  #checkov:skip=CKV2_AZURE_26:0.0.0.0 to 0.0.0.0 admits Azure services only (Azure's convention), not the internet; branch environments have no private network
  name             = "allow-azure-services"
  server_id        = azurerm_postgresql_flexible_server.db.id
  start_ip_address = "0.0.0.0"
  end_ip_address   = "0.0.0.0"
}

resource "azurerm_postgresql_flexible_server_database" "app" {
  name      = local.database
  server_id = azurerm_postgresql_flexible_server.db.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

output "host" {
  value = local.host
}

output "port" {
  value = 5432
}

output "database_name" {
  value = azurerm_postgresql_flexible_server_database.app.name
}

output "username" {
  value = local.username
}

output "password" {
  value     = random_password.admin.result
  sensitive = true
}

output "jdbc_url" {
  value = "jdbc:postgresql://${local.host}:5432/${local.database}?sslmode=require"
}

output "url" {
  value     = "postgresql://${local.username}:${urlencode(random_password.admin.result)}@${local.host}:5432/${local.database}?sslmode=require"
  sensitive = true
}

output "ado_net_connection_string" {
  value     = "Host=${local.host};Port=5432;Database=${local.database};Username=${local.username};Password=${random_password.admin.result};Ssl Mode=Require"
  sensitive = true
}
