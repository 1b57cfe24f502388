//! Key Vault and Managed HSM authorization: the data action each key operation needs, checked by the shared
//! evaluator (`crate::rbac`) against the vault's local assignments and, for a Key Vault with a resource id, the Azure
//! role assignments at or above it.

use time::OffsetDateTime;

use super::store::VaultState;
use crate::rbac::{Action, Rbac, Realm};

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
    /// The data action string Key Vault checks (and prints in its 403 message).
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

/// Whether `principal` may do `action` on key `key_name` of `vault` at `now`.
pub fn allowed(
    rbac: &Rbac,
    vault: &VaultState,
    principal: &str,
    key_name: &str,
    action: KeyAction,
    now: OffsetDateTime,
) -> bool {
    let data_action = Action::Data(action.data_action(vault.managed_hsm));
    let key_scope = format!("/keys/{key_name}");
    if rbac.permits(&vault.realm(), principal, data_action, &key_scope, now) {
        return true;
    }
    let arm_key_scope = vault.resource_id.as_ref().map(|id| format!("{}{key_scope}", id.trim_end_matches('/')));
    arm_key_scope.is_some_and(|scope| rbac.permits(&Realm::Arm, principal, data_action, &scope, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::RoleAssignment;

    fn vault(managed_hsm: bool, resource_id: Option<&str>) -> VaultState {
        VaultState {
            name: "kv".into(),
            managed_hsm,
            host: "kv.vault.azure.net".into(),
            tenant_id: "t".into(),
            soft_delete: true,
            purge_protection: true,
            retention_days: 90,
            keys: Default::default(),
            resource_id: resource_id.map(str::to_owned),
            deleted_keys: Default::default(),
        }
    }

    fn rbac(realm: Realm, role: &str, scope: &str) -> Rbac {
        let mut rbac = Rbac::default();
        let assignment =
            RoleAssignment { principal_id: "p".into(), role: role.into(), scope: scope.into(), description: None };
        rbac.load(realm, &assignment).unwrap();
        rbac
    }

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    #[test]
    fn service_encryption_user_reads_and_wraps_but_cannot_create() {
        let v = vault(false, None);
        let roles = rbac(v.realm(), "Key Vault Crypto Service Encryption User", "/");
        assert!(allowed(&roles, &v, "p", "k", KeyAction::Wrap, NOW));
        assert!(allowed(&roles, &v, "p", "k", KeyAction::Read, NOW));
        assert!(!allowed(&roles, &v, "p", "k", KeyAction::Create, NOW));
        assert!(!allowed(&roles, &v, "other", "k", KeyAction::Read, NOW));
    }

    #[test]
    fn key_scope_covers_only_that_key() {
        let v = vault(true, None);
        let roles = rbac(v.realm(), "Managed HSM Crypto Service Encryption User", "/keys/k1");
        assert!(allowed(&roles, &v, "p", "k1", KeyAction::Unwrap, NOW));
        assert!(!allowed(&roles, &v, "p", "k2", KeyAction::Unwrap, NOW));
    }

    #[test]
    fn reader_cannot_wrap_and_hsm_administrator_cannot_touch_keys() {
        let v = vault(false, None);
        let roles = rbac(v.realm(), "Key Vault Reader", "/");
        assert!(allowed(&roles, &v, "p", "k", KeyAction::Read, NOW));
        assert!(!allowed(&roles, &v, "p", "k", KeyAction::Wrap, NOW));
        let hsm = vault(true, None);
        let admin = rbac(hsm.realm(), "Managed HSM Administrator", "/");
        assert!(!allowed(&admin, &hsm, "p", "k", KeyAction::Read, NOW), "its local role has no key actions");
    }

    #[test]
    fn azure_assignments_above_a_vault_with_a_resource_id_reach_its_keys() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
        let roles = rbac(Realm::Arm, "Key Vault Crypto User", "/subscriptions/s/resourceGroups/rg");
        assert!(allowed(&roles, &vault(false, Some(id)), "p", "k", KeyAction::Unwrap, NOW));
        assert!(!allowed(&roles, &vault(false, None), "p", "k", KeyAction::Unwrap, NOW), "no id: not in that tree");
    }
}
