//! What a storage account remembers about the onboarding that configured it, in its own tags (pure).
//!
//! The handler writes, in the same PATCH that configures encryption (one write), `cmk-onboarding-id` (the onboarding
//! that last configured the account: the key watch finds onboarded accounts by it), `cmk-onboarding-order` (that
//! onboarding's order, [`crate::order`]) and `cmk-customer-tenant` (the customer tenant, to act as the app there).
//! Storage's PATCH replaces the whole `tags` object, so the account's other tags are always sent back with ours.
//! An attempt whose onboarding is older than the one recorded is superseded (ARCHITECTURE.md, decision 22).

use serde_json::{Map, Value};

use crate::order::OnboardingOrder;

pub const ONBOARDING_ID_TAG: &str = "cmk-onboarding-id";
pub const ORDER_TAG: &str = "cmk-onboarding-order";
pub const CUSTOMER_TENANT_TAG: &str = "cmk-customer-tenant";
/// The key watch's last recorded state of the account (`workflow::key_watch`), written only when it changes.
pub const WATCH_STATE_TAG: &str = "cmk-watch-state";
/// Every tag the handler writes on an account; offboarding removes them all.
pub const OUR_TAGS: [&str; 4] = [ONBOARDING_ID_TAG, ORDER_TAG, CUSTOMER_TENANT_TAG, WATCH_STATE_TAG];

/// ARM's limits on a resource's tags (Azure Resource Manager, "Use tags to organize your Azure resources": 50 name-value
/// pairs per resource; storage accounts: names of at most 128 characters, values of at most 256).
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_NAME_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// The onboarding an account's tags name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub onboarding_id: String,
    /// `None` when the tag is missing or unreadable (someone edited it): such a record never supersedes anything.
    pub order: Option<OnboardingOrder>,
    pub customer_tenant_id: Option<String>,
}

/// The tags this onboarding writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnTags<'a> {
    pub onboarding_id: &'a str,
    pub order: OnboardingOrder,
    pub customer_tenant_id: &'a str,
}

impl OwnTags<'_> {
    fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (ONBOARDING_ID_TAG, self.onboarding_id.to_owned()),
            (ORDER_TAG, self.order.to_string()),
            (CUSTOMER_TENANT_TAG, self.customer_tenant_id.to_owned()),
        ]
    }
}

/// A tag's value by name; ARM tag names are case-insensitive.
pub fn tag<'a>(account: &'a Value, name: &str) -> Option<&'a str> {
    let tags = account.get("tags")?.as_object()?;
    tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
}

/// The onboarding recorded on the account, if any.
pub fn recorded(account: &Value) -> Option<AccountRecord> {
    let onboarding_id = tag(account, ONBOARDING_ID_TAG).filter(|id| !id.trim().is_empty())?;
    Some(AccountRecord {
        onboarding_id: onboarding_id.to_owned(),
        order: tag(account, ORDER_TAG).and_then(OnboardingOrder::parse),
        customer_tenant_id: tag(account, CUSTOMER_TENANT_TAG).map(str::to_owned),
    })
}

/// Where an attempt stands against the onboarding recorded on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Nothing newer recorded: go ahead. `replaces` is the other, older onboarding recorded there, whose outcome this
    /// attempt will supersede.
    Current { replaces: Option<AccountRecord> },
    /// A newer onboarding configured the account: change nothing.
    Superseded { by: AccountRecord },
}

/// Compares this attempt's onboarding with the recorded one. The same onboarding id is never superseded (its
/// redeliveries and retries converge); an older order is; an equal or newer one, or a record without a readable
/// order, is not.
pub fn standing(record: Option<AccountRecord>, onboarding_id: &str, order: OnboardingOrder) -> Standing {
    match record {
        None => Standing::Current { replaces: None },
        Some(record) if record.onboarding_id == onboarding_id => Standing::Current { replaces: None },
        Some(record) if record.order.is_some_and(|recorded| order < recorded) => Standing::Superseded { by: record },
        Some(record) => Standing::Current { replaces: Some(record) },
    }
}

/// True when the account carries exactly our three tags' values.
pub fn applied(account: &Value, own: &OwnTags<'_>) -> bool {
    own.pairs().iter().all(|(name, value)| tag(account, name) == Some(value.as_str()))
}

/// The whole `tags` object to PATCH: the account's tags with ours set (any other spelling of our names replaced), or
/// an error naming the limit it would break.
pub fn merged(account: &Value, own: &OwnTags<'_>) -> Result<Map<String, Value>, String> {
    let ours = own.pairs();
    let mut tags = Map::new();
    for (name, value) in account.get("tags").and_then(Value::as_object).into_iter().flatten() {
        if !ours.iter().any(|(own, _)| name.eq_ignore_ascii_case(own)) {
            tags.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in &ours {
        if value.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(format!("the value of tag {name} would be longer than {MAX_TAG_VALUE_CHARS} characters"));
        }
        tags.insert((*name).to_owned(), Value::from(value.as_str()));
    }
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "the account has {} other tags; with the handler's {} it would exceed Azure's {MAX_TAGS} tags per resource",
            tags.len() - ours.len(),
            ours.len()
        ));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(text: &str) -> OnboardingOrder {
        OnboardingOrder::parse(text).unwrap()
    }

    #[test]
    fn older_is_superseded_same_or_newer_is_not() {
        let account = json!({"tags": {"CMK-Onboarding-Id": "b", "cmk-onboarding-order": "2026-12-03T18:00:05Z#900"}});
        let record = recorded(&account).unwrap();
        assert_eq!(record.onboarding_id, "b");
        let older = order("2026-12-03T18:00:04Z#5000");
        assert_eq!(standing(Some(record.clone()), "a", older), Standing::Superseded { by: record.clone() });
        assert_eq!(standing(Some(record.clone()), "b", older), Standing::Current { replaces: None });
        let newer = order("2026-12-03T18:00:05Z#901");
        assert_eq!(standing(Some(record.clone()), "c", newer), Standing::Current { replaces: Some(record) });
        assert_eq!(standing(None, "c", newer), Standing::Current { replaces: None });
        // An unreadable order supersedes nothing.
        let edited = recorded(&json!({"tags": {"cmk-onboarding-id": "b", "cmk-onboarding-order": "yesterday"}}));
        assert!(matches!(standing(edited, "a", older), Standing::Current { replaces: Some(_) }));
    }

    #[test]
    fn merging_keeps_other_tags_and_replaces_ours_in_any_spelling() {
        let own = OwnTags { onboarding_id: "b", order: order("2026-12-03T18:00:05Z#900"), customer_tenant_id: "t" };
        let account = json!({"tags": {"env": "prod", "CMK-ONBOARDING-ID": "a"}});
        assert!(!applied(&account, &own));
        let tags = merged(&account, &own).unwrap();
        assert_eq!(
            Value::Object(tags.clone()),
            json!({"env": "prod", "cmk-onboarding-id": "b", "cmk-onboarding-order": "2026-12-03T18:00:05Z#900",
                   "cmk-customer-tenant": "t"})
        );
        assert!(applied(&json!({ "tags": tags }), &own));
        assert!(merged(&json!({}), &own).is_ok());
    }

    #[test]
    fn the_tag_limit_is_checked() {
        let own = OwnTags { onboarding_id: "b", order: order("2026-12-03T18:00:05Z#900"), customer_tenant_id: "t" };
        let full: Map<String, Value> = (0..48).map(|i| (format!("t{i}"), Value::from("v"))).collect();
        assert!(merged(&json!({ "tags": full }), &own).is_err());
        let room: Map<String, Value> = (0..47).map(|i| (format!("t{i}"), Value::from("v"))).collect();
        assert_eq!(merged(&json!({ "tags": room }), &own).unwrap().len(), 50);
    }
}
