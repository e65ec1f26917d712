// The user-assigned identity the Function App runs as: it reads storage, Key Vault and the registry.
// User-assigned (not system-assigned) so its roles exist before the app first starts.

@description('Azure region.')
param location string

@description('Name of the identity.')
param name string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
