// Key Vault for the app's secrets. The app reads them as Key Vault references
// (`@Microsoft.KeyVault(...)` app settings), so no secret value sits in the site config.

@description('Azure region.')
param location string

@description('Key Vault name (3-24 letters, digits and hyphens, globally unique).')
param name string

@description('Principal (the app identity) allowed to read the secrets.')
param principalId string

@secure()
@description('HMAC secret of the GitHub webhook.')
param githubWebhookSecret string

@secure()
@description('Token for a private repository; no secret is created when empty.')
param gitToken string = ''

@description('Recover a soft-deleted vault of this name (a redeploy after the resource group was deleted) instead of creating one.')
param recoverSoftDeleted bool = false

@description('Tags for the vault.')
param tags object = {}

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var webhookSecretName = 'github-webhook-secret'
var gitTokenSecretName = 'git-token'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    // Soft delete keeps a deleted vault's name for 7 days: creating it again then fails, so a
    // redeploy into a re-created group passes recoverSoftDeleted=true (or purges it first:
    // az keyvault purge --name <vault>). See README, "Deploying to Azure".
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    createMode: recoverSoftDeleted ? 'recover' : 'default'
  }
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: webhookSecretName
  properties: {
    value: githubWebhookSecret
  }
}

resource gitTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(gitToken)) {
  parent: vault
  name: gitTokenSecretName
  properties: {
    value: gitToken
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output webhookSecretName string = webhookSecretName
// Empty when no token was given, so the app gets no GIT_TOKEN setting at all.
output gitTokenSecretName string = empty(gitToken) ? '' : gitTokenSecretName
