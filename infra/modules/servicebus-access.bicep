// Service Bus data roles for the function app's system identity, each on one entity rather than the namespace:
// receive on the queue (trigger), send on the queue (delayed-retry and dead-letter copies) and on the topic (events).
param namespaceName string
param onboardingQueueName string
param eventsTopicName string
param principalId string

var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: namespaceName
}

resource onboardingQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: namespace
  name: onboardingQueueName
}

resource eventsTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' existing = {
  parent: namespace
  name: eventsTopicName
}

resource queueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(onboardingQueue.id, principalId, serviceBusDataReceiver)
  scope: onboardingQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host: receive onboarding messages for the ProcessOnboarding trigger.'
  }
}

resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(onboardingQueue.id, principalId, serviceBusDataSender)
  scope: onboardingQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Handler: scheduled retry copies and marked dead-letter copies.'
  }
}

resource topicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsTopic.id, principalId, serviceBusDataSender)
  scope: eventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Handler: publish onboarding CloudEvents.'
  }
}
