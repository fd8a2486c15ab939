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
    dev      = "Basic"
    standard = "S1"
    premium  = "P1"
  }
  username = "nubesadmin"
  database = "app"
  host     = azurerm_mssql_server.db.fully_qualified_domain_name
}

# The administrator password lives only in Terraform state (and Key Vault, if chosen).
resource "random_password" "admin" {
  length      = 32
  special     = false
  min_upper   = 2
  min_lower   = 2
  min_numeric = 2
}

resource "azurerm_mssql_server" "db" {
  #checkov:skip=CKV_AZURE_113:the application reaches the server over its public endpoint, limited to Azure services by the firewall rule below
  #checkov:skip=CKV_AZURE_23:auditing to a storage account per branch environment is left to production set-ups
  #checkov:skip=CKV_AZURE_24:auditing to a storage account per branch environment is left to production set-ups
  #checkov:skip=CKV2_AZURE_2:vulnerability assessment needs a storage account per environment; left to production set-ups
  #checkov:skip=CKV2_AZURE_27:SQL authentication keeps the application settings portable across runtimes
  #checkov:skip=CKV2_AZURE_45:no private endpoints: branch environments have no private network
  name                          = "sql-${var.name}-${var.suffix}"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  version                       = "12.0"
  administrator_login           = local.username
  administrator_login_password  = random_password.admin.result
  minimum_tls_version           = "1.2"
  public_network_access_enabled = true
  tags                          = var.tags
}

# Azure services only (0.0.0.0): the application reaches the server, the internet does not.
resource "azurerm_mssql_firewall_rule" "azure" {
  #checkov:skip=CKV2_AZURE_34:0.0.0.0 to 0.0.0.0 admits Azure services only (Azure's convention), not the internet; branch environments have no private network
  name             = "allow-azure-services"
  server_id        = azurerm_mssql_server.db.id
  start_ip_address = "0.0.0.0"
  end_ip_address   = "0.0.0.0"
}

resource "azurerm_mssql_database" "app" {
  #checkov:skip=CKV_AZURE_224:ledger tables cannot be turned off again; a choice for the application, not for every branch environment
  #checkov:skip=CKV_AZURE_229:zone redundancy needs the Premium or Business Critical tier, too costly per branch environment
  name           = local.database
  server_id      = azurerm_mssql_server.db.id
  sku_name       = local.skus[var.tier]
  zone_redundant = false
  tags           = var.tags
}

output "host" {
  value = local.host
}

output "port" {
  value = 1433
}

output "database_name" {
  value = azurerm_mssql_database.app.name
}

output "username" {
  value = local.username
}

output "password" {
  value     = random_password.admin.result
  sensitive = true
}

output "jdbc_url" {
  value = "jdbc:sqlserver://${local.host}:1433;database=${local.database};encrypt=true;trustServerCertificate=false;hostNameInCertificate=*.database.windows.net;loginTimeout=30;"
}

output "url" {
  value     = "mssql://${local.username}:${urlencode(random_password.admin.result)}@${local.host}:1433/${local.database}?encrypt=true"
  sensitive = true
}

output "ado_net_connection_string" {
  value     = "Server=tcp:${local.host},1433;Database=${local.database};User ID=${local.username};Password=${random_password.admin.result};Encrypt=True;TrustServerCertificate=False"
  sensitive = true
}
