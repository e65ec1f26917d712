// The second storage account: only the Azure Files share the Function App mounts at /workspace.
// App Service mounts a share only with the account key, so this account keeps shared-key access
// on; it holds nothing else, so that key opens the workspace and nothing of the host's (its
// queues, tables and function keys live in the host account, whose shared keys are off).

@description('Azure region.')
param location string

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
param name string

@description('Azure Files share that holds the workspace.')
param workspaceShareName string

@description('Quota of the workspace share in GiB.')
@minValue(1)
param workspaceShareQuotaGiB int

@description('Tags for the account.')
param tags object = {}

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
    // The SMB mount authenticates with the account key (the reason this account exists).
    allowSharedKeyAccess: true
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource workspaceShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: fileService
  name: workspaceShareName
  properties: {
    shareQuota: workspaceShareQuotaGiB
    accessTier: 'TransactionOptimized'
    enabledProtocols: 'SMB'
  }
}

output name string = account.name
