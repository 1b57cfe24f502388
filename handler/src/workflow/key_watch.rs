//! The key watch's decisions (pure): what a probe of one onboarded account observed, the state recorded in the
//! account's `cmk-watch-state` tag, and which events a change of state calls for, each once per distinct state.
//!
//! The recorded state is small (a tag value is at most 256 characters): the key version Storage uses, whether the
//! app could use the key (or the reason code it could not), whether the expiry warning for this version went out,
//! and a fingerprint of the encryption configuration. It is written only when it changes, so a quiet account costs
//! reads only. Events compare the recorded state with the observed one:
//! - `key_rotated`: the version changed (both known);
//! - `key_expiring`: the version expires within the warning window, once per version;
//! - `key_access_lost`: the app cannot use the key, once per reason; `key_access_restored` when it can again;
//! - `configuration_drift`: the encryption configuration is not the one recorded (someone else changed it).
//!
//! The first probe of an account records a baseline and reports only what needs someone now (lost access, a key
//! about to expire).

use time::OffsetDateTime;

/// What one probe saw of the account and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// `keySource` is `Microsoft.Keyvault` through this handler's identity and app, with a vault and key name.
    pub configuration: Option<Configuration>,
    /// `currentVersionedKeyIdentifier` (Storage's view of the version it uses).
    pub current_key_id: Option<String>,
    /// The key version's expiry, from the vault (or Storage's `currentVersionedKeyExpirationTimestamp`).
    pub expires: Option<OffsetDateTime>,
    /// `None`: the app used the key (get + wrap/unwrap); else the reason code of the customer-side failure.
    pub access_lost: Option<String>,
}

/// The encryption configuration an account has when it is ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    pub vault_uri: String,
    pub key_name: String,
}

/// The state recorded in the account's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchState {
    /// The key version Storage uses (last segment of the key id), or `-`.
    pub key_version: String,
    /// `ok`, or the reason code the app could not use the key.
    pub access: String,
    /// The expiry warning for `key_version` went out.
    pub expiry_warned: bool,
    /// 8 hex digits over the configuration (`-` when the account is not on our customer-managed key any more).
    pub configuration: String,
}

/// What a change of state calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    KeyRotated { from_version: String, to_version: String },
    KeyExpiring { version: String, expires: OffsetDateTime },
    KeyAccessLost { reason_code: String },
    KeyAccessRestored { after: String },
    ConfigurationDrift { recorded: String, observed: String },
}

const ACCESS_OK: &str = "ok";
const NONE: &str = "-";
const VERSION_TAG: &str = "v1";

impl WatchState {
    /// `v1;k=<version>;a=<ok|reason>;x=<0|1>;c=<fingerprint>`: under 100 characters.
    pub fn encode(&self) -> String {
        format!(
            "{VERSION_TAG};k={};a={};x={};c={}",
            self.key_version,
            self.access,
            u8::from(self.expiry_warned),
            self.configuration
        )
    }

    /// `None` for anything else (a state written by a future version, or edited by hand): the probe then starts a
    /// new baseline.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(';');
        if parts.next()? != VERSION_TAG {
            return None;
        }
        let mut field = |name: &str| parts.next()?.strip_prefix(name)?.strip_prefix('=').map(str::to_owned);
        let key_version = field("k")?;
        let access = field("a")?;
        let expiry_warned = match field("x")?.as_str() {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let configuration = field("c")?;
        let token =
            |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        (token(&key_version) && token(&access) && token(&configuration) && parts.next().is_none()).then_some(Self {
            key_version,
            access,
            expiry_warned,
            configuration,
        })
    }
}

/// The version segment of a key id (`https://{vault}/keys/{name}/{version}`), lowercase.
pub fn key_version(key_id: &str) -> Option<String> {
    let mut segments = key_id.trim_end_matches('/').rsplit('/');
    let version = segments.next()?;
    let _name = segments.next()?;
    (segments.next()? == "keys" && !version.is_empty()).then(|| version.to_ascii_lowercase())
}

/// 8 hex digits (FNV-1a) over the vault and key name, case-insensitive.
fn fingerprint(configuration: &Option<Configuration>) -> String {
    let Some(c) = configuration else { return NONE.to_owned() };
    let text = format!("{}|{}", c.vault_uri.trim_end_matches('/'), c.key_name).to_ascii_lowercase();
    let hash = text.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

/// The new state and the events that go with it, given the recorded state (if any) and what the probe saw at `now`.
/// `warn_before`: how long before expiry `key_expiring` is published.
pub fn decide(
    recorded: Option<&WatchState>,
    observed: &Observation,
    now: OffsetDateTime,
    warn_before: time::Duration,
) -> (WatchState, Vec<WatchEvent>) {
    let version = observed.current_key_id.as_deref().and_then(key_version).unwrap_or_else(|| NONE.to_owned());
    let access = observed.access_lost.clone().unwrap_or_else(|| ACCESS_OK.to_owned());
    let configuration = fingerprint(&observed.configuration);
    let expiring = observed.expires.is_some_and(|at| at - now <= warn_before);
    let already_warned = recorded.is_some_and(|r| r.expiry_warned && r.key_version == version);
    let mut events = Vec::new();
    if let Some(r) = recorded {
        if r.configuration != configuration {
            events.push(WatchEvent::ConfigurationDrift {
                recorded: r.configuration.clone(),
                observed: configuration.clone(),
            });
        }
        if r.key_version != version && r.key_version != NONE && version != NONE {
            events.push(WatchEvent::KeyRotated { from_version: r.key_version.clone(), to_version: version.clone() });
        }
        if r.access != ACCESS_OK && access == ACCESS_OK {
            events.push(WatchEvent::KeyAccessRestored { after: r.access.clone() });
        }
    }
    if access != ACCESS_OK && recorded.is_none_or(|r| r.access != access) {
        events.push(WatchEvent::KeyAccessLost { reason_code: access.clone() });
    }
    if expiring
        && !already_warned
        && let Some(expires) = observed.expires
    {
        events.push(WatchEvent::KeyExpiring { version: version.clone(), expires });
    }
    let state = WatchState { key_version: version, access, expiry_warned: expiring, configuration };
    (state, events)
}
