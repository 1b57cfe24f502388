//! ARM resource ids and request paths: which emulated operation a path names. Segment names compare
//! case-insensitively, as ARM's do.

use super::errors::ArmError;

/// An ARM path the emulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Feature {
        subscription: String,
        namespace: String,
        feature: String,
        register: bool,
    },
    Provider {
        subscription: String,
        namespace: String,
        register: bool,
    },
    Resource(ResourceId),
    /// `StorageAccounts_List` (no group) or `StorageAccounts_ListByResourceGroup`.
    StorageList {
        subscription: String,
        group: Option<String>,
    },
    /// The `Location` of a `StorageAccounts_Create` that answered 202: `/subscriptions/{s}/providers/
    /// Microsoft.Storage/operations/{id}` (the shape of the example in Microsoft's "Track asynchronous Azure
    /// operations", section "Create storage account (202 with location and Retry-After)").
    StorageOperation {
        subscription: String,
        id: String,
    },
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    pub subscription: String,
    pub group: String,
    pub namespace: String,
    pub resource_type: String,
    pub name: String,
}

/// The user-assigned identity resource type, as ARM spells it.
pub const IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
/// The storage account resource type, as ARM spells it.
pub const STORAGE_TYPE: &str = "Microsoft.Storage/storageAccounts";

impl ResourceId {
    /// Parses a full resource id (not a path with further segments).
    pub fn parse(id: &str) -> Option<Self> {
        let segments: Vec<&str> = id.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["", subs, subscription, groups, group, providers, namespace, resource_type, name]
                if subs.eq_ignore_ascii_case("subscriptions")
                    && groups.eq_ignore_ascii_case("resourceGroups")
                    && providers.eq_ignore_ascii_case("providers")
                    && [subscription, group, namespace, resource_type, name].iter().all(|s| !s.is_empty()) =>
            {
                Some(Self {
                    subscription: (*subscription).to_owned(),
                    group: (*group).to_owned(),
                    namespace: (*namespace).to_owned(),
                    resource_type: (*resource_type).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            _ => None,
        }
    }

    /// `Namespace/type`.
    pub fn full_type(&self) -> String {
        format!("{}/{}", self.namespace, self.resource_type)
    }

    pub fn is_type(&self, full_type: &str) -> bool {
        self.full_type().eq_ignore_ascii_case(full_type)
    }

    /// The canonical id (`resourceGroups` spelled as in requests).
    pub fn canonical(&self, full_type: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{full_type}/{}",
            self.subscription, self.group, self.name
        )
    }

    /// The id as some RPs print it, with `resourcegroups` lower-cased.
    pub fn lowercase_groups(&self, full_type: &str) -> String {
        format!(
            "/subscriptions/{}/resourcegroups/{}/providers/{full_type}/{}",
            self.subscription, self.group, self.name
        )
    }

    /// Lookup key: the whole id lower-cased.
    pub fn key(&self) -> String {
        format!(
            "/subscriptions/{}/resourcegroups/{}/providers/{}/{}",
            self.subscription,
            self.group,
            self.full_type(),
            self.name
        )
        .to_ascii_lowercase()
    }
}

/// Classifies a request path; `Err` with ARM's error for paths that name nothing the emulator knows.
pub fn route(path: &str) -> Result<Route, ArmError> {
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').collect();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match segments.as_slice() {
        ["", subs, subscription, providers, features_ns, providers2, namespace, features, feature, rest @ ..]
            if eq(subs, "subscriptions")
                && eq(providers, "providers")
                && eq(features_ns, "Microsoft.Features")
                && eq(providers2, "providers")
                && eq(features, "features")
                && (rest.is_empty() || (rest.len() == 1 && eq(rest[0], "register"))) =>
        {
            Ok(Route::Feature {
                subscription: (*subscription).to_owned(),
                namespace: (*namespace).to_owned(),
                feature: (*feature).to_owned(),
                register: !rest.is_empty(),
            })
        }
        ["", subs, subscription, providers, namespace, kind]
            if eq(subs, "subscriptions")
                && eq(providers, "providers")
                && eq(namespace, "Microsoft.Storage")
                && eq(kind, "storageAccounts") =>
        {
            Ok(Route::StorageList { subscription: (*subscription).to_owned(), group: None })
        }
        ["", subs, subscription, groups, group, providers, namespace, kind]
            if eq(subs, "subscriptions")
                && eq(groups, "resourceGroups")
                && eq(providers, "providers")
                && eq(namespace, "Microsoft.Storage")
                && eq(kind, "storageAccounts") =>
        {
            Ok(Route::StorageList { subscription: (*subscription).to_owned(), group: Some((*group).to_owned()) })
        }
        ["", subs, subscription, providers, namespace, operations, id]
            if eq(subs, "subscriptions")
                && eq(providers, "providers")
                && eq(namespace, "Microsoft.Storage")
                && eq(operations, "operations") =>
        {
            Ok(Route::StorageOperation { subscription: (*subscription).to_owned(), id: (*id).to_owned() })
        }
        ["", subs, subscription, providers, namespace, rest @ ..]
            if eq(subs, "subscriptions")
                && eq(providers, "providers")
                && (rest.is_empty() || (rest.len() == 1 && eq(rest[0], "register"))) =>
        {
            Ok(Route::Provider {
                subscription: (*subscription).to_owned(),
                namespace: (*namespace).to_owned(),
                register: !rest.is_empty(),
            })
        }
        _ => match ResourceId::parse(trimmed) {
            Some(id) => Ok(Route::Resource(id)),
            None => Err(ArmError::bad_request(
                "InvalidResourceId",
                format!("The request path '{path}' is not a resource id this emulator serves."),
            )),
        },
    }
}

impl Route {
    pub fn subscription(&self) -> &str {
        match self {
            Self::Feature { subscription, .. }
            | Self::Provider { subscription, .. }
            | Self::StorageList { subscription, .. }
            | Self::StorageOperation { subscription, .. } => subscription,
            Self::Resource(id) => &id.subscription,
        }
    }
}

/// Whether a subscription id has the GUID shape ARM requires.
pub fn is_guid(value: &str) -> bool {
    uuid::Uuid::try_parse(value).is_ok() && value.len() == 36
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let sub = "00000000-0000-0000-0000-000000000001";
        let feature = format!(
            "/subscriptions/{sub}/providers/Microsoft.Features/providers/Microsoft.Storage/features/FederatedClientIdentity/register"
        );
        assert!(matches!(route(&feature), Ok(Route::Feature { register: true, .. })));
        assert!(matches!(
            route(&format!("/subscriptions/{sub}/providers/Microsoft.Storage")),
            Ok(Route::Provider { register: false, .. })
        ));
        let account =
            format!("/subscriptions/{sub}/resourcegroups/rg/providers/Microsoft.Storage/storageAccounts/acct");
        let Ok(Route::Resource(id)) = route(&account) else { panic!("not a resource") };
        assert!(id.is_type(STORAGE_TYPE));
        assert_eq!(
            id.canonical(STORAGE_TYPE),
            format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct")
        );
        assert!(route("/subscriptions/x/what").is_err());
    }
}
