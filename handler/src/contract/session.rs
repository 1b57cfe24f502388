//! The Service Bus SessionId of an onboarding message: the key that serialises onboardings of one storage account
//! (ARCHITECTURE.md, decision 13). Pure.
//!
//! The key is the storage account's **name**. The full resource id would be the obvious choice, but Service Bus
//! limits a SessionId to 128 characters (`ServiceBusMessage.SessionId`; enforced by the service,
//! azure-sdk-for-net#32689) and a storage account id is 116 to 226 characters long (the sample's is 136). Account
//! names are unique across Azure (one DNS name `{name}.blob.{suffix}` per cloud), 3–24 lowercase letters and digits,
//! so the name is a canonical key of the account that fits, and that any producer can compute without a library.

use super::ValidationError;
use super::codes::{SESSION_ID_MISMATCH, SESSION_ID_MISSING, SESSION_ID_UNVERIFIABLE};
use super::grammar::StorageAccountId;

/// Where a delivery's SessionId is reported, for error messages.
const FIELD: &str = "SessionId";

impl StorageAccountId {
    /// The SessionId every message for this account must carry.
    pub fn session_id(&self) -> String {
        self.name.to_ascii_lowercase()
    }
}

/// What the delivery says its SessionId is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveredSessionId<'a> {
    /// No SessionId: the entity is not session-enabled, or the trigger is not (`isSessionsEnabled`).
    Absent,
    Present(&'a str),
    /// The host's string encoding let a body member of that name take the broker's value's place.
    ShadowedByBody,
}

/// A message whose SessionId is not its account's was serialised with another account (or with none): permanent,
/// so that nothing runs outside the account's session.
pub fn check_session(delivered: DeliveredSessionId<'_>, account: &StorageAccountId) -> Result<(), ValidationError> {
    let expected = account.session_id();
    match delivered {
        DeliveredSessionId::Present(found) if found == expected => Ok(()),
        DeliveredSessionId::Present(found) => Err(ValidationError::new(
            SESSION_ID_MISMATCH,
            FIELD,
            format!(
                "the message's SessionId {found:?} is not its storage account's {expected:?} (the account name, \
                 lowercase, of {}): the producer must set SessionId from storageAccount.resourceId",
                account.arm_id()
            ),
        )),
        DeliveredSessionId::Absent => Err(ValidationError::new(
            SESSION_ID_MISSING,
            FIELD,
            format!(
                "the message has no SessionId: the queue must require sessions, the trigger must set \
                 isSessionsEnabled, and the producer must set SessionId {expected:?}"
            ),
        )),
        DeliveredSessionId::ShadowedByBody => Err(ValidationError::new(
            SESSION_ID_UNVERIFIABLE,
            FIELD,
            "the body has a top-level member named SessionId, which the host's string trigger encoding puts in place \
             of the broker's SessionId; the trigger must use dataType \"binary\""
                .to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::parse_storage_account_id;

    fn account() -> StorageAccountId {
        parse_storage_account_id(
            "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/ISV-Customers/providers/microsoft.storage/storageAccounts/contosodata",
        )
        .unwrap()
    }

    #[test]
    fn the_account_name_is_the_key_and_only_it_passes() {
        assert_eq!(account().session_id(), "contosodata");
        assert_eq!(check_session(DeliveredSessionId::Present("contosodata"), &account()), Ok(()));
        let codes = [
            DeliveredSessionId::Present("fabrikamdata"),
            DeliveredSessionId::Present("ContosoData"),
            DeliveredSessionId::Present(&account().arm_id()),
            DeliveredSessionId::Absent,
            DeliveredSessionId::ShadowedByBody,
        ]
        .map(|delivered| check_session(delivered, &account()).unwrap_err().code);
        assert_eq!(
            codes,
            [
                SESSION_ID_MISMATCH,
                SESSION_ID_MISMATCH,
                SESSION_ID_MISMATCH,
                SESSION_ID_MISSING,
                SESSION_ID_UNVERIFIABLE
            ]
        );
    }

    #[test]
    fn every_valid_account_name_fits_a_session_id() {
        // Service Bus allows 128 characters; names are at most 24.
        let longest = format!(
            "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
            "r".repeat(90),
            "a".repeat(24)
        );
        let account = parse_storage_account_id(&longest).unwrap();
        assert!(account.arm_id().len() > 128 && account.session_id().len() <= 128);
    }
}
