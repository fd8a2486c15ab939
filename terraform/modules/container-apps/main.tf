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

variable "port" {
  type        = number
  description = "The port the application's container listens on"
  default     = 8080
}

variable "revision_mode" {
  type        = string
  description = "Single: each rollout replaces the revision; Multiple: nubes gives a new revision 0% behind the label `next`, health-checks it, then shifts traffic in [deploy] traffic_steps"
  default     = "Single"

  validation {
    condition     = contains(["Single", "Multiple"], var.revision_mode)
    error_message = "revision_mode must be Single or Multiple."
  }
}

variable "key_vault_id" {
  type        = string
  description = "The Key Vault holding the secrets, when use_key_vault is true"
  default     = null
}

variable "shared_registry" {
  type = object({
    resource_group_name = string
    name                = string
  })
  description = "An existing registry shared by every environment (images tagged per environment); null: one registry per environment"
  default     = null
}

data "azurerm_container_registry" "shared" {
  count               = var.shared_registry == null ? 0 : 1
  name                = var.shared_registry.name
  resource_group_name = var.shared_registry.resource_group_name
}

locals {
  registry_id           = var.shared_registry == null ? azurerm_container_registry.app[0].id : data.azurerm_container_registry.shared[0].id
  registry_name         = var.shared_registry == null ? azurerm_container_registry.app[0].name : data.azurerm_container_registry.shared[0].name
  registry_login_server = var.shared_registry == null ? azurerm_container_registry.app[0].login_server : data.azurerm_container_registry.shared[0].login_server

  resources = {
    dev      = { cpu = 0.5, memory = "1Gi", max_replicas = 1 }
    standard = { cpu = 1, memory = "2Gi", max_replicas = 3 }
    premium  = { cpu = 2, memory = "4Gi", max_replicas = 10 }
  }
  # Container app names: at most 32 characters.
  app_name = "ca-${trim(substr(var.name, 0, 29), "-")}"
}

resource "azurerm_log_analytics_workspace" "app" {
  name                = "log-${var.name}"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = 30
  tags                = var.tags
}

resource "azurerm_container_registry" "app" {
  #checkov:skip=CKV_AZURE_139:images are pushed by nubes from GitHub-hosted runners, which have no private network
  #checkov:skip=CKV_AZURE_163:vulnerability scanning is Defender for Cloud's, enabled per subscription, not per environment
  #checkov:skip=CKV_AZURE_164:content trust needs the Premium SKU, too costly per branch environment
  #checkov:skip=CKV_AZURE_165:geo-replication needs the Premium SKU, too costly per branch environment
  #checkov:skip=CKV_AZURE_166:quarantine needs the Premium SKU, too costly per branch environment
  #checkov:skip=CKV_AZURE_167:retention of untagged manifests needs the Premium SKU, too costly per branch environment
  #checkov:skip=CKV_AZURE_233:zone redundancy needs the Premium SKU, too costly per branch environment
  #checkov:skip=CKV_AZURE_237:dedicated data endpoints need the Premium SKU, too costly per branch environment
  count               = var.shared_registry == null ? 1 : 0
  name                = "cr${var.compact}${var.suffix}"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "Basic"
  admin_enabled       = false
  tags                = var.tags
}

# The app's identity: pulls images and reads its secrets.
resource "azurerm_user_assigned_identity" "app" {
  name                = "id-${var.name}"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_role_assignment" "pull" {
  scope                = local.registry_id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
}

resource "azurerm_role_assignment" "key_vault" {
  count                = var.use_key_vault ? 1 : 0
  scope                = var.key_vault_id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
}

resource "azurerm_container_app_environment" "app" {
  name                       = "cae-${var.name}"
  resource_group_name        = var.resource_group_name
  location                   = var.location
  log_analytics_workspace_id = azurerm_log_analytics_workspace.app.id
  tags                       = var.tags
}

resource "azurerm_container_app" "app" {
  name                         = local.app_name
  container_app_environment_id = azurerm_container_app_environment.app.id
  resource_group_name          = var.resource_group_name
  revision_mode                = var.revision_mode
  tags                         = var.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.app.id]
  }

  registry {
    server   = local.registry_login_server
    identity = azurerm_user_assigned_identity.app.id
  }

  dynamic "secret" {
    for_each = toset(var.secret_names)
    content {
      name                = secret.value
      value               = var.use_key_vault ? null : var.secret_values[secret.value]
      key_vault_secret_id = var.use_key_vault ? var.key_vault_secret_ids[secret.value] : null
      identity            = var.use_key_vault ? azurerm_user_assigned_identity.app.id : null
    }
  }

  ingress {
    external_enabled = true
    target_port      = var.port

    traffic_weight {
      percentage      = 100
      latest_revision = true
    }
  }

  template {
    min_replicas = 0
    max_replicas = local.resources[var.tier].max_replicas

    container {
      name = "app"
      # A placeholder until nubes deploys the first image (by digest, as a new
      # revision); the images and revisions nubes rolls out are left alone below.
      image  = "mcr.microsoft.com/k8se/quickstart:latest"
      cpu    = local.resources[var.tier].cpu
      memory = local.resources[var.tier].memory

      # DefaultAzureCredential picks the user-assigned identity with this.
      env {
        name  = "AZURE_CLIENT_ID"
        value = azurerm_user_assigned_identity.app.client_id
      }

      dynamic "env" {
        for_each = var.app_settings
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = var.secret_settings
        content {
          name        = env.key
          secret_name = env.value
        }
      }

      liveness_probe {
        transport = "HTTP"
        port      = var.port
        path      = var.health_path
      }
    }
  }

  lifecycle {
    ignore_changes = [
      template[0].container[0].image,
      template[0].revision_suffix,
      ingress[0].traffic_weight,
    ]
  }

  depends_on = [azurerm_role_assignment.pull, azurerm_role_assignment.key_vault]
}

output "application_url" {
  value = "https://${azurerm_container_app.app.ingress[0].fqdn}"
}

output "container_app_name" {
  value = azurerm_container_app.app.name
}

output "container_app_id" {
  value = azurerm_container_app.app.id
}

output "registry_name" {
  value = local.registry_name
}

output "registry_login_server" {
  value = local.registry_login_server
}

output "principal_id" {
  description = "The app's managed identity, for role assignments"
  value       = azurerm_user_assigned_identity.app.principal_id
}
