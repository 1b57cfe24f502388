// Grants on one entry of storageScopes, deployed into that entry's subscription: the custom storage role on the
// subscription (empty resourceGroupName) or on one resource group, and, for the legacy preview step only, the
// feature-registration role on the subscription.
targetScope = 'subscription'

@description('Resource group holding the ISV storage accounts; empty = the whole subscription.')
param resourceGroupName string
param principalId string

@description('Name (GUID) of the custom storage encryption role defined in main.bicep.')
param storageEncryptionRoleName string
param registerPreviewFeature bool

@description('Name (GUID) of the custom feature-registration role; empty unless registerPreviewFeature.')
param featureRegistrarRoleName string

resource storageOnSubscription 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (empty(resourceGroupName)) {
  name: guid(subscription().id, principalId, storageEncryptionRoleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageEncryptionRoleName)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Handler: GET and PATCH (encryption) the ISV storage accounts of this subscription.'
  }
}

module storageOnResourceGroup 'storage-access-resource-group.bicep' = if (!empty(resourceGroupName)) {
  name: 'storage-access-${uniqueString(resourceGroupName, principalId)}'
  scope: resourceGroup(empty(resourceGroupName) ? 'unused' : resourceGroupName)
  params: {
    principalId: principalId
    storageEncryptionRoleName: storageEncryptionRoleName
  }
}

resource featureRegistrar 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (registerPreviewFeature) {
  name: guid(subscription().id, principalId, 'cmk-preview-feature-registrar')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', featureRegistrarRoleName)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Handler: register Microsoft.Storage/FederatedClientIdentity (CMK_REGISTER_PREVIEW_FEATURE).'
  }
}
