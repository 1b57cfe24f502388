// CMK onboarding: the whole ISV-side deployment, at subscription scope because the custom roles and the grants on the
// storage scopes live outside the app's resource group. Deploy with:
//   az deployment sub create -l <region> -f infra/main.bicep -p infra/main.parameters.json
targetScope = 'subscription'

@description('Short lowercase name used to derive every resource name (3-11 letters or digits).')
@minLength(3)
@maxLength(11)
param baseName string

@description('Region of every resource. Must offer the Flex Consumption plan.')
param location string

@description('Resource group created (or reused) for the app, its identity, Service Bus and monitoring.')
param resourceGroupName string = 'rg-${baseName}'

@description('Where the ISV storage accounts the handler may configure live: subscription ids, optionally narrowed to one resource group (resourceGroupName empty = the whole subscription). Becomes CMK_ALLOWED_SCOPES.')
param storageScopes array

@description('Application (client) id of the multi-tenant app (infra/scripts/isv-app-setup.sh app prints it).')
param appClientId string

@description('Object id of the same app registration in this tenant.')
param appObjectId string

@description('Azure cloud the handler talks to: AzureCloud, AzureUSGovernment or AzureChinaCloud.')
@allowed([
  'AzureCloud'
  'AzureUSGovernment'
  'AzureChinaCloud'
])
param azureCloud string = 'AzureCloud'

@description('verify: fail when the federated credential is missing; ensure: the handler creates it (needs the Graph grant of the set-up script).')
@allowed([
  'verify'
  'ensure'
])
param ficMode string = 'verify'

@description('Legacy preview step: register Microsoft.Storage/FederatedClientIdentity in the storage subscriptions. Also grants the role it needs.')
param registerPreviewFeature bool = false

@description('Service Bus tier. Standard is enough: topics, sessions, duplicate detection and scheduled messages are all Standard features (Basic has none of them).')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Largest number of Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of one Flex Consumption instance, in MB. The handler is a small Rust binary: 512 is plenty.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

@description('Always-ready instances for the Service Bus trigger group (0 = scale to zero, accept a cold start).')
@minValue(0)
param alwaysReadyInstances int = 0

@description('Optional OTLP/HTTP collector for the handler traces (empty = no OTLP export).')
param otlpEndpoint string = ''

@description('Tags applied to every resource.')
param tags object = {}

var names = {
  identity: 'id-${baseName}-cmk'
  serviceBus: 'sb-${baseName}-${uniqueString(subscription().id, resourceGroupName)}'
  functionApp: 'func-${baseName}-${uniqueString(subscription().id, resourceGroupName)}'
  plan: 'plan-${baseName}'
  hostStorage: 'st${baseName}${take(uniqueString(subscription().id, resourceGroupName), 11)}'
  logAnalytics: 'log-${baseName}'
  appInsights: 'appi-${baseName}'
}

// Exactly the value the handler parses: `/subscriptions/{id}` or `/subscriptions/{id}/resourceGroups/{rg}`.
var allowedScopeIds = [for storageScope in storageScopes: empty(storageScope.resourceGroupName) ? '/subscriptions/${storageScope.subscriptionId}' : '/subscriptions/${storageScope.subscriptionId}/resourceGroups/${storageScope.resourceGroupName}']
var scopeSubscriptionIds = [for storageScope in storageScopes: '/subscriptions/${storageScope.subscriptionId}']
// union() with an empty array drops duplicates: two resource groups of one subscription name it once.
var allowedSubscriptionIds = union(scopeSubscriptionIds, [])

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

// Custom roles: the built-in alternatives (Storage Account Contributor, Contributor) also grant listKeys/action,
// which is full data access through the account keys, and delete. See infra/README.md for each action.
resource storageEncryptionRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, baseName, 'cmk-storage-encryption-operator')
  properties: {
    roleName: 'CMK Onboarding Storage Encryption Operator (${baseName})'
    description: 'Read storage accounts, PATCH their encryption settings and create them encrypted; no keys, no delete, no data access.'
    type: 'customRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/read'
          'Microsoft.Storage/storageAccounts/write'
        ]
        notActions: []
      }
    ]
    assignableScopes: allowedScopeIds
  }
}

resource featureRegistrarRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (registerPreviewFeature) {
  name: guid(subscription().id, baseName, 'cmk-preview-feature-registrar')
  properties: {
    roleName: 'CMK Onboarding Preview Feature Registrar (${baseName})'
    description: 'Register the Microsoft.Storage/FederatedClientIdentity preview feature and re-register Microsoft.Storage.'
    type: 'customRole'
    permissions: [
      {
        actions: [
          'Microsoft.Features/providers/features/read'
          'Microsoft.Features/providers/features/register/action'
          'Microsoft.Storage/register/action'
          'Microsoft.Resources/subscriptions/providers/read'
        ]
        notActions: []
      }
    ]
    assignableScopes: allowedSubscriptionIds
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    location: location
    tags: tags
    namespaceName: names.serviceBus
    sku: serviceBusSku
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    functionAppName: names.functionApp
    planName: names.plan
    hostStorageName: names.hostStorage
    cmkIdentityName: names.identity
    appInsightsName: monitoring.outputs.appInsightsName
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    onboardingQueueName: serviceBus.outputs.onboardingQueueName
    eventsTopicName: serviceBus.outputs.eventsTopicName
    allowedScopes: join(allowedScopeIds, ',')
    appClientId: appClientId
    appObjectId: appObjectId
    azureCloud: azureCloud
    ficMode: ficMode
    registerPreviewFeature: registerPreviewFeature
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyInstances: alwaysReadyInstances
    otlpEndpoint: otlpEndpoint
  }
}

module serviceBusAccess 'modules/servicebus-access.bicep' = {
  name: 'servicebus-access'
  scope: rg
  params: {
    namespaceName: serviceBus.outputs.namespaceName
    onboardingQueueName: serviceBus.outputs.onboardingQueueName
    eventsTopicName: serviceBus.outputs.eventsTopicName
    principalId: functionApp.outputs.principalId
  }
}

module storageAccess 'modules/storage-access.bicep' = [for (storageScope, i) in storageScopes: {
  name: 'storage-access-${i}'
  scope: subscription(storageScope.subscriptionId)
  params: {
    resourceGroupName: storageScope.resourceGroupName
    principalId: functionApp.outputs.principalId
    storageEncryptionRoleName: storageEncryptionRole.name
    registerPreviewFeature: registerPreviewFeature
    featureRegistrarRoleName: registerPreviewFeature ? featureRegistrarRole.name : ''
  }
}]

output resourceGroupName string = rg.name
output functionAppName string = functionApp.outputs.functionAppName
output functionAppPrincipalId string = functionApp.outputs.principalId
output cmkIdentityResourceId string = functionApp.outputs.cmkIdentityResourceId
output cmkIdentityPrincipalId string = functionApp.outputs.cmkIdentityPrincipalId
output cmkIdentityClientId string = functionApp.outputs.cmkIdentityClientId
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output allowedScopes string = join(allowedScopeIds, ',')
