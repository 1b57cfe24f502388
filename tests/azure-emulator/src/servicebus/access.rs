//! Who may send to and receive from an entity: a SAS rule's rights (`Send`, `Listen`, `Manage` implies both), or an
//! Entra principal's role assignments (Azure Service Bus Data Sender / Receiver / Owner) at the namespace or the entity.
//! Used by the REST front end and by the Functions host's trigger and output bindings.
//!
//! Insufficient rights are a 401 with "Unauthorized access. '{claim}' claim(s) are required to perform this
//! operation. Resource: 'sb://…'" — the REST reference lists 401 as "Authorization failure" and 403 as "Quota exceeded
//! or message too large" (learn.microsoft.com/rest/api/servicebus/send-message-to-queue, send-message-batch,
//! peek-lock-message-non-destructive-read); the text is what clients report (microsoft/azure-spring-boot#939,
//! Azure/azure-sdk-for-net#24289).

use time::OffsetDateTime;

use super::bus::NamespaceAuth;
use crate::rbac::{Action, Rbac, Realm};

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Send to a queue or topic.
    Send,
    /// Receive, peek-lock, complete, abandon, renew (queue, subscription, dead-letter queue).
    Listen,
    /// Read an entity's description (the management API): SAS `Manage`, or an Entra principal's read of the entity.
    Describe,
}

impl Right {
    /// The SAS claim, as Service Bus names it.
    pub fn claim(self) -> &'static str {
        match self {
            Self::Send => "Send",
            Self::Listen => "Listen",
            Self::Describe => "Manage",
        }
    }

    /// What Azure RBAC checks on the entity at `entity_scope` (`queues/q`, `topics/t[/subscriptions/s]`): the data
    /// actions for messages, the entity type's `read` for its description (which the Data roles' `actions` grant).
    pub fn action(self, entity_scope: &str) -> Action<'static> {
        match self {
            Self::Send => Action::Data("Microsoft.ServiceBus/namespaces/messages/send/action"),
            Self::Listen => Action::Data("Microsoft.ServiceBus/namespaces/messages/receive/action"),
            Self::Describe if entity_scope.contains("/subscriptions/") => {
                Action::Control("Microsoft.ServiceBus/namespaces/topics/subscriptions/read")
            }
            Self::Describe if entity_scope.starts_with("topics/") => {
                Action::Control("Microsoft.ServiceBus/namespaces/topics/read")
            }
            Self::Describe => Action::Control("Microsoft.ServiceBus/namespaces/queues/read"),
        }
    }
}

/// The detail of Service Bus's 401 for missing rights on `entity` of namespace host `host`.
pub fn missing_claim(right: Right, host: &str, entity: &str) -> String {
    format!(
        "Unauthorized access. '{}' claim(s) are required to perform this operation. Resource: 'sb://{host}/{entity}'.",
        right.claim()
    )
}

/// Whether the SAS rule `rights` grant `right`.
pub fn sas_grants(rights: &[String], right: Right) -> bool {
    rights.iter().any(|r| r.eq_ignore_ascii_case(right.claim()) || r.eq_ignore_ascii_case("Manage"))
}

/// Whether Entra principal `principal` holds `right` on the entity at `entity_scope` (`queues/q`, `topics/t`, …,
/// from `Bus::entity_scope`) of the namespace at `now`.
pub fn entra_grants(
    rbac: &Rbac,
    auth: &NamespaceAuth,
    principal: &str,
    entity_scope: &str,
    right: Right,
    now: OffsetDateTime,
) -> bool {
    let scope = format!("{}/{entity_scope}", auth.resource_id);
    rbac.permits(&Realm::Arm, principal, right.action(entity_scope), &scope, now)
}
