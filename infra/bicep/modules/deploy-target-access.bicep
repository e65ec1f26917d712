// Website Contributor on the target Function App (in its own resource group) for this app's
// identity: DEPLOY_TARGET=functionapp reads and writes its app settings and syncs its triggers.

@description('Name of the target Function App (DEPLOY_FUNCTIONAPP_ID names it).')
param functionAppName string

@description('Principal (this app identity) that deploys to it.')
param principalId string

var websiteContributor = 'de139f84-1756-47ae-9be6-808fbbe84772'

resource target 'Microsoft.Web/sites@2023-12-01' existing = {
  name: functionAppName
}

resource deployer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(target.id, principalId, websiteContributor)
  scope: target
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', websiteContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
