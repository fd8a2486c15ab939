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

locals {
  skus = {
    dev      = { sku = "Basic", family = "C", capacity = 0 }
    standard = { sku = "Standard", family = "C", capacity = 1 }
    premium  = { sku = "Premium", family = "P", capacity = 1 }
  }
}

resource "azurerm_redis_cache" "cache" {
  #checkov:skip=CKV_AZURE_89:the application reaches the cache over its public endpoint (TLS and a key); branch environments have no private network
  name                          = "redis-${var.name}-${var.suffix}"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  sku_name                      = local.skus[var.tier].sku
  family                        = local.skus[var.tier].family
  capacity                      = local.skus[var.tier].capacity
  minimum_tls_version           = "1.2"
  non_ssl_port_enabled          = false
  public_network_access_enabled = true
  tags                          = var.tags

  redis_configuration {}
}

output "host" {
  value = azurerm_redis_cache.cache.hostname
}

output "port" {
  value = azurerm_redis_cache.cache.ssl_port
}

output "primary_access_key" {
  value     = azurerm_redis_cache.cache.primary_access_key
  sensitive = true
}

output "uri" {
  value     = "rediss://:${urlencode(azurerm_redis_cache.cache.primary_access_key)}@${azurerm_redis_cache.cache.hostname}:${azurerm_redis_cache.cache.ssl_port}"
  sensitive = true
}
