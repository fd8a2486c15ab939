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

# Files served from the storage account's static website ($web); nubes syncs them with
# Entra ID (no account keys).
resource "azurerm_storage_account" "site" {
  #checkov:skip=CKV_AZURE_33:the site uses no queues
  #checkov:skip=CKV_AZURE_35:a static website is public by design
  #checkov:skip=CKV_AZURE_59:a static website is public by design
  #checkov:skip=CKV_AZURE_206:locally redundant storage is enough: the files are rebuilt from the repository
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; customer-managed keys need a key vault per environment
  #checkov:skip=CKV2_AZURE_33:no private endpoints: a static website is public by design
  name                            = "st${var.compact}${var.suffix}s"
  resource_group_name             = var.resource_group_name
  location                        = var.location
  account_kind                    = "StorageV2"
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

data "azurerm_client_config" "current" {}

# Whoever applies (the pipeline's identity) writes the site's files.
resource "azurerm_role_assignment" "deployer" {
  scope                = azurerm_storage_account.site.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_storage_account_static_website" "site" {
  storage_account_id = azurerm_storage_account.site.id
  index_document     = "index.html"
  error_404_document = "index.html"

  depends_on = [azurerm_role_assignment.deployer]
}

output "application_url" {
  value = trimsuffix(azurerm_storage_account.site.primary_web_endpoint, "/")
}

output "static_site_account_url" {
  description = "The blob endpoint nubes syncs the site to ($web)"
  value       = trimsuffix(azurerm_storage_account.site.primary_blob_endpoint, "/")
}
