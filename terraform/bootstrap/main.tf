resource "azurerm_resource_group" "state" {
  name     = var.resource_group_name
  location = coalesce(var.resource_group_location, var.location)
  tags     = var.resource_group_tags

  # Every environment's state lives below: never let a plan delete it.
  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_storage_account" "state" {
  # checkov:skip=CKV_AZURE_59:GitHub-hosted runners have no fixed addresses to allow, so the endpoint stays reachable; every request needs an Entra ID token (shared keys are disabled) and an RBAC role on the account.
  # checkov:skip=CKV2_AZURE_33:A private endpoint needs a virtual network the runners are in; GitHub-hosted runners are not. Self-hosted setups can add one outside this module.
  # checkov:skip=CKV2_AZURE_1:A customer-managed key needs a Key Vault (and its own state) before the state storage exists; Microsoft-managed keys plus infrastructure encryption encrypt the state twice at rest.
  # checkov:skip=CKV_AZURE_33:The account serves blobs only (Terraform state); the queue service is unused, so queue logging has nothing to record.
  name                     = var.account_name
  resource_group_name      = azurerm_resource_group.state.name
  location                 = var.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.replication_type
  access_tier              = "Hot"

  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = var.infrastructure_encryption

  # Only user-delegation SAS can exist without shared keys; keep even those short.
  sas_policy {
    expiration_period = "01.00:00:00"
    expiration_action = "Log"
  }

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = var.soft_delete_days
    }

    container_delete_retention_policy {
      days = var.soft_delete_days
    }
  }

  tags = var.account_tags

  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_storage_container" "state" {
  # checkov:skip=CKV2_AZURE_21:Blob read logging needs a Log Analytics workspace (or another sink) the organisation chooses and pays for; add a diagnostic setting on the account's blob service outside this module. Versioning keeps every state write recoverable.
  name                  = var.container_name
  storage_account_id    = azurerm_storage_account.state.id
  container_access_type = "private"

  lifecycle {
    prevent_destroy = true
  }
}
