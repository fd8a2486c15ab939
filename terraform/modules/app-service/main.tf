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

variable "runtime" {
  type        = string
  description = "java, node, python or dotnet (docker for a container)"
}

variable "app_settings" {
  type        = map(string)
  description = "Application settings that are not secret"
  default     = {}
}

variable "secret_settings" {
  type        = map(string)
  description = "Application settings whose value is a secret: setting name => secret name"
  default     = {}
}

variable "secret_names" {
  type        = list(string)
  description = "Names of the secrets in secret_values"
  default     = []
}

variable "secret_values" {
  type        = map(string)
  description = "Secret name => value"
  default     = {}
  sensitive   = true
}

variable "key_vault_secret_ids" {
  type        = map(string)
  description = "Secret name => versionless Key Vault secret ID, when the secrets live in Key Vault"
  default     = {}
}

variable "use_key_vault" {
  type        = bool
  description = "Whether secret settings are Key Vault references"
  default     = false
}

variable "health_path" {
  type    = string
  default = "/"
}

locals {
  skus = {
    dev      = "B1"
    standard = "S1"
    premium  = "P1v3"
  }
  # Secrets as Key Vault references (resolved by App Service with the app's identity),
  # or as values when there is no Key Vault.
  secret_settings = {
    for setting, secret in var.secret_settings : setting => (
      var.use_key_vault ? "@Microsoft.KeyVault(SecretUri=${var.key_vault_secret_ids[secret]})" : var.secret_values[secret]
    )
  }
  java = var.runtime == "java"
}

resource "azurerm_service_plan" "app" {
  #checkov:skip=CKV_AZURE_212:one instance per branch environment; set tier = "premium" and scale out for production
  #checkov:skip=CKV_AZURE_225:zone redundancy needs Premium v3 with three instances, too costly per branch environment
  #checkov:skip=CKV_AZURE_211:the dev tier is a Basic plan on purpose; tier = "premium" selects P1v3
  name                = "plan-${var.name}"
  resource_group_name = var.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = local.skus[var.tier]
  tags                = var.tags
}

resource "azurerm_linux_web_app" "app" {
  #checkov:skip=CKV_AZURE_13:the application does its own authentication; App Service authentication would put every environment behind a login
  #checkov:skip=CKV_AZURE_17:client certificates are not used by browsers reaching the application
  #checkov:skip=CKV_AZURE_222:the application is public; branch environments have no private network to be reached from
  #checkov:skip=CKV_AZURE_88:the application keeps no files on App Service storage
  name                                           = "app-${var.name}-${var.suffix}"
  resource_group_name                            = var.resource_group_name
  location                                       = var.location
  service_plan_id                                = azurerm_service_plan.app.id
  https_only                                     = true
  ftp_publish_basic_authentication_enabled       = false
  webdeploy_publish_basic_authentication_enabled = false
  tags                                           = var.tags

  identity {
    type = "SystemAssigned"
  }

  site_config {
    always_on                         = true
    ftps_state                        = "Disabled"
    http2_enabled                     = true
    minimum_tls_version               = "1.2"
    scm_minimum_tls_version           = "1.2"
    health_check_path                 = var.health_path
    health_check_eviction_time_in_min = 10

    application_stack {
      java_server         = local.java ? "JAVA" : null
      java_server_version = local.java ? "21" : null
      java_version        = local.java ? "21" : null
      node_version        = var.runtime == "node" ? "20-lts" : null
      python_version      = var.runtime == "python" ? "3.12" : null
      dotnet_version      = var.runtime == "dotnet" ? "8.0" : null
    }
  }

  logs {
    detailed_error_messages = true
    failed_request_tracing  = true

    http_logs {
      file_system {
        retention_in_days = 7
        retention_in_mb   = 35
      }
    }
  }

  app_settings = merge(var.app_settings, local.secret_settings, {
    # Python sources are built on the server (Oryx); other runtimes ship a build.
    SCM_DO_BUILD_DURING_DEPLOYMENT = var.runtime == "python" ? "true" : "false"
  })
}

output "app_name" {
  value = azurerm_linux_web_app.app.name
}

output "application_url" {
  value = "https://${azurerm_linux_web_app.app.default_hostname}"
}

output "scm_url" {
  value = "https://${azurerm_linux_web_app.app.name}.scm.azurewebsites.net"
}

output "principal_id" {
  description = "The app's managed identity, for role assignments"
  value       = azurerm_linux_web_app.app.identity[0].principal_id
}
