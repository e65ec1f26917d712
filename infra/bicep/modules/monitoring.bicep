// Application Insights (workspace-based) for the Function App's logs, traces and metrics.

@description('Azure region.')
param location string

@description('Base name for the Log Analytics workspace and the Application Insights component.')
param name string

@description('Days Log Analytics keeps data.')
param retentionInDays int = 30

@description('Tags for both resources.')
param tags object = {}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${name}-logs'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${name}-insights'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

// The app reads the connection string itself (an `existing` reference), so it is no output here.
output insightsName string = insights.name
