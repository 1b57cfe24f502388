//! What the function app's identity must be granted, as data: the infra test checks `infra/` grants each entry.
//!
//! One row per (scope, grant). `why` names the calls that need it, so a reviewer can tell whether a grant is still
//! needed when the code changes. The narrowest scope that works is the rule: the queue and topic rather than the
//! namespace, the CMK identity rather than its resource group, and only the storage actions the PATCH and GETs need.

/// The identity that holds the grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// The function app's system-assigned identity: the Functions host (trigger, host storage, telemetry) and the
    /// handler's ARM, Graph and Service Bus calls both use it. The CMK user-assigned identity needs no Azure role:
    /// it is only the federated credential of the multi-tenant app.
    FunctionAppSystemIdentity,
}

/// Where a grant applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// The onboarding queue (`CMK_ONBOARDING_QUEUE`).
    OnboardingQueue,
    /// The events topic (`CMK_EVENTS_TOPIC`).
    EventsTopic,
    /// Each subscription or resource group listed in `CMK_ALLOWED_SCOPES` (where the ISV storage accounts live).
    AllowedStorageScopes,
    /// The subscription of each allowed scope (preview-feature registration only).
    AllowedSubscriptions,
    /// The CMK user-assigned identity (`CMK_UAMI_RESOURCE_ID`).
    CmkIdentity,
    /// The storage account behind identity-based `AzureWebJobsStorage`.
    HostStorage,
    /// The Application Insights component (Entra-authenticated ingestion).
    ApplicationInsights,
    /// The multi-tenant app registration (`CMK_APP_OBJECT_ID`), in Microsoft Graph.
    MultiTenantApp,
}

/// What is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// An Azure built-in role, by its tenant-independent role definition id.
    BuiltInRole { name: &'static str, id: &'static str },
    /// A custom role holding exactly these control-plane actions (preferred when a built-in role is broader).
    CustomRole { name: &'static str, actions: &'static [&'static str] },
    /// A Microsoft Graph application permission (app role) granted to the function app's service principal.
    GraphAppRole { value: &'static str },
    /// Ownership of the Graph object, which `*.OwnedBy` permissions require.
    GraphOwner,
}

/// When a grant is needed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// Only when `CMK_REGISTER_PREVIEW_FEATURE` is true.
    RegisterPreviewFeature,
    /// Only when `CMK_FIC_MODE` is `verify` (the default).
    FicModeVerify,
    /// Only when `CMK_FIC_MODE` is `ensure`.
    FicModeEnsure,
}

/// One grant the deployment must make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub principal: Principal,
    pub scope: ScopeKind,
    pub grant: Grant,
    pub condition: Condition,
    pub why: &'static str,
}

/// Actions of the custom storage role. `Storage Account Contributor` would also grant `listKeys/action` (full data
/// access through the account keys) and `delete`; neither the PATCH nor a new account's PUT needs them.
pub const STORAGE_ENCRYPTION_ACTIONS: &[&str] =
    &["Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/storageAccounts/write"];

/// Actions of the custom preview-feature role (legacy step P0 of the cross-tenant CMK guide). `providers/read`:
/// when the re-registration answers `Registering`, the handler reads the provider back.
pub const FEATURE_REGISTRATION_ACTIONS: &[&str] = &[
    "Microsoft.Features/providers/features/read",
    "Microsoft.Features/providers/features/register/action",
    "Microsoft.Storage/register/action",
    "Microsoft.Resources/subscriptions/providers/read",
];

const SYSTEM: Principal = Principal::FunctionAppSystemIdentity;

/// Every grant, in the order a reader meets the calls.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::OnboardingQueue,
        grant: Grant::BuiltInRole {
            name: "Azure Service Bus Data Receiver",
            id: "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
        },
        condition: Condition::Always,
        why: "The Functions host receives onboarding messages (peek-lock, complete, abandon) for the trigger.",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::OnboardingQueue,
        grant: Grant::BuiltInRole { name: "Azure Service Bus Data Sender", id: "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39" },
        condition: Condition::Always,
        why: "The handler sends delayed-retry copies (ScheduledEnqueueTimeUtc) and marked dead-letter copies.",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::EventsTopic,
        grant: Grant::BuiltInRole { name: "Azure Service Bus Data Sender", id: "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39" },
        condition: Condition::Always,
        why: "The handler publishes completed / action_required / failed CloudEvents.",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::AllowedStorageScopes,
        grant: Grant::CustomRole {
            name: "CMK Onboarding Storage Encryption Operator",
            actions: STORAGE_ENCRYPTION_ACTIONS,
        },
        condition: Condition::Always,
        why: "read: GET the account before and after (observe, verify), list accounts (key watch), GET one for \
              the status function, and follow a creation's operation (ARM wants resource-group permission to track \
              it); write: the PATCH that sets encryption.keySource/keyvaultproperties/identity and attaches the CMK \
              identity, and the PUT that creates a new account encrypted from the start (the create option; ARM has \
              one action for both).",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::CmkIdentity,
        grant: Grant::BuiltInRole { name: "Managed Identity Operator", id: "f1a07417-d97a-45cb-824c-7a7467783830" },
        condition: Condition::Always,
        why: "userAssignedIdentities/*/assign/action: the storage PATCH (or a new account's PUT) attaches this \
              identity to the account; \
              */read: GET the identity for its clientId and principalId.",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::AllowedSubscriptions,
        grant: Grant::CustomRole {
            name: "CMK Onboarding Preview Feature Registrar",
            actions: FEATURE_REGISTRATION_ACTIONS,
        },
        condition: Condition::RegisterPreviewFeature,
        why: "Register and poll Microsoft.Storage/FederatedClientIdentity, then re-register the Microsoft.Storage \
              provider and read it back while it is Registering (only where the legacy preview flag is enforced).",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::MultiTenantApp,
        grant: Grant::GraphAppRole { value: "Application.Read.All" },
        condition: Condition::FicModeVerify,
        why: "Verify mode reads the app's federated identity credentials to explain a broken chain precisely.",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::MultiTenantApp,
        grant: Grant::GraphAppRole { value: "Application.ReadWrite.OwnedBy" },
        condition: Condition::FicModeEnsure,
        why: "Ensure mode upserts the federated identity credential on the app it owns, and nothing else.",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::MultiTenantApp,
        grant: Grant::GraphOwner,
        condition: Condition::FicModeEnsure,
        why: "Application.ReadWrite.OwnedBy only reaches applications the caller owns.",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::HostStorage,
        grant: Grant::BuiltInRole { name: "Storage Blob Data Owner", id: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b" },
        condition: Condition::Always,
        why: "The Functions host keeps leases and keys in blobs (and creates their containers) and reads the Flex \
              deployment package; Owner rather than Contributor is what the host documents for identity-based storage.",
    },
    Permission {
        principal: SYSTEM,
        scope: ScopeKind::ApplicationInsights,
        grant: Grant::BuiltInRole { name: "Monitoring Metrics Publisher", id: "3913510d-42f4-4e42-8a64-420c390055eb" },
        condition: Condition::Always,
        why: "Telemetry ingestion with Entra auth (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), local auth disabled.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_role_ids_are_guids_and_names_are_consistent() {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for permission in PERMISSIONS {
            if let Grant::BuiltInRole { name, id } = permission.grant {
                assert_eq!(id.len(), 36, "{name}: {id}");
                assert!(id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'), "{name}: {id}");
                if let Some((_, other)) = seen.iter().find(|(n, _)| *n == name) {
                    assert_eq!(*other, id, "one id per role name");
                }
                seen.push((name, id));
            }
        }
    }

    #[test]
    fn every_grant_says_why() {
        assert!(PERMISSIONS.iter().all(|p| p.why.len() > 20));
    }

    #[test]
    fn storage_role_has_no_key_or_delete_action() {
        for action in STORAGE_ENCRYPTION_ACTIONS {
            assert!(!action.contains("listKeys") && !action.ends_with("/delete") && !action.contains('*'), "{action}");
        }
    }
}
