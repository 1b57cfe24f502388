//! What makes a customer key usable for Storage encryption (pure).
//!
//! Rules: reference `cross-tenant-cmk.md` §3.2–§3.3. Azure Storage takes RSA or RSA-HSM keys of 2048, 3072 or 4096
//! bits with `wrapKey` and `unwrapKey` allowed, enabled and within `nbf`/`exp`, in a vault with soft delete *and*
//! purge protection — which the data plane shows as a `recoveryLevel` without `Purgeable`.

use time::OffsetDateTime;

use crate::error::{CustomerAction, Error};
use crate::remediation::CONSENT_TAG;

/// The facts about one key version that decide whether Storage can use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    pub kid: String,
    pub kty: String,
    pub modulus_bits: Option<usize>,
    pub key_ops: Vec<String>,
    pub enabled: bool,
    pub not_before: Option<OffsetDateTime>,
    pub expires: Option<OffsetDateTime>,
    pub recovery_level: Option<String>,
}

/// True when a consent tag on the key names `storage_account_id`. Only who may update the key in the customer's vault
/// can set its tags (the ISV app's encryption role cannot), so a third customer cannot forge another's consent.
pub fn has_consent(tags: &std::collections::BTreeMap<String, String>, storage_account_id: &str) -> bool {
    let prefix = format!("{CONSENT_TAG}-");
    tags.iter().any(|(name, value)| {
        let name = name.to_ascii_lowercase();
        (name == CONSENT_TAG || name.starts_with(&prefix))
            && value.trim().trim_end_matches('/').eq_ignore_ascii_case(storage_account_id.trim_end_matches('/'))
    })
}

/// [`has_consent`], as the attempt's error when it fails: waiting on the key's owner (`KeyConsentMissing`).
pub fn check_consent(
    kid: &str,
    tags: &std::collections::BTreeMap<String, String>,
    storage_account_id: &str,
) -> Result<(), Error> {
    if has_consent(tags, storage_account_id) {
        return Ok(());
    }
    let tagged = tags.keys().filter(|name| name.to_ascii_lowercase().starts_with(CONSENT_TAG)).count();
    Err(Error::Customer {
        action: CustomerAction::ConsentToAccount { storage_account_id: storage_account_id.to_owned() },
        detail: format!(
            "key {kid} has no {CONSENT_TAG} tag naming {storage_account_id} ({tagged} consent tag(s) name other accounts)"
        ),
    })
}

const SUPPORTED_SIZES: [usize; 3] = [2048, 3072, 4096];

/// Checks every rule, in the order a customer would fix them; the first failure wins.
pub fn check_key(key: &KeyFacts, now: OffsetDateTime) -> Result<(), Error> {
    let customer = |action: CustomerAction, detail: String| Err(Error::Customer { action, detail });
    if !key.enabled {
        return customer(CustomerAction::KeyDisabled, format!("key {} is disabled", key.kid));
    }
    if let Some(nbf) = key.not_before
        && now < nbf
    {
        return customer(CustomerAction::KeyNotYetValid, format!("key {} is not valid before {nbf}", key.kid));
    }
    if let Some(exp) = key.expires
        && now >= exp
    {
        return customer(CustomerAction::KeyExpired, format!("key {} expired at {exp}", key.kid));
    }
    let rsa = key.kty == "RSA" || key.kty == "RSA-HSM";
    let size_ok = key.modulus_bits.is_some_and(|bits| SUPPORTED_SIZES.contains(&bits));
    if !rsa || !size_ok {
        let size = key.modulus_bits.map(|b| format!(" of {b} bits")).unwrap_or_default();
        let detail =
            format!("key {} is {}{size}; Storage needs RSA or RSA-HSM of 2048, 3072 or 4096 bits", key.kid, key.kty);
        return customer(CustomerAction::UnsupportedKeyType { detail: detail.clone() }, detail);
    }
    let missing: Vec<String> = ["wrapKey", "unwrapKey"]
        .into_iter()
        .filter(|op| !key.key_ops.iter().any(|allowed| allowed == op))
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        let detail = format!("key {} does not allow {}", key.kid, missing.join(" and "));
        return customer(CustomerAction::AllowKeyOperations { missing }, detail);
    }
    match key.recovery_level.as_deref() {
        Some(level) if !level.contains("Purgeable") => Ok(()),
        level => customer(
            CustomerAction::EnablePurgeProtection,
            format!(
                "the vault holding {} has recovery level {}; Storage needs soft delete and purge protection",
                key.kid,
                level.unwrap_or("unknown")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_consent_tag_naming_the_account_counts() {
        let account = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/contosodata";
        let tags = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        assert!(has_consent(&tags(&[("cmk-consent", account)]), account));
        assert!(has_consent(&tags(&[("CMK-Consent-contosodata", &account.to_ascii_uppercase())]), account));
        assert!(has_consent(&tags(&[("cmk-consent-x", "other"), ("cmk-consent-y", account)]), account));
        // Another account, another tag name, or nothing: no consent.
        let other = account.replace("contosodata", "fabrikamdata");
        assert!(!has_consent(&tags(&[("cmk-consent", &other)]), account));
        assert!(!has_consent(&tags(&[("consent", account), ("cmk-consentx", account)]), account));
        assert!(!has_consent(&tags(&[]), account));
        let refused = check_consent("kid", &tags(&[("cmk-consent", &other)]), account).unwrap_err();
        assert_eq!(refused.reason_code(), "KeyConsentMissing");
        assert_eq!(refused.disposition(), crate::error::Disposition::WaitingOnCustomer);
    }
    use time::macros::datetime;

    fn good() -> KeyFacts {
        KeyFacts {
            kid: "https://kv.vault.azure.net/keys/k/0123".into(),
            kty: "RSA".into(),
            modulus_bits: Some(3072),
            key_ops: vec!["wrapKey".into(), "unwrapKey".into(), "encrypt".into()],
            enabled: true,
            not_before: None,
            expires: Some(datetime!(2030-01-01 0:00 UTC)),
            recovery_level: Some("Recoverable".into()),
        }
    }

    fn reason(key: KeyFacts) -> String {
        check_key(&key, datetime!(2026-11-29 12:00 UTC)).unwrap_err().reason_code().to_owned()
    }

    #[test]
    fn a_good_key_passes() {
        assert!(check_key(&good(), datetime!(2026-11-29 12:00 UTC)).is_ok());
        assert!(
            check_key(
                &KeyFacts { kty: "RSA-HSM".into(), modulus_bits: Some(4096), ..good() },
                datetime!(2026-11-29 12:00 UTC)
            )
            .is_ok()
        );
    }

    #[test]
    fn each_rule_has_its_reason() {
        assert_eq!(reason(KeyFacts { enabled: false, ..good() }), "KeyDisabled");
        assert_eq!(reason(KeyFacts { expires: Some(datetime!(2026-01-01 0:00 UTC)), ..good() }), "KeyExpired");
        assert_eq!(reason(KeyFacts { not_before: Some(datetime!(2027-01-01 0:00 UTC)), ..good() }), "KeyNotYetValid");
        assert_eq!(reason(KeyFacts { kty: "EC".into(), ..good() }), "KeyTypeUnsupported");
        assert_eq!(reason(KeyFacts { modulus_bits: Some(1024), ..good() }), "KeyTypeUnsupported");
        assert_eq!(reason(KeyFacts { key_ops: vec!["wrapKey".into()], ..good() }), "KeyOperationsMissing");
        assert_eq!(
            reason(KeyFacts { recovery_level: Some("Recoverable+Purgeable".into()), ..good() }),
            "PurgeProtectionDisabled"
        );
        assert_eq!(reason(KeyFacts { recovery_level: None, ..good() }), "PurgeProtectionDisabled");
        assert_eq!(
            reason(KeyFacts { recovery_level: Some("CustomizedRecoverable+Purgeable".into()), ..good() }),
            "PurgeProtectionDisabled"
        );
    }

    #[test]
    fn protected_subscription_levels_pass() {
        let key = KeyFacts { recovery_level: Some("CustomizedRecoverable+ProtectedSubscription".into()), ..good() };
        assert!(check_key(&key, datetime!(2026-11-29 12:00 UTC)).is_ok());
    }
}
