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

resource "azurerm_log_analytics_workspace" "insights" {
  name                = "log-${var.name}-insights"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = 30
  tags                = var.tags
}

resource "azurerm_application_insights" "insights" {
  name                = "appi-${var.name}"
  resource_group_name = var.resource_group_name
  location            = var.location
  workspace_id        = azurerm_log_analytics_workspace.insights.id
  application_type    = "web"
  tags                = var.tags
}

output "connection_string" {
  value     = azurerm_application_insights.insights.connection_string
  sensitive = true
}
