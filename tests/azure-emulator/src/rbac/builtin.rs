//! Built-in role definitions the scenarios use, by their real ids, with their real `actions`, `notActions`,
//! `dataActions` and `notDataActions`.
//!
//! Azure built-in roles are copied from the role definitions' JSON in Microsoft's documentation
//! (github.com/MicrosoftDocs/azure-docs, `articles/role-based-access-control/built-in-roles/`: `integration.md`
//! (Service Bus), `identity.md` (Managed Identity Operator), `security.md` (Key Vault), `storage.md`, `monitor.md`,
//! `privileged.md` (Owner, Contributor), `general.md` (Reader); rendered at
//! learn.microsoft.com/azure/role-based-access-control/built-in-roles). Managed HSM local roles are copied from a live
//! `GET https://{hsm}.managedhsm.azure.net/providers/Microsoft.Authorization/roleDefinitions` recorded by the Azure SDK
//! (github.com/Azure/azure-sdk-for-js, `sdk/keyvault/keyvault-admin/recordings/node/keyvaultaccesscontrolclient_tracing/
//! recording_traces_through_the_various_operations.js`); their names and ids match
//! learn.microsoft.com/azure/key-vault/managed-hsm/built-in-roles.

/// One built-in role definition as data.
#[derive(Debug, Clone, Copy)]
pub struct BuiltIn {
    pub id: &'static str,
    pub name: &'static str,
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
    pub data_actions: &'static [&'static str],
    pub not_data_actions: &'static [&'static str],
}

const NONE: &[&str] = &[];

/// The `actions` every Key Vault data role shares (portal and deployment reads).
const KEY_VAULT_READS: &[&str] = &[
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
];

/// The `actions` of the Service Bus data roles other than Owner.
const SERVICE_BUS_READS: &[&str] = &[
    "Microsoft.ServiceBus/*/queues/read",
    "Microsoft.ServiceBus/*/topics/read",
    "Microsoft.ServiceBus/*/topics/subscriptions/read",
];

pub const ROLES: &[BuiltIn] = &[
    // privileged.md / general.md
    BuiltIn {
        id: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        name: "Owner",
        actions: &["*"],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "b24988ac-6180-42a0-ab88-20f7382dd24c",
        name: "Contributor",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
        ],
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        name: "Reader",
        actions: &["*/read"],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    // integration.md
    BuiltIn {
        id: "090c5cfd-751d-490a-894a-3ce6f1109419",
        name: "Azure Service Bus Data Owner",
        actions: &["Microsoft.ServiceBus/*"],
        not_actions: NONE,
        data_actions: &["Microsoft.ServiceBus/*"],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
        name: "Azure Service Bus Data Receiver",
        actions: SERVICE_BUS_READS,
        not_actions: NONE,
        data_actions: &["Microsoft.ServiceBus/*/receive/action"],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
        name: "Azure Service Bus Data Sender",
        actions: SERVICE_BUS_READS,
        not_actions: NONE,
        data_actions: &["Microsoft.ServiceBus/*/send/action"],
        not_data_actions: NONE,
    },
    // identity.md
    BuiltIn {
        id: "f1a07417-d97a-45cb-824c-7a7467783830",
        name: "Managed Identity Operator",
        actions: &[
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Support/*",
        ],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    // storage.md
    BuiltIn {
        id: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        name: "Storage Blob Data Owner",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/*",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        not_actions: NONE,
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
        not_data_actions: NONE,
    },
    // monitor.md
    BuiltIn {
        id: "3913510d-42f4-4e42-8a64-420c390055eb",
        name: "Monitoring Metrics Publisher",
        actions: &[
            "Microsoft.Insights/Register/Action",
            "Microsoft.Support/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        not_actions: NONE,
        data_actions: &["Microsoft.Insights/Metrics/Write", "Microsoft.Insights/Telemetry/Write"],
        not_data_actions: NONE,
    },
    // security.md (Key Vault, Azure RBAC permission model)
    BuiltIn {
        id: "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        name: "Key Vault Administrator",
        actions: KEY_VAULT_READS,
        not_actions: NONE,
        data_actions: &["Microsoft.KeyVault/vaults/*"],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        name: "Key Vault Crypto Officer",
        actions: KEY_VAULT_READS,
        not_actions: NONE,
        data_actions: &["Microsoft.KeyVault/vaults/keys/*", "Microsoft.KeyVault/vaults/keyrotationpolicies/*"],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "e147488a-f6f5-4113-8e2d-b22465e65bf6",
        name: "Key Vault Crypto Service Encryption User",
        actions: &[
            "Microsoft.EventGrid/eventSubscriptions/write",
            "Microsoft.EventGrid/eventSubscriptions/read",
            "Microsoft.EventGrid/eventSubscriptions/delete",
        ],
        not_actions: NONE,
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
        ],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "12338af0-0e69-4776-bea7-57ae8d297424",
        name: "Key Vault Crypto User",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/update/action",
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "Microsoft.KeyVault/vaults/keys/encrypt/action",
            "Microsoft.KeyVault/vaults/keys/decrypt/action",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
            "Microsoft.KeyVault/vaults/keys/sign/action",
            "Microsoft.KeyVault/vaults/keys/verify/action",
        ],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "21090545-7ca7-4776-b22c-e363652d74d2",
        name: "Key Vault Reader",
        actions: KEY_VAULT_READS,
        not_actions: NONE,
        data_actions: &["Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"],
        not_data_actions: NONE,
    },
    // Managed HSM local RBAC (the HSM's own role definitions, not ARM's)
    BuiltIn {
        id: "a290e904-7015-4bba-90c8-60543313cdb4",
        name: "Managed HSM Administrator",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[
            "Microsoft.KeyVault/managedHsm/roleAssignments/delete/action",
            "Microsoft.KeyVault/managedHsm/roleAssignments/read/action",
            "Microsoft.KeyVault/managedHsm/roleAssignments/write/action",
            "Microsoft.KeyVault/managedHsm/roleDefinitions/read/action",
            "Microsoft.KeyVault/managedHsm/roleDefinitions/write/action",
            "Microsoft.KeyVault/managedHsm/roleDefinitions/delete/action",
            "Microsoft.KeyVault/managedHsm/securitydomain/download/action",
            "Microsoft.KeyVault/managedHsm/securitydomain/download/read",
            "Microsoft.KeyVault/managedHsm/securitydomain/upload/action",
            "Microsoft.KeyVault/managedHsm/securitydomain/upload/read",
            "Microsoft.KeyVault/managedHsm/securitydomain/transferkey/read",
            "Microsoft.KeyVault/managedHsm/backup/start/action",
            "Microsoft.KeyVault/managedHsm/restore/start/action",
            "Microsoft.KeyVault/managedHsm/backup/status/action",
            "Microsoft.KeyVault/managedHsm/restore/status/action",
        ],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "515eb02d-2335-4d2d-92f2-b1cbdf9c3778",
        name: "Managed HSM Crypto Officer",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[
            "Microsoft.KeyVault/managedHsm/roleAssignments/delete/action",
            "Microsoft.KeyVault/managedHsm/roleAssignments/read/action",
            "Microsoft.KeyVault/managedHsm/roleAssignments/write/action",
            "Microsoft.KeyVault/managedHsm/roleDefinitions/read/action",
            "Microsoft.KeyVault/managedHsm/roleDefinitions/write/action",
            "Microsoft.KeyVault/managedHsm/roleDefinitions/delete/action",
            "Microsoft.KeyVault/managedHsm/keys/deletedKeys/read/action",
            "Microsoft.KeyVault/managedHsm/keys/deletedKeys/delete",
            "Microsoft.KeyVault/managedHsm/keys/deletedKeys/recover/action",
            "Microsoft.KeyVault/managedHsm/keys/export/action",
        ],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "21dbd100-6940-42c2-9190-5d6cb909625b",
        name: "Managed HSM Crypto User",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[
            "Microsoft.KeyVault/managedHsm/roleDefinitions/read/action",
            "Microsoft.KeyVault/managedHsm/roleAssignments/read/action",
            "Microsoft.KeyVault/managedHsm/keys/read/action",
            "Microsoft.KeyVault/managedHsm/keys/write/action",
            "Microsoft.KeyVault/managedHsm/keys/delete",
            "Microsoft.KeyVault/managedHsm/keys/create",
            "Microsoft.KeyVault/managedHsm/keys/rotate/action",
            "Microsoft.KeyVault/managedHsm/keys/import/action",
            "Microsoft.KeyVault/managedHsm/keys/release/action",
            "Microsoft.KeyVault/managedHsm/keys/backup/action",
            "Microsoft.KeyVault/managedHsm/keys/restore/action",
            "Microsoft.KeyVault/managedHsm/keys/encrypt/action",
            "Microsoft.KeyVault/managedHsm/keys/decrypt/action",
            "Microsoft.KeyVault/managedHsm/keys/wrap/action",
            "Microsoft.KeyVault/managedHsm/keys/unwrap/action",
            "Microsoft.KeyVault/managedHsm/keys/sign/action",
            "Microsoft.KeyVault/managedHsm/keys/verify/action",
            "Microsoft.KeyVault/managedHsm/keys/derive/action",
            "Microsoft.KeyVault/managedHsm/rng/action",
        ],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "33413926-3206-4cdd-b39a-83574fe37a17",
        name: "Managed HSM Crypto Service Encryption User",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[
            "Microsoft.KeyVault/managedHsm/keys/read/action",
            "Microsoft.KeyVault/managedHsm/keys/wrap/action",
            "Microsoft.KeyVault/managedHsm/keys/unwrap/action",
        ],
        not_data_actions: NONE,
    },
    BuiltIn {
        id: "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3",
        name: "Managed HSM Crypto Auditor",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[
            "Microsoft.KeyVault/managedHsm/roleAssignments/read/action",
            "Microsoft.KeyVault/managedHsm/roleDefinitions/read/action",
            "Microsoft.KeyVault/managedHsm/keys/read/action",
            "Microsoft.KeyVault/managedHsm/keys/deletedKeys/read/action",
        ],
        not_data_actions: NONE,
    },
];
