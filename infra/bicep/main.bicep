// gitops-sync in Azure: a Linux Function App (the repository's container image) on Elastic Premium,
// its storage (the host account: queues, tables, blobs, identity only; a second account with the
// workspace share mounted at /workspace), Key Vault for the secrets, a user-assigned identity with
// data roles, Application Insights, and (off by default) what DEPLOY_TARGET=functionapp needs.
//
//   az deployment group create -g <group> -f infra/bicep/main.bicep \
//     -p @infra/bicep/main.parameters.example.json -p githubWebhookSecret=<secret>
targetScope = 'resourceGroup'

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Prefix of every resource name: starts with a letter, lowercase letters and digits.')
@minLength(3)
@maxLength(11)
param namePrefix string = 'gitopssync'

@description('Container image built from the repository Dockerfile, e.g. myregistry.azurecr.io/gitops-sync:1.0.0.')
param containerImage string

@description('Azure Container Registry (in this resource group) holding containerImage; the app pulls with its identity. Empty for a public image.')
param containerRegistryName string = ''

@description('Elastic Premium plan size (Elastic Premium can mount Azure Files on Linux).')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Most instances the app scales out to. One is plenty: syncs of a workspace run one at a time.')
@minValue(1)
@maxValue(20)
param maximumWorkerCount int = 1

@description('SYNC_REPOSITORY: the repository to sync, owner/name exactly as GitHub sends it.')
param syncRepository string

@description('SYNC_REPO_URL: where the worker fetches from; empty means https://github.com/<syncRepository>.git.')
param syncRepoUrl string = ''

@description('SYNC_BRANCH: the tracked branch.')
param syncBranch string = 'main'

@description('SYNC_QUEUE: the queue of sync jobs (created here).')
param syncQueueName string = 'sync-jobs'

@description('Azure Files share holding the workspace, mounted at /workspace.')
param workspaceShareName string = 'workspace'

@description('Quota of the workspace share in GiB.')
@minValue(1)
param workspaceShareQuotaGiB int = 100

@description('Set WORKSPACE_SHARE: the app reaches the workspace through the Azure Files API with its identity (share in the host account, no mount, no second account) instead of the mount.')
param workspaceThroughFilesApi bool = false

@description('DEPLOY_TARGET=functionapp: run the deployed functions in a separate Function App (targetFunctionAppId) instead of this app\'s own runtime.')
param deployToFunctionApp bool = false

@description('DEPLOY_FUNCTIONAPP_ID: resource id of the Function App that runs the functions (deployToFunctionApp only).')
param targetFunctionAppId string = ''

@description('DEPLOY_IDENTITY_ID: resource id of the user-assigned identity that app reads packages with (deployToFunctionApp only).')
param targetIdentityId string = ''

@description('DEPLOY_PACKAGE_CONTAINER: blob container of the function packages.')
param packageContainerName string = 'function-packages'

@description('DEPLOY_VERSIONS_KEPT: versions kept per function (the active one is never deleted).')
@minValue(1)
param versionsKept int = 10

@description('Recover the soft-deleted Key Vault of the same name (redeploying after the resource group was deleted).')
param recoverKeyVault bool = false

@secure()
@description('GITHUB_WEBHOOK_SECRET: HMAC secret of the GitHub webhook, stored in Key Vault.')
param githubWebhookSecret string

@secure()
@description('GIT_TOKEN: token for a private repository, stored in Key Vault. Empty for a public one.')
param gitToken string = ''

@description('Tags of every resource.')
param tags object = {}

var suffix = uniqueString(resourceGroup().id, namePrefix)
var names = {
  identity: '${namePrefix}-id-${suffix}'
  storage: take(toLower('${namePrefix}${suffix}'), 24)
  workspaceStorage: take(toLower('${namePrefix}ws${suffix}'), 24)
  keyVault: take('${namePrefix}-kv-${suffix}', 24)
  monitoring: '${namePrefix}-${suffix}'
  plan: '${namePrefix}-plan-${suffix}'
  functionApp: '${namePrefix}-func-${suffix}'
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    location: location
    name: names.identity
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    name: names.storage
    syncQueueName: syncQueueName
    workspaceThroughFilesApi: workspaceThroughFilesApi
    workspaceShareName: workspaceShareName
    workspaceShareQuotaGiB: workspaceShareQuotaGiB
    principalId: identity.outputs.principalId
    tags: tags
  }
}

// The mounted share's own account (see storage.bicep for why); not needed with the Files API.
module workspaceStorage 'modules/workspace-storage.bicep' = if (!workspaceThroughFilesApi) {
  name: 'workspace-storage'
  params: {
    location: location
    name: names.workspaceStorage
    workspaceShareName: workspaceShareName
    workspaceShareQuotaGiB: workspaceShareQuotaGiB
    tags: tags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    name: names.keyVault
    principalId: identity.outputs.principalId
    githubWebhookSecret: githubWebhookSecret
    gitToken: gitToken
    recoverSoftDeleted: recoverKeyVault
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    name: names.monitoring
    tags: tags
  }
}

module acrPull 'modules/acr-pull.bicep' = if (!empty(containerRegistryName)) {
  name: 'acr-pull'
  params: {
    registryName: containerRegistryName
    principalId: identity.outputs.principalId
  }
}

module deployTarget 'modules/deploy-target.bicep' = if (deployToFunctionApp) {
  name: 'deploy-target'
  params: {
    storageAccountName: storage.outputs.name
    packageContainerName: packageContainerName
    targetIdentityId: targetIdentityId
    targetFunctionAppId: targetFunctionAppId
    principalId: identity.outputs.principalId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  // The first image pull needs AcrPull in place; the mount needs the share.
  dependsOn: [
    acrPull
    workspaceStorage
  ]
  params: {
    location: location
    name: names.functionApp
    planName: names.plan
    planSku: planSku
    maximumWorkerCount: maximumWorkerCount
    containerImage: containerImage
    pullWithIdentity: !empty(containerRegistryName)
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    workspaceStorageAccountName: names.workspaceStorage
    workspaceShareName: workspaceShareName
    workspaceThroughFilesApi: workspaceThroughFilesApi
    deployToFunctionApp: deployToFunctionApp
    packageContainerName: packageContainerName
    versionsKept: versionsKept
    targetFunctionAppId: targetFunctionAppId
    targetIdentityId: targetIdentityId
    keyVaultName: keyVault.outputs.name
    webhookSecretName: keyVault.outputs.webhookSecretName
    gitTokenSecretName: keyVault.outputs.gitTokenSecretName
    syncRepository: syncRepository
    syncRepoUrl: syncRepoUrl
    syncBranch: syncBranch
    syncQueueName: syncQueueName
    appInsightsName: monitoring.outputs.insightsName
    tags: tags
  }
}

@description('Name of the Function App.')
output functionAppName string = functionApp.outputs.name

@description('Payload URL for the GitHub webhook (content type application/json, HMAC secret = githubWebhookSecret).')
output webhookUrl string = 'https://${functionApp.outputs.defaultHostName}/api/github/webhook'

@description('Health endpoint: 200 {"status": "ok"} when storage is reachable.')
output healthUrl string = 'https://${functionApp.outputs.defaultHostName}/api/health'

@description('Host storage account: queues, tables, blobs (identity only, shared keys off).')
output storageAccountName string = storage.outputs.name

@description('Storage account of the mounted workspace share (empty with workspaceThroughFilesApi).')
output workspaceStorageAccountName string = workspaceThroughFilesApi ? '' : names.workspaceStorage

@description('Key Vault holding the secrets.')
output keyVaultName string = keyVault.outputs.name
