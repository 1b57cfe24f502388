//! Azure RBAC, one evaluator for every emulated service: role definitions (the built-in ones by their real ids, and
//! the scenario's custom roles), role assignments (principal, role, scope), wildcard action matching, inheritance down
//! the scope tree, and propagation of assignments granted or revoked during a run.
//!
//! Two kinds of scope live side by side: ARM scopes (`/subscriptions/{s}[/resourceGroups/{rg}[/providers/…]]`,
//! checked by ARM, Service Bus and the Key Vaults that have a resource id) and a vault's local scopes (`/`, `/keys`,
//! `/keys/{name}`: Managed HSM local RBAC, and the shorthand a scenario uses for a Key Vault without a resource id).

pub mod builtin;

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::propagation::Pending;
use crate::scenario::{self, RoleAssignment};

/// A role definition: what it allows, as Azure writes it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    /// The role's GUID (`name` in ARM), lower-case.
    pub id: String,
    pub role_name: String,
    /// `BuiltInRole` or `CustomRole`.
    pub role_type: &'static str,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
    /// Where a custom role may be assigned; `/` for built-in roles.
    pub assignable_scopes: Vec<String>,
}

/// An operation to authorize: a control-plane action (`Microsoft.Storage/storageAccounts/write`) or a data-plane
/// action (`Microsoft.KeyVault/vaults/keys/wrap/action`); they are granted by different lists of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    Control(&'a str),
    Data(&'a str),
}

impl Action<'_> {
    pub fn name(&self) -> &str {
        match self {
            Self::Control(name) | Self::Data(name) => name,
        }
    }
}

impl RoleDefinition {
    /// Whether the role allows `action`: one of its actions matches and none of its not-actions does.
    pub fn permits(&self, action: Action<'_>) -> bool {
        let (allowed, excluded) = match action {
            Action::Control(_) => (&self.actions, &self.not_actions),
            Action::Data(_) => (&self.data_actions, &self.not_data_actions),
        };
        let name = action.name();
        allowed.iter().any(|pattern| action_matches(pattern, name))
            && !excluded.iter().any(|pattern| action_matches(pattern, name))
    }

    fn from_builtin(role: &builtin::BuiltIn) -> Self {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Self {
            id: role.id.to_owned(),
            role_name: role.name.to_owned(),
            role_type: "BuiltInRole",
            actions: owned(role.actions),
            not_actions: owned(role.not_actions),
            data_actions: owned(role.data_actions),
            not_data_actions: owned(role.not_data_actions),
            assignable_scopes: vec!["/".to_owned()],
        }
    }
}

/// Whether an action pattern of a role (`Microsoft.Storage/*/read`, `*`) covers `action`. Case-insensitive, as
/// Azure's are. `*` matches any run of characters, `/` included; a `/*/` also matches a single `/`, which is how
/// Managed Identity Operator's `userAssignedIdentities/*/assign/action` grants the
/// `userAssignedIdentities/assign/action` that ARM checks (and its `*/read` the identity's `read`).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob(pattern.as_bytes(), action.as_bytes(), false)
}

fn glob(pattern: &[u8], text: &[u8], after_slash: bool) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            let whole_segment = after_slash && rest.first() == Some(&b'/');
            (whole_segment && glob(&rest[1..], text, true)) || (0..=text.len()).any(|i| glob(rest, &text[i..], false))
        }
        Some((&c, rest)) => match text.split_first() {
            Some((&t, text_rest)) if c.eq_ignore_ascii_case(&t) => glob(rest, text_rest, c == b'/'),
            _ => false,
        },
    }
}

/// Whether `scope` is `resource` or one of its ancestors, segment by segment and case-insensitively; `/` covers
/// everything (the tenant root, or a vault's whole local scope).
pub fn scope_covers(scope: &str, resource: &str) -> bool {
    let scope = scope.trim_end_matches('/').to_ascii_lowercase();
    let resource = resource.trim_end_matches('/').to_ascii_lowercase();
    scope.is_empty() || resource == scope || resource.starts_with(&format!("{scope}/"))
}

/// Which RBAC an assignment belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Realm {
    /// Azure RBAC with ARM scopes.
    Arm,
    /// One vault's local scopes, by the vault's lower-cased host.
    Vault(String),
}

impl Realm {
    fn label(&self) -> String {
        match self {
            Self::Arm => "arm".to_owned(),
            Self::Vault(host) => format!("vault:{host}"),
        }
    }
}

/// One role assignment as stored.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub realm: Realm,
    pub principal_id: String,
    /// The role's GUID.
    pub role_id: String,
    pub scope: String,
    pub description: Option<String>,
}

/// What identifies an assignment: the same principal, role and scope cannot be assigned twice.
type AssignmentKey = (String, String, String, String);

impl Assignment {
    fn key(&self) -> AssignmentKey {
        (
            self.realm.label(),
            self.principal_id.to_ascii_lowercase(),
            self.role_id.clone(),
            self.scope.trim_end_matches('/').to_ascii_lowercase(),
        )
    }
}

/// Every role definition and assignment of the world, with the assignments not yet propagated.
#[derive(Debug)]
pub struct Rbac {
    roles: Vec<RoleDefinition>,
    assignments: Vec<Assignment>,
    pending: Pending<AssignmentKey, Assignment>,
    delay: Duration,
}

impl Default for Rbac {
    fn default() -> Self {
        Self {
            roles: builtin::ROLES.iter().map(RoleDefinition::from_builtin).collect(),
            assignments: Vec::new(),
            pending: Pending::default(),
            delay: Duration::ZERO,
        }
    }
}

impl Rbac {
    /// The built-in roles plus `custom` ones; assignments granted at run time take `delay` to propagate.
    pub fn new(custom: &[scenario::RoleDefinition], delay: Duration) -> Result<Self, String> {
        let mut rbac = Self { delay, ..Self::default() };
        for role in custom {
            let id = role.id.to_ascii_lowercase();
            if uuid::Uuid::try_parse(&id).is_err() {
                return Err(format!("role definition {:?}: id {:?} is not a GUID", role.role_name, role.id));
            }
            if rbac.role(&id).is_some() || rbac.role(&role.role_name).is_some() {
                return Err(format!("role definition {:?} ({id}) is defined twice", role.role_name));
            }
            if role.assignable_scopes.is_empty() {
                return Err(format!("role definition {:?} needs assignableScopes", role.role_name));
            }
            rbac.roles.push(RoleDefinition {
                id,
                role_name: role.role_name.clone(),
                role_type: "CustomRole",
                actions: role.actions.clone(),
                not_actions: role.not_actions.clone(),
                data_actions: role.data_actions.clone(),
                not_data_actions: role.not_data_actions.clone(),
                assignable_scopes: role.assignable_scopes.clone(),
            });
        }
        Ok(rbac)
    }

    /// A role by GUID, by role definition id (`…/providers/Microsoft.Authorization/roleDefinitions/{guid}`), or by
    /// its name (case-insensitive).
    pub fn role(&self, reference: &str) -> Option<&RoleDefinition> {
        let guid = reference.rsplit('/').next().unwrap_or(reference);
        self.roles
            .iter()
            .find(|role| role.id.eq_ignore_ascii_case(guid))
            .or_else(|| self.roles.iter().find(|role| role.role_name.eq_ignore_ascii_case(reference)))
    }

    /// An assignment from the scenario: in force from the start.
    pub fn load(&mut self, realm: Realm, assignment: &RoleAssignment) -> Result<(), String> {
        self.insert(realm, assignment, OffsetDateTime::UNIX_EPOCH, Duration::ZERO)
    }

    /// An assignment made during the run: in force after the propagation delay.
    pub fn grant(&mut self, realm: Realm, assignment: &RoleAssignment, now: OffsetDateTime) -> Result<(), String> {
        self.insert(realm, assignment, now, self.delay)
    }

    fn insert(
        &mut self,
        realm: Realm,
        assignment: &RoleAssignment,
        now: OffsetDateTime,
        delay: Duration,
    ) -> Result<(), String> {
        let role = self.role(&assignment.role).ok_or_else(|| format!("unknown role {:?}", assignment.role))?;
        validate_scope(&realm, role, &assignment.scope)?;
        let stored = Assignment {
            realm,
            principal_id: assignment.principal_id.clone(),
            role_id: role.id.clone(),
            scope: assignment.scope.clone(),
            description: assignment.description.clone(),
        };
        let key = stored.key();
        if self.assignments.iter().any(|existing| existing.key() == key) {
            // Azure answers 409 RoleAssignmentExists; re-granting is a no-op here.
            return Ok(());
        }
        self.pending.record(key, None, now, delay);
        self.assignments.push(stored);
        Ok(())
    }

    /// Removes `principal`'s assignments of `role` in `realm` (only at `scope` when given); in force after the
    /// propagation delay.
    pub fn revoke(
        &mut self,
        realm: &Realm,
        principal: &str,
        role: &str,
        scope: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let role_id = self.role(role).map(|r| r.id.clone()).ok_or_else(|| format!("unknown role {role:?}"))?;
        let matches = |a: &Assignment| {
            &a.realm == realm
                && a.principal_id.eq_ignore_ascii_case(principal)
                && a.role_id == role_id
                && scope.is_none_or(|s| a.scope.trim_end_matches('/').eq_ignore_ascii_case(s.trim_end_matches('/')))
        };
        let removed: Vec<Assignment> = self.assignments.iter().filter(|a| matches(a)).cloned().collect();
        if removed.is_empty() {
            return Err(format!(
                "{principal} has no {role:?} assignment{}",
                scope.map(|s| format!(" at {s}")).unwrap_or_default()
            ));
        }
        for assignment in &removed {
            self.pending.record(assignment.key(), Some(assignment), now, self.delay);
        }
        self.assignments.retain(|a| !matches(a));
        Ok(())
    }

    /// Whether `principal` may do `action` on `resource` (a scope in `realm`) at `now`: some assignment in force
    /// covers the resource's scope and its role permits the action.
    pub fn permits(
        &self,
        realm: &Realm,
        principal: &str,
        action: Action<'_>,
        resource: &str,
        now: OffsetDateTime,
    ) -> bool {
        self.pending.effective(&self.assignments, Assignment::key, |_| true, now).into_iter().any(|assignment| {
            &assignment.realm == realm
                && assignment.principal_id.eq_ignore_ascii_case(principal)
                && scope_covers(&assignment.scope, resource)
                && self.role(&assignment.role_id).is_some_and(|role| role.permits(action))
        })
    }

    /// State dump for `/_emulator/state`: custom roles and every assignment, with when a pending one takes effect.
    pub fn dump(&self, now: OffsetDateTime) -> Value {
        let render = |assignment: &Assignment| {
            let effective_at = self.pending.effective_at(&assignment.key(), now);
            json!({
                "realm": assignment.realm.label(),
                "principalId": assignment.principal_id,
                "roleDefinitionId": assignment.role_id,
                "roleName": self.role(&assignment.role_id).map(|r| r.role_name.clone()),
                "scope": assignment.scope,
                "description": assignment.description,
                "effectiveAt": effective_at.and_then(|at| at.format(&Rfc3339).ok()),
            })
        };
        let custom: Vec<&RoleDefinition> = self.roles.iter().filter(|r| r.role_type == "CustomRole").collect();
        json!({
            "customRoles": custom,
            "roleAssignments": self.assignments.iter().map(render).collect::<Vec<_>>(),
            "inForce": self.pending.effective(&self.assignments, Assignment::key, |_| true, now).into_iter().map(render).collect::<Vec<_>>(),
        })
    }
}

/// ARM scopes start at a subscription (management groups are not modelled); a custom role only goes where its
/// `assignableScopes` allow. Vault-local scopes are `/`, `/keys` or `/keys/{name}`.
fn validate_scope(realm: &Realm, role: &RoleDefinition, scope: &str) -> Result<(), String> {
    match realm {
        Realm::Arm => {
            let segments: Vec<&str> = scope.trim_end_matches('/').split('/').collect();
            let well_formed = segments.len() >= 3
                && segments[0].is_empty()
                && segments[1].eq_ignore_ascii_case("subscriptions")
                && segments[1..].iter().all(|s| !s.is_empty());
            if !well_formed {
                return Err(format!("role assignment scope {scope:?} is not an ARM scope (/subscriptions/…)"));
            }
            let assignable = role.assignable_scopes.iter().any(|allowed| scope_covers(allowed, scope));
            if !assignable {
                return Err(format!(
                    "role {:?} cannot be assigned at {scope}: outside its assignableScopes {:?}",
                    role.role_name, role.assignable_scopes
                ));
            }
            Ok(())
        }
        Realm::Vault(host) => {
            let trimmed = scope.trim_end_matches('/');
            let key_scope = trimmed.strip_prefix("/keys").is_some_and(|rest| {
                rest.is_empty() || (rest.starts_with('/') && rest.len() > 1 && !rest[1..].contains('/'))
            });
            if trimmed.is_empty() || key_scope {
                Ok(())
            } else {
                Err(format!("role assignment scope {scope:?} on vault {host} must be /, /keys or /keys/{{name}}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    fn assignment(role: &str, scope: &str) -> RoleAssignment {
        RoleAssignment { principal_id: "p".into(), role: role.into(), scope: scope.into(), description: None }
    }

    #[test]
    fn wildcards_match_as_azure_documents_them() {
        assert!(action_matches("*", "Microsoft.Storage/storageAccounts/write"));
        assert!(action_matches("*/read", "Microsoft.Storage/storageAccounts/read"));
        assert!(!action_matches("*/read", "Microsoft.Storage/storageAccounts/write"));
        assert!(action_matches("Microsoft.Storage/*/read", "Microsoft.Storage/storageAccounts/blobServices/read"));
        assert!(action_matches(
            "Microsoft.ServiceBus/*/send/action",
            "Microsoft.ServiceBus/namespaces/messages/send/action"
        ));
        assert!(!action_matches(
            "Microsoft.ServiceBus/*/send/action",
            "Microsoft.ServiceBus/namespaces/messages/receive/action"
        ));
        assert!(action_matches(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
        ));
        assert!(action_matches(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/read"
        ));
        assert!(action_matches("Microsoft.Authorization/*/Write", "microsoft.authorization/roleAssignments/write"));
        assert!(!action_matches("Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/storageAccounts/readx"));
    }

    #[test]
    fn not_actions_subtract_and_data_actions_are_separate() {
        let rbac = Rbac::default();
        let contributor = rbac.role("Contributor").unwrap();
        assert!(contributor.permits(Action::Control("Microsoft.Storage/storageAccounts/write")));
        assert!(!contributor.permits(Action::Control("Microsoft.Authorization/roleAssignments/write")));
        assert!(!contributor.permits(Action::Data("Microsoft.KeyVault/vaults/keys/read")), "no data actions");
        let encryption = rbac.role("e147488a-f6f5-4113-8e2d-b22465e65bf6").unwrap();
        assert_eq!(encryption.role_name, "Key Vault Crypto Service Encryption User");
        assert!(encryption.permits(Action::Data("Microsoft.KeyVault/vaults/keys/wrap/action")));
        assert!(!encryption.permits(Action::Control("Microsoft.KeyVault/vaults/keys/wrap/action")));
        assert!(!encryption.permits(Action::Data("Microsoft.KeyVault/vaults/keys/create/action")));
        let by_path = rbac.role(
            "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
        );
        assert_eq!(by_path.map(|r| r.role_name.as_str()), Some("Reader"));
    }

    #[test]
    fn assignments_inherit_down_the_scope_tree_only() {
        let mut rbac = Rbac::default();
        let rg = "/subscriptions/s/resourceGroups/rg";
        rbac.load(Realm::Arm, &assignment("Reader", rg)).unwrap();
        let read = Action::Control("Microsoft.Storage/storageAccounts/read");
        let account = format!("{rg}/providers/Microsoft.Storage/storageAccounts/a");
        assert!(rbac.permits(&Realm::Arm, "P", read, &account, at(0)));
        assert!(rbac.permits(&Realm::Arm, "p", read, "/subscriptions/S/resourcegroups/RG", at(0)));
        assert!(!rbac.permits(&Realm::Arm, "p", read, "/subscriptions/s/resourceGroups/rg2", at(0)));
        assert!(!rbac.permits(&Realm::Arm, "p", read, "/subscriptions/s", at(0)), "not upwards");
        assert!(!rbac.permits(&Realm::Arm, "q", read, &account, at(0)), "another principal");
        assert!(!rbac.permits(&Realm::Vault("v".into()), "p", read, "/", at(0)), "another realm");
    }

    #[test]
    fn grants_and_revocations_propagate() {
        let mut rbac = Rbac::new(&[], Duration::from_secs(600)).unwrap();
        let sub = "/subscriptions/s";
        let write = Action::Control("Microsoft.Storage/storageAccounts/write");
        rbac.grant(Realm::Arm, &assignment("Contributor", sub), at(1000)).unwrap();
        assert!(!rbac.permits(&Realm::Arm, "p", write, sub, at(1599)));
        assert!(rbac.permits(&Realm::Arm, "p", write, sub, at(1600)));
        rbac.revoke(&Realm::Arm, "p", "Contributor", None, at(2000)).unwrap();
        assert!(rbac.permits(&Realm::Arm, "p", write, sub, at(2599)), "a revocation propagates too");
        assert!(!rbac.permits(&Realm::Arm, "p", write, sub, at(2600)));
        assert!(rbac.revoke(&Realm::Arm, "p", "Contributor", None, at(2600)).is_err());
    }

    #[test]
    fn scopes_and_custom_roles_are_checked() {
        let custom = scenario::RoleDefinition {
            id: "3c5e2bd6-6d9a-4f3e-9d7e-9f0c1a2b3c4d".into(),
            role_name: "Narrow".into(),
            description: None,
            actions: vec!["Microsoft.Storage/storageAccounts/read".into()],
            not_actions: vec![],
            data_actions: vec![],
            not_data_actions: vec![],
            assignable_scopes: vec!["/subscriptions/s/resourceGroups/rg".into()],
        };
        let mut rbac = Rbac::new(&[custom], Duration::ZERO).unwrap();
        assert!(rbac.load(Realm::Arm, &assignment("Narrow", "/subscriptions/s/resourceGroups/rg")).is_ok());
        assert!(rbac.load(Realm::Arm, &assignment("Narrow", "/subscriptions/s")).is_err(), "outside assignableScopes");
        assert!(rbac.load(Realm::Arm, &assignment("Reader", "/")).is_err(), "management groups and root not modelled");
        assert!(rbac.load(Realm::Arm, &assignment("No Such Role", "/subscriptions/s")).is_err());
        let vault = Realm::Vault("kv.vault.azure.net".into());
        assert!(rbac.load(vault.clone(), &assignment("Key Vault Reader", "/keys/k")).is_ok());
        assert!(rbac.load(vault, &assignment("Key Vault Reader", "/secrets/s")).is_err());
    }
}
