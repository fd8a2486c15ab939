# The demo's infrastructure, NubesGen-shaped. Only built-in resources, so it runs
# anywhere; a real project would create a storage account with static website hosting
# here and output its blob endpoint.
terraform {
  backend "azurerm" {}
}

variable "environment" {
  type = string
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "site_account_url" {
  type        = string
  description = "Blob endpoint of the storage account that serves the site from $web"
}

resource "terraform_data" "resource_group" {
  input = "rg-demo-${var.environment}"
}

resource "terraform_data" "site" {
  input = {
    account = var.site_account_url
    tags    = var.tags
  }
}

output "resource_group" {
  value = terraform_data.resource_group.output
}

output "static_site_account_url" {
  value = var.site_account_url
}

output "application_url" {
  value = "${var.site_account_url}/$web"
}
