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
    standard = "GP_Standard_D2ds_v4"
    premium  = "GP_Standard_D4ds_v4"
  }
  username = "nubesadmin"
  database = "app"
  host     = azurerm_mysql_flexible_server.db.fqdn
}

# The administrator password lives only in Terraform state (and Key Vault, if chosen).
resource "random_password" "admin" {
  length      = 32
  special     = false
  min_upper   = 2
  min_lower   = 2
  min_numeric = 2
}

resource "azurerm_mysql_flexible_server" "db" {
  #checkov:skip=CKV_AZURE_94:geo-redundant backups are for production; branch environments are recreated from the repository
  #checkov:skip=CKV_AZURE_53:the application reaches the server over its public endpoint, limited to Azure services by the firewall rule below; branch environments have no private network
  #checkov:skip=CKV2_AZURE_56:the application reaches the server over its public endpoint, limited to Azure services by the firewall rule below; branch environments have no private network
  name                         = "mysql-${var.name}-${var.suffix}"
  resource_group_name          = var.resource_group_name
  location                     = var.location
  version                      = "8.0.21"
  administrator_login          = local.username
  administrator_password       = random_password.admin.result
  sku_name                     = local.skus[var.tier]
  backup_retention_days        = 7
  geo_redundant_backup_enabled = false
  tags                         = var.tags

  lifecycle {
    # Azure picks the zone; do not move the server afterwards.
    ignore_changes = [zone]
  }
}

# Connections without TLS are refused (MySQL's own default, made explicit).
resource "azurerm_mysql_flexible_server_configuration" "require_secure_transport" {
  name                = "require_secure_transport"
  resource_group_name = var.resource_group_name
  server_name         = azurerm_mysql_flexible_server.db.name
  value               = "ON"
}

resource "azurerm_mysql_flexible_server_configuration" "tls_version" {
  name                = "tls_version"
  resource_group_name = var.resource_group_name
  server_name         = azurerm_mysql_flexible_server.db.name
  value               = "TLSv1.2"
}

# Azure services only (0.0.0.0): the application reaches the server, the internet does not.
resource "azurerm_mysql_flexible_server_firewall_rule" "azure" {
  name                = "allow-azure-services"
  resource_group_name = var.resource_group_name
  server_name         = azurerm_mysql_flexible_server.db.name
  start_ip_address    = "0.0.0.0"
  end_ip_address      = "0.0.0.0"
}

resource "azurerm_mysql_flexible_database" "app" {
  name                = local.database
  resource_group_name = var.resource_group_name
  server_name         = azurerm_mysql_flexible_server.db.name
  charset             = "utf8mb4"
  collation           = "utf8mb4_unicode_ci"
}

output "host" {
  value = local.host
}

output "port" {
  value = 3306
}

output "database_name" {
  value = azurerm_mysql_flexible_database.app.name
}

output "username" {
  value = local.username
}

output "password" {
  value     = random_password.admin.result
  sensitive = true
}

output "jdbc_url" {
  value = "jdbc:mysql://${local.host}:3306/${local.database}?sslMode=REQUIRED"
}

output "url" {
  value     = "mysql://${local.username}:${urlencode(random_password.admin.result)}@${local.host}:3306/${local.database}?ssl-mode=REQUIRED"
  sensitive = true
}

output "ado_net_connection_string" {
  value     = "Server=${local.host};Port=3306;Database=${local.database};Uid=${local.username};Pwd=${random_password.admin.result};SslMode=Required"
  sensitive = true
}
