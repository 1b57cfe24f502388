// The custom storage encryption role on one resource group of ISV storage accounts (the narrowest allowed scope).
param principalId string

@description('Name (GUID) of the custom storage encryption role defined in main.bicep.')
param storageEncryptionRoleName string

resource storageOnResourceGroup 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, storageEncryptionRoleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageEncryptionRoleName)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Handler: GET and PATCH (encryption) the ISV storage accounts of this resource group.'
  }
}
