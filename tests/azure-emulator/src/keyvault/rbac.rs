//! Key Vault and Managed HSM RBAC: built-in role definitions by name, their key data actions, and the check.

use crate::scenario::RoleAssignment;

/// A key data action, as the RBAC check names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    Read,
    Create,
    Update,
    Wrap,
    Unwrap,
}

impl KeyAction {
    /// The data action string Key Vault prints in its 403 message.
    pub fn data_action(self, managed_hsm: bool) -> &'static str {
        match (managed_hsm, self) {
            (false, Self::Read) => "Microsoft.KeyVault/vaults/keys/read",
            (false, Self::Create) => "Microsoft.KeyVault/vaults/keys/create/action",
            (false, Self::Update) => "Microsoft.KeyVault/vaults/keys/update/action",
            (false, Self::Wrap) => "Microsoft.KeyVault/vaults/keys/wrap/action",
            (false, Self::Unwrap) => "Microsoft.KeyVault/vaults/keys/unwrap/action",
            (true, Self::Read) => "Microsoft.KeyVault/managedHsm/keys/read/action",
            (true, Self::Create) => "Microsoft.KeyVault/managedHsm/keys/create",
            (true, Self::Update) => "Microsoft.KeyVault/managedHsm/keys/write/action",
            (true, Self::Wrap) => "Microsoft.KeyVault/managedHsm/keys/wrap/action",
            (true, Self::Unwrap) => "Microsoft.KeyVault/managedHsm/keys/unwrap/action",
        }
    }
}

/// Which key actions a built-in role grants; `None` for a role name the emulator does not know.
pub fn role_actions(role: &str) -> Option<&'static [KeyAction]> {
    use KeyAction::*;
    const ALL: &[KeyAction] = &[Read, Create, Update, Wrap, Unwrap];
    const SERVICE_ENCRYPTION: &[KeyAction] = &[Read, Wrap, Unwrap];
    const CRYPTO_USER: &[KeyAction] = &[Read, Update, Wrap, Unwrap];
    const READER: &[KeyAction] = &[Read];
    let actions = match role.to_ascii_lowercase().as_str() {
        "key vault administrator" | "key vault crypto officer" => ALL,
        "managed hsm administrator" | "managed hsm crypto officer" => ALL,
        "key vault crypto service encryption user" => SERVICE_ENCRYPTION,
        "managed hsm crypto service encryption user" | "managed hsm crypto service encryption" => SERVICE_ENCRYPTION,
        "key vault crypto user" | "managed hsm crypto user" => CRYPTO_USER,
        "key vault reader" | "managed hsm crypto auditor" => READER,
        _ => return None,
    };
    Some(actions)
}

/// Whether `principal` may do `action` on key `key_name` (scope `/` or `/keys/{name}`).
pub fn allowed(assignments: &[RoleAssignment], principal: &str, key_name: &str, action: KeyAction) -> bool {
    let key_scope = format!("/keys/{key_name}");
    assignments.iter().any(|assignment| {
        let scope = assignment.scope.trim_end_matches('/');
        let in_scope =
            scope.is_empty() || scope.eq_ignore_ascii_case(&key_scope) || scope.eq_ignore_ascii_case("/keys");
        assignment.principal_id.eq_ignore_ascii_case(principal)
            && in_scope
            && role_actions(&assignment.role).is_some_and(|actions| actions.contains(&action))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(role: &str, scope: &str) -> RoleAssignment {
        RoleAssignment { principal_id: "p".into(), role: role.into(), scope: scope.into() }
    }

    #[test]
    fn service_encryption_user_reads_and_wraps_but_cannot_create() {
        let roles = [assignment("Key Vault Crypto Service Encryption User", "/")];
        assert!(allowed(&roles, "p", "k", KeyAction::Wrap));
        assert!(allowed(&roles, "p", "k", KeyAction::Read));
        assert!(!allowed(&roles, "p", "k", KeyAction::Create));
        assert!(!allowed(&roles, "other", "k", KeyAction::Read));
    }

    #[test]
    fn key_scope_covers_only_that_key() {
        let roles = [assignment("Managed HSM Crypto Service Encryption User", "/keys/k1")];
        assert!(allowed(&roles, "p", "k1", KeyAction::Unwrap));
        assert!(!allowed(&roles, "p", "k2", KeyAction::Unwrap));
    }

    #[test]
    fn reader_cannot_wrap() {
        let roles = [assignment("Key Vault Reader", "/")];
        assert!(allowed(&roles, "p", "k", KeyAction::Read));
        assert!(!allowed(&roles, "p", "k", KeyAction::Wrap));
    }
}
