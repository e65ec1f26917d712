// What DEPLOY_TARGET=functionapp needs (deployed only when deployToFunctionApp is true): the
// package container in the host account, Storage Blob Data Reader on it for the identity the
// target Function App reads its package with (WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID, no
// SAS), and Website Contributor on the target app for this app's identity (it rewrites the
// target's app settings and syncs its triggers).

@description('Host storage account (AzureWebJobsStorage) that holds the packages.')
param storageAccountName string

@description('DEPLOY_PACKAGE_CONTAINER: blob container of the function packages.')
param packageContainerName string

@description('DEPLOY_IDENTITY_ID: resource id of the user-assigned identity the target Function App reads packages with.')
param targetIdentityId string

@description('DEPLOY_FUNCTIONAPP_ID: resource id of the Function App that runs the functions.')
param targetFunctionAppId string

@description('Principal (this app identity) that deploys to the target Function App.')
param principalId string

var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
// /subscriptions/<sub>/resourceGroups/<group>/providers/<type>/<name>
var identityParts = split(targetIdentityId, '/')
var appParts = split(targetFunctionAppId, '/')

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource packages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: packageContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource targetIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: last(identityParts)
  scope: resourceGroup(identityParts[2], identityParts[4])
}

resource packageReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(packages.id, targetIdentityId, storageBlobDataReader)
  scope: packages
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: targetIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

module targetAccess 'deploy-target-access.bicep' = {
  name: 'deploy-target-access'
  scope: resourceGroup(appParts[2], appParts[4])
  params: {
    functionAppName: last(appParts)
    principalId: principalId
  }
}

output packageContainerName string = packages.name
