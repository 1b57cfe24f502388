//! The ISV's side of the contract: which identities a message may name and where its storage account may be (pure
//! data; `config` reads them from app settings).

use super::grammar::{is_resource_group_name, normalize_guid};

/// The identities one onboarding uses: the UAMI that is the federated credential and the multi-tenant app.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsvIdentity {
    pub uami_resource_id: String,
    #[serde(default)]
    pub uami_client_id: Option<String>,
    pub app_client_id: String,
    pub app_object_id: String,
}

impl IsvIdentity {
    /// The UAMI's name: the last segment of its resource id.
    pub fn uami_name(&self) -> &str {
        self.uami_resource_id.rsplit('/').next().unwrap_or_default()
    }
}

/// Where storage accounts may be: a whole subscription or one resource group (ids compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedScope {
    Subscription { subscription_id: String },
    ResourceGroup { subscription_id: String, resource_group: String },
}

impl AllowedScope {
    pub fn contains(&self, subscription_id: &str, resource_group: &str) -> bool {
        match self {
            Self::Subscription { subscription_id: s } => s.eq_ignore_ascii_case(subscription_id),
            Self::ResourceGroup { subscription_id: s, resource_group: g } => {
                s.eq_ignore_ascii_case(subscription_id) && g.eq_ignore_ascii_case(resource_group)
            }
        }
    }

    /// Parses `/subscriptions/{guid}` or `/subscriptions/{guid}/resourceGroups/{rg}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let segments: Vec<&str> = text.strip_prefix('/').ok_or("must start with /")?.split('/').collect();
        let subscription = |s: &str| normalize_guid(s).ok_or_else(|| format!("{s:?} is not a subscription GUID"));
        match segments.as_slice() {
            [kw, sub] if kw.eq_ignore_ascii_case("subscriptions") => {
                Ok(Self::Subscription { subscription_id: subscription(sub)? })
            }
            [kw, sub, rg_kw, rg]
                if kw.eq_ignore_ascii_case("subscriptions") && rg_kw.eq_ignore_ascii_case("resourceGroups") =>
            {
                if !is_resource_group_name(rg) {
                    return Err(format!("{rg:?} is not a resource group name"));
                }
                Ok(Self::ResourceGroup { subscription_id: subscription(sub)?, resource_group: (*rg).to_owned() })
            }
            _ => Err(format!(
                "{text:?} is neither /subscriptions/{{id}} nor /subscriptions/{{id}}/resourceGroups/{{rg}}"
            )),
        }
    }
}
