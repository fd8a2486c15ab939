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
  secret_settings = {
    for setting, secret in var.secret_settings : setting => (
      var.use_key_vault ? "@Microsoft.KeyVault(SecretUri=${var.key_vault_secret_ids[secret]})" : var.secret_values[secret]
    )
  }
}

# The Functions runtime's own storage, reached with the app's identity (no keys).
resource "azurerm_storage_account" "runtime" {
  #checkov:skip=CKV_AZURE_33:the runtime's queues need no request logging
  #checkov:skip=CKV_AZURE_35:branch environments have no private network; access is by Entra ID only (no shared keys)
  #checkov:skip=CKV_AZURE_59:branch environments have no private network; access is by Entra ID only (no shared keys)
  #checkov:skip=CKV_AZURE_206:locally redundant storage is enough for the runtime's working data
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; customer-managed keys need a key vault per environment
  #checkov:skip=CKV2_AZURE_33:no private endpoints: branch environments have no private network
  name                            = "st${var.compact}${var.suffix}f"
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

resource "azurerm_linux_function_app" "app" {
  #checkov:skip=CKV_AZURE_221:the functions are public; branch environments have no private network to be reached from
  name                                           = "func-${var.name}-${var.suffix}"
  resource_group_name                            = var.resource_group_name
  location                                       = var.location
  service_plan_id                                = azurerm_service_plan.app.id
  storage_account_name                           = azurerm_storage_account.runtime.name
  storage_uses_managed_identity                  = true
  https_only                                     = true
  functions_extension_version                    = "~4"
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
      java_version                = var.runtime == "java" ? "17" : null
      node_version                = var.runtime == "node" ? "20" : null
      python_version              = var.runtime == "python" ? "3.11" : null
      dotnet_version              = var.runtime == "dotnet" ? "8.0" : null
      use_dotnet_isolated_runtime = var.runtime == "dotnet" ? true : null
    }
  }

  app_settings = merge(var.app_settings, local.secret_settings, {
    SCM_DO_BUILD_DURING_DEPLOYMENT = var.runtime == "python" ? "true" : "false"
  })
}

resource "azurerm_role_assignment" "runtime_storage" {
  scope                = azurerm_storage_account.runtime.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_linux_function_app.app.identity[0].principal_id
}

output "app_name" {
  value = azurerm_linux_function_app.app.name
}

output "application_url" {
  value = "https://${azurerm_linux_function_app.app.default_hostname}"
}

output "scm_url" {
  value = "https://${azurerm_linux_function_app.app.name}.scm.azurewebsites.net"
}

output "principal_id" {
  description = "The app's managed identity, for role assignments"
  value       = azurerm_linux_function_app.app.identity[0].principal_id
}
