variable "subscription_id" {
  description = "The Azure subscription that holds the state storage."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "The subscription ID must be a GUID."
  }
}

variable "resource_group_name" {
  description = "Resource group of the state storage (created, or adopted when it exists)."
  type        = string

  validation {
    condition     = can(regex("^[-\\w.()]{1,90}$", var.resource_group_name)) && !endswith(var.resource_group_name, ".")
    error_message = "Resource group names are 1 to 90 letters, digits, '-', '_', '.', '(' and ')', not ending with '.'."
  }
}

variable "resource_group_location" {
  description = "Region of the resource group; null means the account's region. An existing group keeps its own."
  type        = string
  default     = null
}

variable "account_name" {
  description = "Storage account name: globally unique, 3 to 24 lowercase letters and digits."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]{3,24}$", var.account_name))
    error_message = "Storage account names are 3 to 24 lowercase letters and digits."
  }
}

variable "location" {
  description = "Azure region of the storage account, e.g. eastus."
  type        = string
}

variable "container_name" {
  description = "Blob container that holds the Terraform state of every environment."
  type        = string
  default     = "tfstate"

  validation {
    condition     = can(regex("^[a-z0-9](-?[a-z0-9])+$", var.container_name)) && length(var.container_name) <= 63
    error_message = "Container names are 3 to 63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit."
  }
}

variable "replication_type" {
  description = "Redundancy of the account: ZRS, GRS, RAGRS, GZRS or RAGZRS (LRS is refused: state is worth a second copy)."
  type        = string
  default     = "GRS"

  validation {
    condition     = contains(["ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.replication_type)
    error_message = "Use one of ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "infrastructure_encryption" {
  description = "Encrypt twice (service and infrastructure level). Fixed when the account is created."
  type        = bool
  default     = true
}

variable "soft_delete_days" {
  description = "Days deleted blobs and containers are kept before they are gone for good (7 to 365)."
  type        = number
  default     = 7

  validation {
    condition     = var.soft_delete_days >= 7 && var.soft_delete_days <= 365 && floor(var.soft_delete_days) == var.soft_delete_days
    error_message = "Soft delete must keep deleted state for 7 to 365 whole days."
  }
}

variable "resource_group_tags" {
  description = "Tags of the resource group (nubes passes an adopted group's own tags plus its own)."
  type        = map(string)
  default     = {}
}

variable "account_tags" {
  description = "Tags of the storage account (nubes passes an adopted account's own tags plus its own)."
  type        = map(string)
  default     = {}
}
