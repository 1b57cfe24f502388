// Log Analytics workspace and workspace-based Application Insights. Local (instrumentation-key) auth is off:
// the function app ingests with its managed identity (Monitoring Metrics Publisher, granted in function-app.bicep).
param location string
param tags object
param logAnalyticsName string
param appInsightsName string

@description('Days of log retention.')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output appInsightsName string = appInsights.name
