// The host's storage account: queues, tables and blobs for the Functions host and the sync
// pipeline (job records, leases, function packages, and the host's function keys in the
// azure-webjobs-secrets container). Reached only with the app identity: shared keys are off.
//
// Why the workspace share is not here by default: App Service mounts Azure Files only with an
// account key, and an account that accepts its key gives whoever holds it the function keys
// too. So the mounted share lives in a second account (workspace-storage.bicep), and this one
// turns shared-key access off. With workspaceThroughFilesApi the app reaches the share through
// the Azure Files REST API with its identity (no mount, no key), on this account.

@description('Azure region.')
param location string

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
param name string

@description('Queue of sync jobs, created here so the first webhook can enqueue at once.')
param syncQueueName string

@description('Also hold the workspace share here, reached through the Azure Files API with the identity (WORKSPACE_SHARE).')
param workspaceThroughFilesApi bool

@description('Azure Files share that holds the workspace (created here only with workspaceThroughFilesApi).')
param workspaceShareName string

@description('Quota of the workspace share in GiB.')
param workspaceShareQuotaGiB int

@description('Principal (the app identity) given data access to blobs, queues and tables (and files, with workspaceThroughFilesApi).')
param principalId string

@description('Tags for the account.')
param tags object = {}

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  // The Functions host keeps keys and leases in blobs; identity-based AzureWebJobsStorage needs Owner.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}
// For WORKSPACE_SHARE only: the Azure Files REST API with an identity needs the privileged role.
var storageFileDataPrivilegedContributor = '69566ab7-960f-475b-8e7c-b3118f30c6bd'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Everything here is reached with the app identity (see the comment at the top).
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource syncQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: syncQueueName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = if (workspaceThroughFilesApi) {
  parent: account
  name: 'default'
}

resource workspaceShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = if (workspaceThroughFilesApi) {
  parent: fileService
  name: workspaceShareName
  properties: {
    shareQuota: workspaceShareQuotaGiB
    accessTier: 'TransactionOptimized'
    enabledProtocols: 'SMB'
  }
}

resource roleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in items(roles): {
    name: guid(account.id, principalId, role.value)
    scope: account
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.value)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource filesApiAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (workspaceThroughFilesApi) {
  name: guid(account.id, principalId, storageFileDataPrivilegedContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageFileDataPrivilegedContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
