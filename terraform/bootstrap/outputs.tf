output "resource_group" {
  description = "Resource group of the state storage."
  value       = azurerm_resource_group.state.name
}

output "account_name" {
  description = "Name of the storage account."
  value       = azurerm_storage_account.state.name
}

output "account_id" {
  description = "Resource ID of the storage account (the scope for role assignments)."
  value       = azurerm_storage_account.state.id
}

output "account_url" {
  description = "Blob endpoint of the account, as [state] account_url takes it (no trailing slash)."
  value       = trimsuffix(azurerm_storage_account.state.primary_blob_endpoint, "/")
}

output "container" {
  description = "Container that holds the state of every environment."
  value       = azurerm_storage_container.state.name
}
