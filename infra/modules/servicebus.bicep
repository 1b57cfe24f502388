// Service Bus: the onboarding queue the trigger reads (and the handler re-sends delayed retries and dead-letter
// copies to) and the events topic the handler publishes CloudEvents to, with one example subscription per event type.
// SAS is disabled: every client authenticates with Entra ID (roles in servicebus-access.bicep).
param location string
param tags object
param namespaceName string
param sku string

@description('Queue name; the function app setting CMK_ONBOARDING_QUEUE carries it to the trigger and the handler.')
param onboardingQueueName string = 'onboarding'

@description('Topic name; CMK_EVENTS_TOPIC.')
param eventsTopicName string = 'onboarding-events'

// The handler sets the application property `eventType` on every event; each example subscription filters on one.
var eventSubscriptions = [
  {
    name: 'completed'
    eventType: 'com.cmkonboard.onboarding.completed.v1'
  }
  {
    name: 'action-required'
    eventType: 'com.cmkonboard.onboarding.action_required.v1'
  }
  {
    name: 'failed'
    eventType: 'com.cmkonboard.onboarding.failed.v1'
  }
]

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource onboardingQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: namespace
  name: onboardingQueueName
  properties: {
    // Service Bus' default. The host renews the lock of a running invocation (maxAutoLockRenewalDuration in host.json,
    // 10 min), so a longer lock buys nothing while it is held; it only delays redelivery after a worker dies, and keeps
    // dead letters a killed `cmkctl` run had locked out of reach longer. Figures: docs/integrating.md (a test compares).
    lockDuration: 'PT1M'
    // A marked dead-letter copy fails fast on every delivery, so 10 deliveries cost milliseconds (ARCHITECTURE.md,
    // decision 1); a transient host failure still gets 10 tries.
    maxDeliveryCount: 10
    // The handler dead-letters after CMK_DEADLINE_HOURS (7 days) and schedules retries at most 6 h apart, so 14 days
    // only expires messages nothing is processing any more; those land in the DLQ instead of vanishing.
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: true
    // Retry and dead-letter copies, replays and producer sends carry deterministic MessageIds: a re-send within a day
    // is dropped. A day outlasts every redelivery of one message (10 deliveries of at most functionTimeout, 10 min,
    // each) and an interrupted replay re-run hours later; a correction has a new MessageId, so it is never dropped.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    requiresSession: false
    enablePartitioning: false
  }
}

resource eventsTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' = {
  parent: namespace
  name: eventsTopicName
  properties: {
    // MessageId = CloudEvent id (deterministic), so a re-published event within a day is dropped.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    defaultMessageTimeToLive: 'P14D'
    enablePartitioning: false
  }
}

resource subscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = [for eventSubscription in eventSubscriptions: {
  parent: eventsTopic
  name: eventSubscription.name
  properties: {
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    defaultMessageTimeToLive: 'P14D'
  }

  // Replaces the default match-all rule with a filter on the event type.
  resource eventTypeRule 'rules' = {
    name: '$Default'
    properties: {
      filterType: 'SqlFilter'
      sqlFilter: {
        sqlExpression: 'eventType = \'${eventSubscription.eventType}\''
      }
    }
  }
}]

// cmkctl's own subscription (`cmkctl events tail` and the console's recent events): every event, kept a day, then
// dropped. Receiving consumes, so real subscribers use subscriptions of their own.
resource opsSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = {
  parent: eventsTopic
  name: 'ops'
  properties: {
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: false
    defaultMessageTimeToLive: 'P1D'
  }
}

// serviceBusEndpoint is `https://{ns}.{cloud suffix}:443/`: keep the host, so sovereign clouds work unchanged.
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]
output onboardingQueueName string = onboardingQueue.name
output eventsTopicName string = eventsTopic.name
