//! The scenario file: the emulated world (tenants, identities, vaults, storage, Service Bus) as data.
//!
//! A scenario is loaded at start (`--scenario FILE`) or at run time (`PUT /_emulator/scenario`), and changed at run
//! time with [`Change`]s (`POST /_emulator/changes`). Field names are camelCase in JSON. Every GUID-valued field is a
//! string so that tests can use readable fixed GUIDs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole emulated world as loaded from a file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// `AzureCloud` (default), `AzureUSGovernment` or `AzureChinaCloud`: decides host names and token audiences.
    #[serde(default)]
    pub cloud: Option<String>,
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// Multi-tenant (or single-tenant) app registrations; each lives in its home tenant.
    #[serde(default)]
    pub applications: Vec<Application>,
    /// Service principals: an app "installed" in a tenant.
    #[serde(default)]
    pub service_principals: Vec<ServicePrincipal>,
    /// User-assigned managed identities (ARM resources in a subscription).
    #[serde(default)]
    pub managed_identities: Vec<ManagedIdentity>,
    /// The Function App whose handler the emulated host runs: its identities.
    #[serde(default)]
    pub function_app: Option<FunctionApp>,
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    #[serde(default)]
    pub vaults: Vec<Vault>,
    #[serde(default)]
    pub storage_accounts: Vec<StorageAccount>,
    /// Custom role definitions (built-in roles are known by name and id; see `rbac::builtin`).
    #[serde(default)]
    pub role_definitions: Vec<RoleDefinition>,
    /// Azure role assignments at ARM scopes (`/subscriptions/…`), which ARM, Service Bus and the Key Vaults with a
    /// `resourceId` check. A vault's own assignments can also be listed on the vault.
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignment>,
    #[serde(default)]
    pub service_bus: Vec<ServiceBusNamespace>,
    /// How long changes made during a run take to reach token issuance and authorization.
    #[serde(default)]
    pub propagation: Propagation,
    /// How long the Storage RP takes to create an account (`StorageAccounts_Create`, a long-running operation), in
    /// seconds of the emulator's clock; absent: [`DEFAULT_STORAGE_ACCOUNT_CREATION_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_creation_seconds: Option<u64>,
    /// Storage account names held elsewhere in Azure (another tenant's subscription): storage account names are
    /// globally unique, so creating one of these is `StorageAccountAlreadyTaken`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taken_storage_account_names: Vec<String>,
}

/// A storage account's creation, when the scenario does not say: short, so tests that create accounts stay quick
/// (Azure takes from seconds to a minute or so; nothing documents a figure).
pub const DEFAULT_STORAGE_ACCOUNT_CREATION_SECONDS: u64 = 2;

/// Propagation delays in seconds (emulator clock) for changes made during a run; 0 makes a change effective at once.
/// The defaults and their sources are in `propagation.rs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Propagation {
    /// A service principal added or removed (admin consent, `POST /servicePrincipals`) reaches the token endpoint.
    #[serde(default = "default_service_principal_seconds")]
    pub service_principal_seconds: u64,
    /// A role assignment granted or revoked reaches ARM, Key Vault and Service Bus authorization.
    #[serde(default = "default_role_assignment_seconds")]
    pub role_assignment_seconds: u64,
    /// A federated identity credential added, changed or deleted reaches the token endpoint.
    #[serde(default = "default_federated_credential_seconds")]
    pub federated_credential_seconds: u64,
}

impl Default for Propagation {
    fn default() -> Self {
        Self {
            service_principal_seconds: default_service_principal_seconds(),
            role_assignment_seconds: default_role_assignment_seconds(),
            federated_credential_seconds: default_federated_credential_seconds(),
        }
    }
}

fn default_service_principal_seconds() -> u64 {
    crate::propagation::SERVICE_PRINCIPAL_SECONDS
}

fn default_role_assignment_seconds() -> u64 {
    crate::propagation::ROLE_ASSIGNMENT_SECONDS
}

fn default_federated_credential_seconds() -> u64 {
    crate::propagation::FEDERATED_CREDENTIAL_SECONDS
}

/// A custom role, as `Microsoft.Authorization/roleDefinitions` declares it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleDefinition {
    /// The role definition's GUID.
    pub id: String,
    pub role_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
    /// Scopes the role may be assigned at (and below).
    pub assignable_scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    pub id: String,
    /// Display name, for logs and dumps only.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// Object id (Graph `id`).
    pub object_id: String,
    /// Application (client) id (Graph `appId`).
    pub app_id: String,
    /// Home tenant.
    pub tenant_id: String,
    pub display_name: String,
    /// `AzureADMyOrg` (single tenant) or `AzureADMultipleOrgs` (multi-tenant).
    #[serde(default = "default_sign_in_audience")]
    pub sign_in_audience: String,
    #[serde(default)]
    pub federated_identity_credentials: Vec<FederatedIdentityCredential>,
}

fn default_sign_in_audience() -> String {
    "AzureADMultipleOrgs".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederatedIdentityCredential {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePrincipal {
    /// Object id of the service principal in `tenant_id`.
    pub id: String,
    pub app_id: String,
    pub tenant_id: String,
    /// A disabled service principal makes token requests fail with AADSTS7000112.
    #[serde(default = "yes")]
    pub account_enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedIdentity {
    /// Full ARM id: `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`.
    pub resource_id: String,
    pub client_id: String,
    /// Object (principal) id: the `sub`/`oid` of its tokens and the FIC subject.
    pub principal_id: String,
    pub tenant_id: String,
    #[serde(default = "default_location")]
    pub location: String,
}

fn default_location() -> String {
    "westeurope".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionApp {
    pub tenant_id: String,
    /// System-assigned identity of the Function App (used for ARM, Graph and Service Bus).
    pub system_assigned: SystemAssignedIdentity,
    /// Resource ids of the user-assigned identities attached to the Function App.
    #[serde(default)]
    pub user_assigned: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemAssignedIdentity {
    pub principal_id: String,
    pub client_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    pub id: String,
    pub tenant_id: String,
    /// Feature states by `Namespace/FeatureName`, e.g. `Microsoft.Storage/FederatedClientIdentity: NotRegistered`.
    #[serde(default)]
    pub features: std::collections::BTreeMap<String, String>,
    /// How many `Features_Get` polls a feature stays `Registering` after a register call.
    #[serde(default = "default_polls")]
    pub feature_registration_polls: u32,
    /// Resource provider registration states, e.g. `Microsoft.Storage: Registered`.
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, String>,
}

fn default_polls() -> u32 {
    2
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vault {
    /// Vault name: the host is `{name}.{suffix}`.
    pub name: String,
    /// `vault` (Key Vault, default) or `managedhsm`.
    #[serde(default = "default_vault_kind")]
    pub kind: String,
    pub tenant_id: String,
    #[serde(default = "yes")]
    pub soft_delete: bool,
    #[serde(default = "yes")]
    pub purge_protection: bool,
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    #[serde(default)]
    pub keys: Vec<Key>,
    /// The vault's ARM id (`/subscriptions/…/providers/Microsoft.KeyVault/vaults/{name}`): Azure role assignments at
    /// it or above (subscription, resource group) then reach its keys too. Managed HSMs use local RBAC only.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Role assignments on the vault (scope `/`) or on one key (scope `/keys/{name}`): Key Vault's Azure RBAC at the
    /// vault's scope, or a Managed HSM's local RBAC.
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignment>,
}

fn default_vault_kind() -> String {
    "vault".to_owned()
}

fn default_retention() -> u32 {
    90
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Key {
    pub name: String,
    /// `RSA`, `RSA-HSM`, `EC`, `EC-HSM`, `oct`, `oct-HSM`.
    #[serde(default = "default_kty")]
    pub kty: String,
    /// RSA modulus size in bits.
    #[serde(default = "default_key_size")]
    pub size: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Allowed key operations; default: all RSA operations.
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    /// Unix seconds.
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    /// How many versions exist (the last one is "latest").
    #[serde(default = "one")]
    pub versions: u32,
    /// Tags of every version (GET key returns a version's tags; `cmk-consent` names the storage account the key may
    /// protect).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

fn default_kty() -> String {
    "RSA".to_owned()
}

fn default_key_size() -> u32 {
    2048
}

fn one() -> u32 {
    1
}

/// A role assignment: who (`principalId`), what (`role`) and where (`scope`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignment {
    /// Object id of the principal (a service principal or managed identity in the scope's tenant).
    pub principal_id: String,
    /// The role: its name (`Key Vault Crypto Service Encryption User`), its GUID, or its role definition id
    /// (`/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}`).
    pub role: String,
    /// At the top level an ARM scope (`/subscriptions/{s}[/resourceGroups/{rg}[/providers/…]]`); on a vault `/` (the
    /// whole vault, the default) or `/keys/{name}`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// What the assignment is for (Azure role assignments carry one too).
    #[serde(default)]
    pub description: Option<String>,
}

fn default_scope() -> String {
    "/".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageAccount {
    /// Full ARM id of the account.
    pub id: String,
    #[serde(default = "default_location")]
    pub location: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default = "default_sku")]
    pub sku: String,
    /// Initial `identity` JSON (as ARM returns it), if any.
    #[serde(default)]
    pub identity: Option<serde_json::Value>,
    /// Initial `properties.encryption` JSON, if not Microsoft-managed keys.
    #[serde(default)]
    pub encryption: Option<serde_json::Value>,
    /// Initial tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

fn default_kind() -> String {
    "StorageV2".to_owned()
}

fn default_sku() -> String {
    "Standard_LRS".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceBusNamespace {
    /// Namespace name: the host is `{name}.servicebus.windows.net` (or the cloud's suffix).
    pub name: String,
    /// The namespace's ARM id (`/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ServiceBus/namespaces/{name}`):
    /// the scope Entra callers are authorized at (entities are `{resourceId}/queues/{q}`, `…/topics/{t}[/subscriptions/{s}]`).
    pub resource_id: String,
    pub tenant_id: String,
    /// SAS authorization rules at namespace level.
    #[serde(default)]
    pub sas_keys: Vec<SasKey>,
    /// When false, SAS is refused (like `disableLocalAuth: true`).
    #[serde(default = "yes")]
    pub local_auth: bool,
    /// Sequence numbers start here (real partitioned entities use values above 2^31).
    #[serde(default = "default_first_sequence")]
    pub first_sequence_number: i64,
    #[serde(default)]
    pub queues: Vec<Queue>,
    #[serde(default)]
    pub topics: Vec<Topic>,
}

fn default_first_sequence() -> i64 {
    // What a message on partition 2 of a partitioned entity gets: (partition << 48) + 1.
    (2_i64 << 48) + 1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SasKey {
    pub name: String,
    pub key: String,
    /// `Listen`, `Send`, `Manage`.
    #[serde(default = "all_rights")]
    pub rights: Vec<String>,
}

fn all_rights() -> Vec<String> {
    vec!["Listen".into(), "Send".into(), "Manage".into()]
}

/// Entity settings shared by queues and subscriptions. Durations are ISO 8601 (`PT30S`), as in ARM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Queue {
    pub name: String,
    #[serde(default = "default_lock")]
    pub lock_duration: String,
    #[serde(default = "default_max_delivery")]
    pub max_delivery_count: u32,
    #[serde(default)]
    pub dead_lettering_on_message_expiration: bool,
    #[serde(default)]
    pub requires_duplicate_detection: bool,
    #[serde(default = "default_dedupe_window")]
    pub duplicate_detection_history_time_window: String,
    /// Default TTL; absent means effectively infinite.
    #[serde(default)]
    pub default_message_time_to_live: Option<String>,
    /// Maximum message size in KiB (256 on Standard).
    #[serde(default = "default_max_size")]
    pub max_message_size_in_kilobytes: u32,
    /// `requiresSession`: messages need a SessionId and are received through session locks.
    #[serde(default)]
    pub requires_session: bool,
}

fn default_lock() -> String {
    "PT1M".to_owned()
}

fn default_max_delivery() -> u32 {
    10
}

fn default_dedupe_window() -> String {
    "PT10M".to_owned()
}

fn default_max_size() -> u32 {
    256
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topic {
    pub name: String,
    #[serde(default)]
    pub requires_duplicate_detection: bool,
    #[serde(default = "default_dedupe_window")]
    pub duplicate_detection_history_time_window: String,
    #[serde(default)]
    pub default_message_time_to_live: Option<String>,
    #[serde(default = "default_max_size")]
    pub max_message_size_in_kilobytes: u32,
    #[serde(default)]
    pub subscriptions: Vec<TopicSubscription>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicSubscription {
    pub name: String,
    #[serde(default = "default_lock")]
    pub lock_duration: String,
    #[serde(default = "default_max_delivery")]
    pub max_delivery_count: u32,
    #[serde(default)]
    pub dead_lettering_on_message_expiration: bool,
    /// `requiresSession`, as on a queue.
    #[serde(default)]
    pub requires_session: bool,
    /// Rules; none means the `$Default` rule `1=1` (everything).
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A subscription rule: exactly one of the two filters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// SQL filter subset: `=`, `<>`, `IN (...)`, `LIKE`, `EXISTS(...)`/`NOT EXISTS`, `AND`, `OR`, `NOT`, parentheses,
    /// string/number/boolean literals, `1=1`; identifiers are application properties or `sys.Label`, `sys.MessageId`,
    /// `sys.CorrelationId`, `sys.ContentType`, `sys.To`, `sys.ReplyTo`, `sys.SessionId`.
    #[serde(default)]
    pub sql_filter: Option<String>,
    #[serde(default)]
    pub correlation_filter: Option<CorrelationFilter>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorrelationFilter {
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    /// Application properties that must all be equal.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A run-time change to the world (`POST /_emulator/changes` takes a JSON array of these).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub enum Change {
    /// The customer installs the app (creates its service principal); token requests see it after the
    /// service-principal propagation delay.
    #[serde(rename_all = "camelCase")]
    AddServicePrincipal { service_principal: ServicePrincipal },
    /// Uninstalls the app; token requests still succeed until the service-principal propagation delay has passed.
    #[serde(rename_all = "camelCase")]
    RemoveServicePrincipal { tenant_id: String, app_id: String },
    /// A role assignment: on `vault` (vault-local scope) when given, else at an ARM scope. Takes effect after the
    /// role-assignment propagation delay.
    #[serde(rename_all = "camelCase")]
    GrantRole {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vault: Option<String>,
        assignment: RoleAssignment,
    },
    /// Removes the principal's assignments of `role` (only at `scope` when given), after the propagation delay.
    #[serde(rename_all = "camelCase")]
    RevokeRole {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vault: Option<String>,
        principal_id: String,
        role: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    SetKeyEnabled { vault: String, key: String, enabled: bool },
    /// Sets (or, with `null`, clears) the expiry of the key's newest version, as `az keyvault key set-attributes
    /// --expires` does; `expires` is RFC 3339.
    #[serde(rename_all = "camelCase")]
    SetKeyExpiry { vault: String, key: String, expires: Option<String> },
    /// Adds a key, or a new version of an existing key.
    #[serde(rename_all = "camelCase")]
    AddKey { vault: String, key: Key },
    /// Rotates a key, as Key Vault's `RotateKey` (`az keyvault key rotate`) does: a new current version with new
    /// material, the current version's type, size and operations, enabled, no expiry and no tags (tags belong to a
    /// version). Its id is `deterministic_version(host, key, n)` for the key's n-th version (0-based), so tests can
    /// name it.
    #[serde(rename_all = "camelCase")]
    RotateKey { vault: String, key: String },
    #[serde(rename_all = "camelCase")]
    SetPurgeProtection { vault: String, enabled: bool },
    /// Adds a federated credential (as Graph does); token requests see it after the federated-credential delay.
    #[serde(rename_all = "camelCase")]
    AddFederatedCredential { app_object_id: String, credential: FederatedIdentityCredential },
    /// Replaces the tags of a key's latest version, at once (what the customer's `az keyvault key set-attributes
    /// --tags` does through Key Vault's update-key API, which the emulator also serves).
    #[serde(rename_all = "camelCase")]
    SetKeyTags { vault: String, key: String, tags: BTreeMap<String, String> },
    /// Deletes a key, as `az keyvault key delete` does: with soft delete on, it is kept (deleted) for the vault's
    /// retention period and can be recovered; without, it is gone. Either way every operation on it is 404
    /// `KeyNotFound`.
    #[serde(rename_all = "camelCase")]
    DeleteKey { vault: String, key: String },
    /// Recovers a soft-deleted key with all its versions, as `az keyvault key recover` does.
    #[serde(rename_all = "camelCase")]
    RecoverKey { vault: String, key: String },
    /// Brings the Storage RP's daily check for a new key version of this account (on a key with no version pinned)
    /// due now, instead of a day after the last one: tests cannot move the clock a day, since the handler's token
    /// caches follow the wall clock and the emulator would judge their tokens expired.
    #[serde(rename_all = "camelCase")]
    RunStorageKeyCheck { account: String },
    /// Replaces a storage account's tags (what the ISV's own tooling does with ARM's tags API), at once.
    #[serde(rename_all = "camelCase")]
    SetStorageAccountTags { account: String, tags: BTreeMap<String, String> },
}
