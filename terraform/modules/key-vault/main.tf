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

data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "vault" {
  #checkov:skip=CKV_AZURE_42:recoverability needs purge protection, which would keep a torn-down environment's vault name taken for 7 to 90 days; soft delete is on
  #checkov:skip=CKV_AZURE_109:the pipeline writes the secrets from GitHub-hosted runners, which have no private network; access is by Entra ID roles only
  #checkov:skip=CKV_AZURE_189:the pipeline writes the secrets from GitHub-hosted runners, which have no private network; access is by Entra ID roles only
  #checkov:skip=CKV_AZURE_110:purge protection would keep a torn-down environment's vault name taken for 7 to 90 days
  #checkov:skip=CKV2_AZURE_32:no private endpoints: branch environments have no private network
  name                          = "kv-${var.compact}-${var.suffix}"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = var.tier == "premium" ? "premium" : "standard"
  enable_rbac_authorization     = true
  purge_protection_enabled      = false
  soft_delete_retention_days    = 7
  public_network_access_enabled = true
  tags                          = var.tags

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }
}

# Whoever applies (the pipeline's identity) writes the secrets.
resource "azurerm_role_assignment" "deployer" {
  scope                = azurerm_key_vault.vault.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_key_vault_secret" "secret" {
  #checkov:skip=CKV_AZURE_41:the values belong to resources Terraform manages and change with them; an expiry date would break the application
  for_each     = toset(var.secret_names)
  name         = each.value
  value        = var.secret_values[each.value]
  key_vault_id = azurerm_key_vault.vault.id
  content_type = "text/plain"

  depends_on = [azurerm_role_assignment.deployer]
}

output "id" {
  value = azurerm_key_vault.vault.id
}

output "uri" {
  value = azurerm_key_vault.vault.vault_uri
}

output "secret_ids" {
  description = "Secret name => versionless secret ID (always the latest version)"
  value       = { for name, s in azurerm_key_vault_secret.secret : name => s.versionless_id }
}
