# The state storage of a nubes project: resource group, storage account, `tfstate`
# container. Rendered and applied by `nubes bootstrap`, which embeds this module;
# see README.md ("nubes bootstrap") for what it creates and why.

terraform {
  required_version = ">= 1.5.0" # import blocks

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.50"
    }
  }
}

provider "azurerm" {
  features {}

  subscription_id = var.subscription_id
  # Shared keys are disabled on the account, so the provider must reach blob storage
  # with Entra ID tokens.
  storage_use_azuread = true
}
