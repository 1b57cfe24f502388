//! `parse_message`: raw message bytes → `ValidatedMessage` (an onboarding or an offboarding), checking every rule of
//! contract v1; `parse_and_validate` for callers that take onboardings only.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::codes::*;
use super::grammar::{
    StorageAccountId, is_identity_set_name, is_key_name, is_key_version, is_onboarding_id, is_supported_schema_version,
    normalize_guid, parse_storage_account_id, parse_vault_uri,
};
use super::{AllowedScope, IsvIdentity, ValidationError};
use crate::cloud::Cloud;

/// What validation needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationPolicy {
    pub cloud: Cloud,
    pub max_message_bytes: usize,
    pub allowed_scopes: Vec<AllowedScope>,
    pub default_identity: IsvIdentity,
    pub identity_sets: BTreeMap<String, IsvIdentity>,
}

/// The customer's key, normalised.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// `https://{host}/`, lowercase.
    pub vault_uri: String,
    pub vault_host: String,
    pub managed_hsm: bool,
    pub name: String,
    /// Lowercase; `None` means automatic key version updates.
    pub version: Option<String>,
}

impl KeyRef {
    /// The vault (or HSM) name: the first label of the host.
    pub fn vault_name(&self) -> &str {
        self.vault_host.split('.').next().unwrap_or_default()
    }
}

/// A message that passed every check; the only input the workflow accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedOnboarding {
    pub onboarding_id: String,
    pub requested_at: OffsetDateTime,
    /// Lowercase GUID.
    pub customer_tenant_id: String,
    pub storage_account: StorageAccountId,
    pub key: KeyRef,
    pub identity: IsvIdentity,
    /// The `isvIdentity` the message named; `None` for the default set.
    pub identity_set: Option<String>,
    /// The message allows re-keying an account that already uses a key in another vault.
    pub replace_existing_key: bool,
    /// `create`: make the account, encrypted with the key from its first PUT, when it does not exist (decision 29).
    pub create: Option<NewAccount>,
}

/// What a new storage account is created with (`create` in the message); names as `StorageAccountCreateParameters`
/// spells them (storage.json 2023-05-01).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    /// Programmatic region name (`westeurope`), as `az account list-locations --query [].name` prints it.
    pub location: String,
    /// `sku.name`, one of [`SKU_NAMES`].
    pub sku: String,
    /// One of [`ACCOUNT_KINDS`].
    pub kind: String,
}

/// `SkuName` of storage.json 2023-05-01 (common.json), exactly as spelled there.
pub const SKU_NAMES: &[&str] = &[
    "Standard_LRS",
    "Standard_GRS",
    "Standard_RAGRS",
    "Standard_ZRS",
    "Premium_LRS",
    "Premium_ZRS",
    "Standard_GZRS",
    "Standard_RAGZRS",
];

/// `Kind` of `StorageAccountCreateParameters`, storage.json 2023-05-01.
pub const ACCOUNT_KINDS: &[&str] = &["Storage", "StorageV2", "BlobStorage", "FileStorage", "BlockBlobStorage"];

/// The members `create` may have: an unknown one is refused, since ignoring it would create another account than
/// the one asked for.
const CREATE_MEMBERS: &[&str] = &["location", "sku", "kind"];

/// A request about an onboarded account: an offboarding (the account goes back to Microsoft-managed keys and loses
/// our tags, `workflow::offboarding`) or a key-watch probe (`workflow::watch`). It names the onboarding it is about;
/// both compare that with the account's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRequest {
    /// The onboarding this message ends (the account's `cmk-onboarding-id` tag, when it has one).
    pub onboarding_id: String,
    pub requested_at: OffsetDateTime,
    /// Lowercase GUID.
    pub customer_tenant_id: String,
    pub storage_account: StorageAccountId,
    /// Optional: when given, the account's key must be in this vault (a stricter ownership guard).
    pub key: Option<KeyRef>,
    pub identity: IsvIdentity,
    pub identity_set: Option<String>,
}

/// What a valid message asks for, by its `kind` member (absent or null: an onboarding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidatedMessage {
    Onboarding(ValidatedOnboarding),
    Offboarding(AccountRequest),
    /// A key-watch probe, sent by the watch function (`kind: probe`).
    Probe(AccountRequest),
}

impl ValidatedMessage {
    pub fn onboarding_id(&self) -> &str {
        match self {
            Self::Onboarding(o) => &o.onboarding_id,
            Self::Offboarding(o) | Self::Probe(o) => &o.onboarding_id,
        }
    }

    pub fn customer_tenant_id(&self) -> &str {
        match self {
            Self::Onboarding(o) => &o.customer_tenant_id,
            Self::Offboarding(o) | Self::Probe(o) => &o.customer_tenant_id,
        }
    }

    pub fn storage_account(&self) -> &StorageAccountId {
        match self {
            Self::Onboarding(o) => &o.storage_account,
            Self::Offboarding(o) | Self::Probe(o) => &o.storage_account,
        }
    }

    pub fn as_onboarding(&self) -> Option<&ValidatedOnboarding> {
        match self {
            Self::Onboarding(o) => Some(o),
            Self::Offboarding(_) | Self::Probe(_) => None,
        }
    }
}

/// The values of the `kind` member.
pub const KIND_ONBOARDING: &str = "onboarding";
pub const KIND_OFFBOARDING: &str = "offboarding";
pub const KIND_PROBE: &str = "probe";

/// How far in the future `requestedAt` may be: clocks differ, but not by more than this.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// [`parse_and_validate_at`] with the current time.
pub fn parse_and_validate(body: &[u8], policy: &ValidationPolicy) -> Result<ValidatedOnboarding, ValidationError> {
    parse_and_validate_at(body, policy, OffsetDateTime::now_utc())
}

/// [`parse_message_at`] for callers that only take onboardings (diagnosis, `cmkctl validate`): an offboarding is
/// refused with [`UNEXPECTED_MESSAGE_KIND`].
pub fn parse_and_validate_at(
    body: &[u8],
    policy: &ValidationPolicy,
    now: OffsetDateTime,
) -> Result<ValidatedOnboarding, ValidationError> {
    match parse_message_at(body, policy, now)? {
        ValidatedMessage::Onboarding(onboarding) => Ok(onboarding),
        ValidatedMessage::Offboarding(_) | ValidatedMessage::Probe(_) => Err(ValidationError::new(
            UNEXPECTED_MESSAGE_KIND,
            "kind",
            "this is not an onboarding message; only onboarding messages are taken here",
        )),
    }
}

/// [`parse_message_at`] with the current time.
pub fn parse_message(body: &[u8], policy: &ValidationPolicy) -> Result<ValidatedMessage, ValidationError> {
    parse_message_at(body, policy, OffsetDateTime::now_utc())
}

/// Parses and validates one message body as of `now`. Nothing here does I/O; a rejected message must cause no
/// outbound call.
pub fn parse_message_at(
    body: &[u8],
    policy: &ValidationPolicy,
    now: OffsetDateTime,
) -> Result<ValidatedMessage, ValidationError> {
    if body.len() > policy.max_message_bytes {
        return Err(ValidationError::new(
            MESSAGE_TOO_LARGE,
            "$",
            format!("message is {} bytes; the limit is {}", body.len(), policy.max_message_bytes),
        ));
    }
    let text =
        std::str::from_utf8(body).map_err(|e| ValidationError::new(INVALID_JSON, "$", format!("not UTF-8: {e}")))?;
    let root = super::strict_json::parse(text)
        .map_err(|e| ValidationError::new(INVALID_JSON, "$", format!("not I-JSON (RFC 7493): {e}")))?;
    if !root.is_object() {
        return Err(ValidationError::new(INVALID_MESSAGE, "$", "must be a JSON object"));
    }

    let version = required_str(&root, "schemaVersion")?;
    if !is_supported_schema_version(version) {
        return Err(ValidationError::new(
            UNSUPPORTED_SCHEMA_VERSION,
            "schemaVersion",
            format!("{version:?} is not supported; this handler accepts 1.x"),
        ));
    }

    let kind = match optional_str(&root, "kind")? {
        None => KIND_ONBOARDING,
        Some(kind @ (KIND_ONBOARDING | KIND_OFFBOARDING | KIND_PROBE)) => kind,
        Some(other) => {
            return Err(ValidationError::new(
                UNSUPPORTED_MESSAGE_KIND,
                "kind",
                format!(
                    "{other:?} is not a message kind; use \"{KIND_ONBOARDING}\" (the default), \"{KIND_OFFBOARDING}\" or \"{KIND_PROBE}\""
                ),
            ));
        }
    };
    let about_an_account = kind != KIND_ONBOARDING;

    let onboarding_id = required_str(&root, "onboardingId")?;
    check(is_onboarding_id(onboarding_id), INVALID_ONBOARDING_ID, "onboardingId", || {
        "must be 1-128 of [A-Za-z0-9._:-] starting with a letter or digit".into()
    })?;

    let requested_at_text = required_str(&root, "requestedAt")?;
    let requested_at = OffsetDateTime::parse(requested_at_text, &Rfc3339).map_err(|e| {
        ValidationError::new(INVALID_REQUESTED_AT, "requestedAt", format!("not an RFC 3339 date-time with offset: {e}"))
    })?;
    let latest = now.checked_add(time::Duration::try_from(MAX_CLOCK_SKEW).unwrap_or_default()).unwrap_or(now);
    check(requested_at <= latest, INVALID_REQUESTED_AT, "requestedAt", || {
        format!(
            "{requested_at_text} is in the future (more than {} minutes after {now})",
            MAX_CLOCK_SKEW.as_secs() / 60
        )
    })?;

    let tenant = required_str(&root, "customer.tenantId")?;
    let customer_tenant_id = normalize_guid(tenant)
        .ok_or_else(|| ValidationError::new(INVALID_TENANT_ID, "customer.tenantId", "must be a GUID (8-4-4-4-12)"))?;

    let storage_account = parse_storage_account_id(required_str(&root, "storageAccount.resourceId")?)
        .map_err(|e| ValidationError::new(INVALID_STORAGE_ACCOUNT_ID, "storageAccount.resourceId", e))?;

    // An offboarding may name the key (then the account's key must be in that vault); an onboarding must.
    let key = match (about_an_account, lookup(&root, "key")?) {
        (true, None) => None,
        _ => Some(parse_key(&root, policy)?),
    };

    let replace_existing_key = match lookup(&root, "replaceExistingKey")? {
        None => false,
        Some(Value::Bool(replace)) => *replace,
        Some(_) => return Err(ValidationError::new(INVALID_MESSAGE, "replaceExistingKey", "must be a boolean")),
    };

    let create = parse_create(&root)?;
    if create.is_some() && about_an_account {
        return Err(ValidationError::new(INVALID_CREATE_OPTIONS, "create", "only an onboarding can create an account"));
    }

    let identity_set = optional_str(&root, "isvIdentity")?;
    if let Some(name) = identity_set {
        check(is_identity_set_name(name), INVALID_ISV_IDENTITY, "isvIdentity", || {
            "must be 1-64 of [A-Za-z0-9._-] starting with a letter or digit".into()
        })?;
    }

    // Configuration-dependent checks come last: everything above is also expressed in the JSON Schema.
    let allowed = policy
        .allowed_scopes
        .iter()
        .any(|scope| scope.contains(&storage_account.subscription_id, &storage_account.resource_group));
    check(allowed, STORAGE_ACCOUNT_NOT_ALLOWED, "storageAccount.resourceId", || {
        format!("{} is outside the scopes this handler may configure", storage_account.arm_id())
    })?;

    let identity = match identity_set {
        None => policy.default_identity.clone(),
        Some(name) => policy.identity_sets.get(name).cloned().ok_or_else(|| {
            ValidationError::new(
                UNKNOWN_ISV_IDENTITY,
                "isvIdentity",
                format!("no identity set named {name:?} is configured"),
            )
        })?,
    };

    let onboarding_id = onboarding_id.to_owned();
    let identity_set = identity_set.map(str::to_owned);
    if about_an_account {
        let request = AccountRequest {
            onboarding_id,
            requested_at,
            customer_tenant_id,
            storage_account,
            key,
            identity,
            identity_set,
        };
        return Ok(if kind == KIND_PROBE {
            ValidatedMessage::Probe(request)
        } else {
            ValidatedMessage::Offboarding(request)
        });
    }
    let Some(key) = key else { return Err(ValidationError::new(INVALID_MESSAGE, "key", "is required")) };
    Ok(ValidatedMessage::Onboarding(ValidatedOnboarding {
        onboarding_id,
        requested_at,
        customer_tenant_id,
        storage_account,
        key,
        identity,
        identity_set,
        replace_existing_key,
        create,
    }))
}

/// `create`: absent or null for an existing account; otherwise exactly `location`, `sku` and `kind`.
fn parse_create(root: &Value) -> Result<Option<NewAccount>, ValidationError> {
    let Some(create) = lookup(root, "create")? else { return Ok(None) };
    let Some(members) = create.as_object() else {
        return Err(ValidationError::new(INVALID_CREATE_OPTIONS, "create", "must be a JSON object"));
    };
    if let Some(unknown) = members.keys().find(|name| !CREATE_MEMBERS.contains(&name.as_str())) {
        return Err(ValidationError::new(
            INVALID_CREATE_OPTIONS,
            format!("create.{unknown}"),
            format!("is not an option of create (only {})", CREATE_MEMBERS.join(", ")),
        ));
    }
    let text = |name: &str| match members.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(ValidationError::new(INVALID_CREATE_OPTIONS, format!("create.{name}"), "must be a string")),
        None => Err(ValidationError::new(INVALID_CREATE_OPTIONS, format!("create.{name}"), "is required")),
    };
    let location = text("location")?;
    check(is_location_name(location), INVALID_CREATE_OPTIONS, "create.location", || {
        format!("{location:?} is not a region's programmatic name (3-40 lowercase letters and digits, e.g. westeurope)")
    })?;
    let sku = text("sku")?;
    check(SKU_NAMES.contains(&sku), INVALID_CREATE_OPTIONS, "create.sku", || {
        format!("{sku:?} is not one of {}", SKU_NAMES.join(", "))
    })?;
    let kind = text("kind")?;
    check(ACCOUNT_KINDS.contains(&kind), INVALID_CREATE_OPTIONS, "create.kind", || {
        format!("{kind:?} is not one of {}", ACCOUNT_KINDS.join(", "))
    })?;
    Ok(Some(NewAccount { location: location.to_owned(), sku: sku.to_owned(), kind: kind.to_owned() }))
}

/// Azure regions' programmatic names: lowercase letters and digits, starting with a letter (`westeurope`,
/// `eastus2`, `usgovvirginia`); display names (`West Europe`) are not taken, so two spellings never meet.
fn is_location_name(name: &str) -> bool {
    (3..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `key`: vault URI (of the configured cloud), name and optional version.
fn parse_key(root: &Value, policy: &ValidationPolicy) -> Result<KeyRef, ValidationError> {
    let vault = parse_vault_uri(required_str(root, "key.vaultUri")?, policy.cloud)
        .map_err(|e| ValidationError::new(INVALID_VAULT_URI, "key.vaultUri", e))?;

    let key_name = required_str(root, "key.name")?;
    check(is_key_name(key_name), INVALID_KEY_NAME, "key.name", || "must be 1-127 of [0-9A-Za-z-]".into())?;

    let version = optional_str(root, "key.version")?;
    if let Some(v) = version {
        check(is_key_version(v), INVALID_KEY_VERSION, "key.version", || "must be 32 hexadecimal characters".into())?;
    }
    Ok(KeyRef {
        vault_uri: vault.uri,
        vault_host: vault.host,
        managed_hsm: vault.managed_hsm,
        name: key_name.to_owned(),
        version: version.map(str::to_ascii_lowercase),
    })
}

fn check(ok: bool, code: &'static str, field: &str, message: impl FnOnce() -> String) -> Result<(), ValidationError> {
    if ok { Ok(()) } else { Err(ValidationError::new(code, field, message())) }
}

/// The value at a dotted path; `Ok(None)` when it or any parent is absent or null.
fn lookup<'a>(root: &'a Value, path: &str) -> Result<Option<&'a Value>, ValidationError> {
    let mut current = root;
    let mut walked = String::new();
    for part in path.split('.') {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
        match current {
            Value::Object(map) => match map.get(part) {
                None | Some(Value::Null) => return Ok(None),
                Some(v) => current = v,
            },
            _ => {
                let parent = walked.rsplit_once('.').map_or("$", |(p, _)| p).to_owned();
                return Err(ValidationError::new(INVALID_MESSAGE, parent, "must be a JSON object"));
            }
        }
    }
    Ok(Some(current))
}

fn optional_str<'a>(root: &'a Value, path: &str) -> Result<Option<&'a str>, ValidationError> {
    match lookup(root, path)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::new(INVALID_MESSAGE, path, "must be a string")),
    }
}

fn required_str<'a>(root: &'a Value, path: &str) -> Result<&'a str, ValidationError> {
    optional_str(root, path)?.ok_or_else(|| ValidationError::new(INVALID_MESSAGE, path, "is required"))
}
