// The Linux Function App (our container image) on an Elastic Premium plan, which can mount Azure
// Files: the workspace share is mounted at /workspace (from the workspace account, unless the app
// reaches it through the Files API), and every contract setting is an app setting.

@description('Azure region.')
param location string

@description('Name of the Function App (also its host name).')
param name string

@description('Name of the Elastic Premium plan.')
param planName string

@description('Elastic Premium plan size.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string

@description('Most instances the app scales out to.')
@minValue(1)
param maximumWorkerCount int

@description('Container image to run, e.g. myregistry.azurecr.io/gitops-sync:1.0.0.')
param containerImage string

@description('Pull the image with the app identity (the image lives in an Azure Container Registry).')
param pullWithIdentity bool

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (for identity-based storage and Azure SDK clients).')
param identityClientId string

@description('Host storage account for AzureWebJobsStorage (identity-based; shared keys off).')
param storageAccountName string

@description('Storage account holding the mounted workspace share (unused with workspaceThroughFilesApi).')
param workspaceStorageAccountName string

@description('Azure Files share mounted as the workspace.')
param workspaceShareName string

@description('Set WORKSPACE_SHARE and mount nothing: the app reaches the share in the host account through the Azure Files API.')
param workspaceThroughFilesApi bool

@description('DEPLOY_TARGET=functionapp: deploy functions to a separate Function App, not this app\'s runtime.')
param deployToFunctionApp bool

@description('DEPLOY_PACKAGE_CONTAINER: blob container of the function packages.')
param packageContainerName string

@description('DEPLOY_VERSIONS_KEPT: versions kept per function.')
@minValue(1)
param versionsKept int

@description('DEPLOY_FUNCTIONAPP_ID: resource id of the target Function App (deployToFunctionApp only).')
param targetFunctionAppId string

@description('DEPLOY_IDENTITY_ID: resource id of the identity the target app reads packages with (deployToFunctionApp only).')
param targetIdentityId string

@description('Key Vault holding the secrets.')
param keyVaultName string

@description('Key Vault secret with the webhook HMAC secret.')
param webhookSecretName string

@description('Key Vault secret with the git token; empty for none.')
param gitTokenSecretName string

@description('SYNC_REPOSITORY: owner/name exactly as GitHub sends it.')
param syncRepository string

@description('SYNC_REPO_URL; empty means https://github.com/<SYNC_REPOSITORY>.git.')
param syncRepoUrl string

@description('SYNC_BRANCH: the tracked branch.')
param syncBranch string

@description('SYNC_QUEUE: the queue of sync jobs.')
param syncQueueName string

@description('Application Insights component the app reports to.')
param appInsightsName string

@description('Tags for the plan and the app.')
param tags object = {}

// The contract's WORKSPACE_ROOT default; the share is mounted exactly there.
var workspaceMountPath = '/workspace'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource workspaceStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: workspaceStorageAccountName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

var baseSettings = [
  // Functions host and platform.
  { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
  { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'python' }
  { name: 'PYTHON_ENABLE_INIT_INDEXING', value: '1' }
  // The app's pinned packages ahead of the worker's bundled azure-functions (the image sets it too).
  { name: 'PYTHON_ISOLATE_WORKER_DEPENDENCIES', value: '1' }
  { name: 'WEBSITES_ENABLE_APP_SERVICE_STORAGE', value: 'false' }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
  // Identity-based AzureWebJobsStorage: no connection string, no key in the settings.
  { name: 'AzureWebJobsStorage__accountName', value: storage.name }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
  // DefaultAzureCredential in the app's own SDK clients picks the user-assigned identity.
  { name: 'AZURE_CLIENT_ID', value: identityClientId }
  // The contract's settings.
  {
    name: 'GITHUB_WEBHOOK_SECRET'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${webhookSecretName})'
  }
  { name: 'SYNC_REPOSITORY', value: syncRepository }
  { name: 'SYNC_REPO_URL', value: syncRepoUrl }
  { name: 'SYNC_BRANCH', value: syncBranch }
  { name: 'WORKSPACE_ROOT', value: workspaceMountPath }
  { name: 'SYNC_QUEUE', value: syncQueueName }
  { name: 'DEPLOY_TARGET', value: deployToFunctionApp ? 'functionapp' : 'builtin' }
  { name: 'DEPLOY_PACKAGE_CONTAINER', value: packageContainerName }
  { name: 'DEPLOY_VERSIONS_KEPT', value: string(versionsKept) }
]

var functionAppTargetSettings = deployToFunctionApp ? [
  { name: 'DEPLOY_FUNCTIONAPP_ID', value: targetFunctionAppId }
  { name: 'DEPLOY_IDENTITY_ID', value: targetIdentityId }
] : []

// Key Vault references resolve with the app identity (keyVaultReferenceIdentity below).
var gitTokenReference = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${gitTokenSecretName})'
var gitTokenSettings = empty(gitTokenSecretName) ? [] : [{ name: 'GIT_TOKEN', value: gitTokenReference }]

var workspaceShareSettings = workspaceThroughFilesApi ? [{ name: 'WORKSPACE_SHARE', value: workspaceShareName }] : []

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: planSku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumWorkerCount
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux,container'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    reserved: true
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      linuxFxVersion: 'DOCKER|${containerImage}'
      acrUseManagedIdentityCreds: pullWithIdentity
      acrUserManagedIdentityID: pullWithIdentity ? identityClientId : ''
      minimumElasticInstanceCount: 1
      functionAppScaleLimit: maximumWorkerCount
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      http20Enabled: true
      // The platform takes an instance whose health route fails out of rotation (and replaces it).
      healthCheckPath: '/api/health'
      appSettings: concat(baseSettings, gitTokenSettings, workspaceShareSettings, functionAppTargetSettings)
    }
  }
}

// No deployment with a user name and password: images come from the registry, never by FTP or
// the SCM site's basic auth.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

// App Service mounts Azure Files only with the account key (kept out of app settings), which is
// why the share has an account of its own (workspace-storage.bicep).
resource workspaceMount 'Microsoft.Web/sites/config@2023-12-01' = if (!workspaceThroughFilesApi) {
  parent: site
  name: 'azurestorageaccounts'
  properties: {
    workspace: {
      type: 'AzureFiles'
      protocol: 'Smb'
      accountName: workspaceStorage.name
      shareName: workspaceShareName
      mountPath: workspaceMountPath
      // ARM may evaluate list functions of a resource whose condition is false: guard it, since
      // the workspace account does not exist with workspaceThroughFilesApi.
      accessKey: workspaceThroughFilesApi ? '' : workspaceStorage.listKeys().keys[0].value
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
