// The Linux function app that runs the Rust custom handler, on a Flex Consumption plan (why: infra/README.md),
// with its host storage (identity-based AzureWebJobsStorage, no shared keys), the CMK user-assigned identity, every
// app setting the handler reads, and the grants on resources of this resource group.
param location string
param tags object
param functionAppName string
param planName string
param hostStorageName string
param cmkIdentityName string
param appInsightsName string
param serviceBusNamespaceName string
param onboardingQueueName string
param eventsTopicName string

@description('CMK_ALLOWED_SCOPES: comma-separated subscription or resource-group ids.')
param allowedScopes string
param appClientId string
param appObjectId string
param azureCloud string
param ficMode string
param registerPreviewFeature bool
param maximumInstanceCount int
param instanceMemoryMB int
param alwaysReadyInstances int
param otlpEndpoint string

@description('CMK_IDENTITY_SETS: optional JSON of further identity chains; empty = only the default chain.')
param identitySets string = ''

@description('CMK_FIC_NAME: name of the federated credential; empty = cmk-{identity name}.')
param ficName string = ''

var deploymentContainerName = 'app-package'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var managedIdentityOperator = 'f1a07417-d97a-45cb-824c-7a7467783830'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: serviceBusNamespaceName
}

// The identity the customer's Key Vault ultimately trusts: federated credential of the multi-tenant app. It is
// attached to the function app only so the handler can get its token (audience api://AzureADTokenExchange).
resource cmkIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: cmkIdentityName
  location: location
  tags: tags
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:The Flex app reaches its host storage over the public endpoint unless the VNet option (infra/README.md) is added; shared keys are off, so only Entra principals with a data role get in.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: public network access with Entra-only auth; blob public access is disabled.
  // checkov:skip=CKV_AZURE_206:Host storage holds only leases and the deployment package, both recreated by a redeploy; LRS is enough.
  // checkov:skip=CKV_AZURE_43:False positive: the name is computed (st + baseName + uniqueString), 3-24 lowercase letters and digits.
  name: hostStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Work is queue-driven: a zone outage delays messages (redelivered after the lock) but loses none; zone redundancy would force always-ready instances.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Every setting the handler reads (handler/src/config.rs SETTINGS) except those the platform sets
// (FUNCTIONS_CUSTOMHANDLER_PORT, IDENTITY_*, WEBSITE_SITE_NAME) and the test-only CMK_TEST_PROXY_URL.
// Empty values mean "use the default" to the handler. handler/tests/infra_matches_handler.rs checks this list.
var appSettings = [
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: hostStorage.properties.primaryEndpoints.blob
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: hostStorage.properties.primaryEndpoints.queue
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD'
  }
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace'
    value: split(split(serviceBus.properties.serviceBusEndpoint, '/')[2], ':')[0]
  }
  {
    name: 'ServiceBusConnection__credential'
    value: 'managedidentity'
  }
  {
    name: 'CMK_ONBOARDING_QUEUE'
    value: onboardingQueueName
  }
  {
    name: 'CMK_EVENTS_TOPIC'
    value: eventsTopicName
  }
  {
    name: 'CMK_AZURE_CLOUD'
    value: azureCloud
  }
  {
    name: 'CMK_UAMI_RESOURCE_ID'
    value: cmkIdentity.id
  }
  {
    name: 'CMK_UAMI_CLIENT_ID'
    value: cmkIdentity.properties.clientId
  }
  {
    name: 'CMK_APP_CLIENT_ID'
    value: appClientId
  }
  {
    name: 'CMK_APP_OBJECT_ID'
    value: appObjectId
  }
  {
    name: 'CMK_IDENTITY_SETS'
    value: identitySets
  }
  {
    name: 'CMK_ALLOWED_SCOPES'
    value: allowedScopes
  }
  {
    name: 'CMK_FIC_MODE'
    value: ficMode
  }
  {
    name: 'CMK_FIC_NAME'
    value: ficName
  }
  {
    name: 'CMK_REGISTER_PREVIEW_FEATURE'
    value: string(registerPreviewFeature)
  }
  {
    name: 'CMK_REQUIRE_KEY_CONSENT'
    value: 'true'
  }
  {
    name: 'CMK_MAX_MESSAGE_BYTES'
    value: '262144'
  }
  {
    name: 'CMK_RETRY_BUDGET_SECONDS'
    value: '90'
  }
  {
    name: 'CMK_RETRY_BASE_DELAY_MS'
    value: '500'
  }
  {
    name: 'CMK_RETRY_MAX_DELAY_MS'
    value: '30000'
  }
  {
    name: 'CMK_DELAYED_RETRY_BASE_SECONDS'
    value: '60'
  }
  {
    name: 'CMK_DELAYED_RETRY_MAX_SECONDS'
    value: '3600'
  }
  {
    name: 'CMK_CUSTOMER_RETRY_BASE_SECONDS'
    value: '900'
  }
  {
    name: 'CMK_CUSTOMER_RETRY_MAX_SECONDS'
    value: '21600'
  }
  {
    name: 'CMK_DEADLINE_HOURS'
    value: '168'
  }
  {
    // The key watch's timer (WatchKeys/function.json reads it as %CMK_WATCH_SCHEDULE%): every 15 minutes.
    name: 'CMK_WATCH_SCHEDULE'
    value: '0 */15 * * * *'
  }
  {
    name: 'CMK_KEY_EXPIRY_WARNING_DAYS'
    value: '30'
  }
  {
    name: 'CMK_HTTP_TIMEOUT_SECONDS'
    value: '30'
  }
  {
    name: 'CMK_LOG_FORMAT'
    value: 'json'
  }
  {
    name: 'OTEL_EXPORTER_OTLP_ENDPOINT'
    value: otlpEndpoint
  }
  {
    name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'
    value: ''
  }
]

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_16:No HTTP function is anonymous: DiagnoseOnboarding (operators) needs the master key, OnboardingStatus (upstream systems, server to server) a function key, so the host rejects callers without one; Easy Auth would add a login flow no operator script or upstream job can follow.
  // checkov:skip=CKV_AZURE_17:Same reason as CKV_AZURE_16: both HTTP functions are key protected and their callers are scripts and services that present no client certificate.
  // checkov:skip=CKV_AZURE_222:Publishing (az functionapp deployment source config-zip) uses the public endpoint, and upstream systems call OnboardingStatus; every HTTP function needs a key. Add VNet integration and access restrictions to close it (infra/README.md).
  // checkov:skip=CKV_AZURE_212:Scale to zero is the point of Flex Consumption here; alwaysReadyInstances sets a floor when cold starts matter.
  // checkov:skip=CKV_AZURE_213:A health check needs an anonymous HTTP path and the app deliberately has none; the host itself restarts a handler that stops answering.
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: {
      '${cmkIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyInstances > 0 ? [
          {
            name: 'function:ProcessOnboarding'
            instanceCount: alwaysReadyInstances
          }
        ] : []
      }
      // Flex Consumption's custom-handler stack; host.json's customHandler section names the executable.
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

resource hostStorageOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, functionApp.id, storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host: identity-based AzureWebJobsStorage and the Flex deployment container.'
  }
}

resource cmkIdentityOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cmkIdentity.id, functionApp.id, managedIdentityOperator)
  scope: cmkIdentity
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', managedIdentityOperator)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Handler: read the CMK identity and assign it to storage accounts in the storage PATCH.'
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionApp.id, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host: Entra-authenticated Application Insights ingestion.'
  }
}

output functionAppName string = functionApp.name
output principalId string = functionApp.identity.principalId
output cmkIdentityResourceId string = cmkIdentity.id
output cmkIdentityPrincipalId string = cmkIdentity.properties.principalId
output cmkIdentityClientId string = cmkIdentity.properties.clientId
