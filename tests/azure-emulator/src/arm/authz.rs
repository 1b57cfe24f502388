//! ARM's authorization of a request: the caller's role assignments must permit the action at the scope (403
//! `AuthorizationFailed`), and every resource the request links to must permit its linked action (403
//! `LinkedAuthorizationFailed`).

use time::OffsetDateTime;

use super::errors::ArmError;
use crate::entra::Claims;
use crate::rbac::{Action, Rbac, Realm};

/// Who is calling, and when.
#[derive(Debug, Clone)]
pub struct Caller {
    pub object_id: String,
    /// What ARM prints as "the client": the app id of a service principal or managed identity.
    pub client: String,
    pub now: OffsetDateTime,
}

impl Caller {
    pub fn new(claims: &Claims, now: OffsetDateTime) -> Self {
        let client = claims.appid.clone().unwrap_or_else(|| claims.oid.clone());
        Self { object_id: claims.oid.clone(), client, now }
    }

    fn may(&self, rbac: &Rbac, action: &str, scope: &str) -> bool {
        rbac.permits(&Realm::Arm, &self.object_id, Action::Control(action), scope, self.now)
    }

    /// 403 `AuthorizationFailed` unless the caller may do `action` at `scope`.
    pub fn authorize(&self, rbac: &Rbac, action: &str, scope: &str) -> Result<(), ArmError> {
        if self.may(rbac, action, scope) {
            Ok(())
        } else {
            Err(ArmError::authorization_failed(&self.client, &self.object_id, action, scope))
        }
    }

    /// 403 `LinkedAuthorizationFailed` unless the caller, who may do `action` at `scope`, may also do
    /// `linked_action` on the `linked` resource.
    pub fn authorize_linked(
        &self,
        rbac: &Rbac,
        (action, scope): (&str, &str),
        (linked_action, linked): (&str, &str),
    ) -> Result<(), ArmError> {
        if self.may(rbac, linked_action, linked) {
            Ok(())
        } else {
            Err(ArmError::linked_authorization_failed(
                &self.client,
                &self.object_id,
                action,
                scope,
                linked_action,
                linked,
            ))
        }
    }
}
