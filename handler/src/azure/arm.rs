//! Azure Resource Manager: preview features, resource providers, user-assigned identities and storage accounts.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use url::Url;

use super::credentials::{AppScope, TokenSource};
use super::deadline;
use super::pacing::{Lane, Pacer};
use super::retry::{self, RetryOptions};
use super::transport::{HttpResponse, OutgoingRequest, Transport};
use crate::error::{AzureService, Error};

const FEATURES_API: &str = "2021-07-01";
const PROVIDERS_API: &str = "2021-04-01";
const IDENTITY_API: &str = "2023-01-31";
const STORAGE_API: &str = "2023-05-01";
/// Most pages one listing follows: a bound on a loop over external state (the deadline bounds the time as well).
pub const MAX_LIST_PAGES: usize = 1_000;
/// Polls of an asynchronous operation before giving up; the deadline bounds the whole wait as well.
const MAX_LRO_POLLS: u32 = 60;
/// The reason code of an asynchronous operation still running when an attempt's time is up (transient).
pub const OPERATION_STILL_RUNNING: &str = "OperationStillRunning";

/// ARM client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Url,
    transport: Transport,
    tokens: TokenSource,
    retry: RetryOptions,
    /// Turn-taking per subscription, shared by every invocation of this process.
    pacer: Pacer,
}

/// `Microsoft.Features` feature registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Feature {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub properties: FeatureProperties,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FeatureProperties {
    /// `NotRegistered`, `Registering`, `Pending`, `Registered`, `Unregistering`, `Unregistered`.
    #[serde(default)]
    pub state: String,
}

/// A resource provider's registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub namespace: String,
    /// `NotRegistered`, `Registering`, `Registered`, …
    #[serde(default)]
    pub registration_state: String,
}

/// A user-assigned managed identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAssignedIdentity {
    pub id: String,
    pub client_id: String,
    pub principal_id: String,
    pub tenant_id: String,
}

/// A storage account: the raw resource plus typed accessors for what onboarding reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageAccount {
    pub raw: serde_json::Value,
}

/// `properties.encryption.keyvaultproperties`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyVaultProperties {
    #[serde(default, rename = "keyname")]
    pub key_name: Option<String>,
    #[serde(default, rename = "keyversion")]
    pub key_version: Option<String>,
    #[serde(default, rename = "keyvaulturi")]
    pub key_vault_uri: Option<String>,
    #[serde(default)]
    pub current_versioned_key_identifier: Option<String>,
    #[serde(default)]
    pub last_key_rotation_timestamp: Option<String>,
    #[serde(default)]
    pub current_versioned_key_expiration_timestamp: Option<String>,
}

/// `properties.encryption.identity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionIdentity {
    #[serde(default)]
    pub user_assigned_identity: Option<String>,
    #[serde(default)]
    pub federated_identity_client_id: Option<String>,
}

/// `properties.encryption`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    #[serde(default)]
    pub key_source: Option<String>,
    #[serde(default, rename = "keyvaultproperties")]
    pub key_vault_properties: Option<KeyVaultProperties>,
    #[serde(default)]
    pub identity: Option<EncryptionIdentity>,
}

/// The account's managed identity block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountIdentity {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub principal_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Resource ids as ARM returned them (compare with [`same_resource_id`]).
    #[serde(default)]
    pub user_assigned_identities: std::collections::BTreeMap<String, serde_json::Value>,
}

impl StorageAccount {
    pub fn id(&self) -> &str {
        self.raw.get("id").and_then(|v| v.as_str()).unwrap_or_default()
    }

    pub fn identity(&self) -> Option<AccountIdentity> {
        self.raw.get("identity").and_then(|v| AccountIdentity::deserialize(v).ok())
    }

    pub fn encryption(&self) -> Option<Encryption> {
        self.raw.pointer("/properties/encryption").and_then(|v| Encryption::deserialize(v).ok())
    }

    /// True when the account's identity block lists `identity_id` (resource ids compare case-insensitively).
    pub fn has_user_assigned_identity(&self, identity_id: &str) -> bool {
        self.identity().is_some_and(|i| i.user_assigned_identities.keys().any(|k| same_resource_id(k, identity_id)))
    }
}

/// ARM resource ids are case-insensitive.
pub fn same_resource_id(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}

impl ArmClient {
    /// `endpoint` is the ARM origin, e.g. `cloud.arm_endpoint()`.
    pub fn new(endpoint: &str, transport: Transport, tokens: TokenSource, retry: RetryOptions) -> Result<Self, String> {
        let endpoint = Url::parse(endpoint).map_err(|e| format!("bad ARM endpoint {endpoint:?}: {e}"))?;
        Ok(Self { inner: Arc::new(Inner { endpoint, transport, tokens, retry, pacer: Pacer::default() }) })
    }

    pub async fn get_feature(&self, subscription: &str, namespace: &str, feature: &str) -> Result<Feature, Error> {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.Features/providers/{namespace}/features/{feature}"
        );
        self.call(Method::GET, &path, FEATURES_API, None, "get feature").await?.json(AzureService::Arm, "get feature")
    }

    pub async fn register_feature(&self, subscription: &str, namespace: &str, feature: &str) -> Result<Feature, Error> {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.Features/providers/{namespace}/features/{feature}/register"
        );
        self.call(Method::POST, &path, FEATURES_API, None, "register feature")
            .await?
            .json(AzureService::Arm, "register feature")
    }

    pub async fn get_provider(&self, subscription: &str, namespace: &str) -> Result<Provider, Error> {
        let path = format!("/subscriptions/{subscription}/providers/{namespace}");
        self.call(Method::GET, &path, PROVIDERS_API, None, "get provider")
            .await?
            .json(AzureService::Arm, "get provider")
    }

    pub async fn register_provider(&self, subscription: &str, namespace: &str) -> Result<Provider, Error> {
        let path = format!("/subscriptions/{subscription}/providers/{namespace}/register");
        self.call(Method::POST, &path, PROVIDERS_API, None, "register provider")
            .await?
            .json(AzureService::Arm, "register provider")
    }

    pub async fn get_user_assigned_identity(&self, resource_id: &str) -> Result<UserAssignedIdentity, Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            id: String,
            properties: WireProperties,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct WireProperties {
            client_id: String,
            principal_id: String,
            tenant_id: String,
        }
        const OP: &str = "get user-assigned identity";
        let wire: Wire =
            self.call(Method::GET, resource_id, IDENTITY_API, None, OP).await?.json(AzureService::Arm, OP)?;
        Ok(UserAssignedIdentity {
            id: wire.id,
            client_id: wire.properties.client_id,
            principal_id: wire.properties.principal_id,
            tenant_id: wire.properties.tenant_id,
        })
    }

    pub async fn get_storage_account(&self, id: &str) -> Result<StorageAccount, Error> {
        const OP: &str = "get storage account";
        let raw = self.call(Method::GET, id, STORAGE_API, None, OP).await?.json(AzureService::Arm, OP)?;
        Ok(StorageAccount { raw })
    }

    /// `StorageAccounts_List` (scope `/subscriptions/{id}`) or `StorageAccounts_ListByResourceGroup` (scope
    /// `/subscriptions/{id}/resourceGroups/{rg}`): every account, one call per page, following `nextLink` only on the
    /// ARM endpoint (a token for ARM goes nowhere else) and at most [`MAX_LIST_PAGES`] pages.
    pub async fn list_storage_accounts(&self, scope: &str) -> Result<Vec<StorageAccount>, Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            value: Vec<serde_json::Value>,
            #[serde(default)]
            next_link: Option<String>,
        }
        const OP: &str = "list storage accounts";
        let path = format!("{}/providers/Microsoft.Storage/storageAccounts", scope.trim_end_matches('/'));
        let mut page: Page = self.call(Method::GET, &path, STORAGE_API, None, OP).await?.json(AzureService::Arm, OP)?;
        let mut accounts = Vec::new();
        for _ in 1..MAX_LIST_PAGES {
            accounts.extend(page.value.drain(..).map(|raw| StorageAccount { raw }));
            let Some(next) = page.next_link.take().filter(|n| !n.is_empty()) else { return Ok(accounts) };
            let next = Url::parse(&next).map_err(|e| bad_response(OP, format!("bad nextLink: {e}")))?;
            if next.origin() != self.inner.endpoint.origin() {
                return Err(bad_response(OP, format!("nextLink {next} is not on the ARM endpoint")));
            }
            page = self.send(&OutgoingRequest::new(Method::GET, next), OP).await?.json(AzureService::Arm, OP)?;
        }
        Err(bad_response(OP, format!("more than {MAX_LIST_PAGES} pages of storage accounts under {scope}")))
    }

    /// Fails at once with [`Error::Paced`] when a write to `id`'s subscription would wait for its turn longer than a
    /// call may (the invocation's deadline, or one retry budget): an onboarding asks before it reads anything, so that
    /// while the Storage RP's write window is spent its retry copies wait without reading the account and the
    /// customer's key again on every delivery (decision 24).
    pub fn expect_write_turn(&self, id: &str) -> Result<(), Error> {
        let mut url = self.inner.endpoint.clone();
        url.set_path(id);
        match Lane::of(&Method::PATCH, &url) {
            Some(lane) => self.inner.pacer.expect_turn(&lane, deadline::bounded(self.inner.retry.budget)),
            None => Ok(()),
        }
    }

    /// PATCH is synchronous per the spec; should ARM ever answer 202, follow the operation and read the account back.
    pub async fn update_storage_account(&self, id: &str, patch: &serde_json::Value) -> Result<StorageAccount, Error> {
        const OP: &str = "update storage account";
        let response = self.call(Method::PATCH, id, STORAGE_API, Some(patch), OP).await?;
        if response.status == 202 {
            self.wait_for_operation(&response, OP).await?;
            return self.get_storage_account(id).await;
        }
        Ok(StorageAccount { raw: response.json(AzureService::Arm, OP)? })
    }

    /// `StorageAccounts_Create`: a PUT the spec marks long-running. 200 is the account (it existed with these
    /// properties); 202 is followed to its end (`Location` answers 202 until the account is created, then 200 with
    /// it) within the invocation's deadline, and a wait the deadline cuts is transient
    /// ([`OPERATION_STILL_RUNNING`]): the account exists by then, so the next attempt reads it instead of creating it.
    pub async fn create_storage_account(&self, id: &str, body: &serde_json::Value) -> Result<StorageAccount, Error> {
        const OP: &str = "create storage account";
        let response = self.call(Method::PUT, id, STORAGE_API, Some(body), OP).await?;
        if !matches!(response.status, 201 | 202) {
            return Ok(StorageAccount { raw: response.json(AzureService::Arm, OP)? });
        }
        // `Location`'s last answer is the account itself; a status document (`Azure-AsyncOperation`) is not.
        match self.wait_for_operation(&response, OP).await? {
            Some(done) if done.status == 200 && !done.body.is_empty() => {
                Ok(StorageAccount { raw: done.json(AzureService::Arm, OP)? })
            }
            _ => self.get_storage_account(id).await,
        }
    }

    /// Follows `Azure-AsyncOperation` (status document) or else `Location` (202 until done), within the invocation's
    /// deadline (or, outside an invocation, one retry budget): a `Retry-After` that would end past it stops the wait.
    /// The monitor must be on the ARM endpoint (it gets an ARM token). Returns the final answer of a `Location`
    /// monitor (`None` for a status document, or without a monitor).
    async fn wait_for_operation(
        &self,
        accepted: &HttpResponse,
        operation: &'static str,
    ) -> Result<Option<HttpResponse>, Error> {
        let async_operation = accepted.header("azure-asyncoperation").map(str::to_owned);
        let location = accepted.header("location").map(str::to_owned);
        let Some(monitor) = async_operation.clone().or(location) else { return Ok(None) };
        let monitor = Url::parse(&monitor).map_err(|e| bad_response(operation, format!("bad operation URL: {e}")))?;
        if monitor.origin() != self.inner.endpoint.origin() {
            return Err(bad_response(operation, format!("operation URL {monitor} is not on the ARM endpoint")));
        }
        let polls = async {
            let mut wait = super::retry_after::retry_after(&accepted.headers).unwrap_or(Duration::from_secs(1));
            for _ in 0..MAX_LRO_POLLS {
                if !super::deadline::sleep(wait).await {
                    break;
                }
                let request = OutgoingRequest::new(Method::GET, monitor.clone());
                let response = self.send(&request, operation).await?;
                if async_operation.is_some() {
                    let status = serde_json::from_slice::<serde_json::Value>(&response.body)
                        .ok()
                        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
                        .unwrap_or_default();
                    match status.to_ascii_lowercase().as_str() {
                        "succeeded" => return Ok(None),
                        "failed" | "canceled" | "cancelled" => {
                            let body = serde_json::from_slice::<serde_json::Value>(&response.body).unwrap_or_default();
                            let error = body.get("error").cloned().unwrap_or_default();
                            let bytes = serde_json::json!({ "error": error }).to_string();
                            return Err(Error::Azure(crate::error::classify::parse_error_body(
                                AzureService::Arm,
                                operation,
                                response.status,
                                None,
                                bytes.as_bytes(),
                            )));
                        }
                        _ => {}
                    }
                } else if response.status != 202 {
                    return Ok(Some(response));
                }
                wait = super::retry_after::retry_after(&response.headers).unwrap_or(Duration::from_secs(1));
            }
            Err(Error::Pending {
                code: OPERATION_STILL_RUNNING,
                message: format!("{operation}: the asynchronous operation had not finished within this attempt's time"),
            })
        };
        match tokio::time::Instant::now().checked_add(self.inner.retry.budget) {
            Some(budget_end) => super::deadline::within(budget_end, polls).await,
            None => polls.await,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<&serde_json::Value>,
        operation: &'static str,
    ) -> Result<HttpResponse, Error> {
        let mut url = self.inner.endpoint.clone();
        url.set_path(path);
        url.query_pairs_mut().append_pair("api-version", api_version);
        let mut request = OutgoingRequest::new(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(&request, operation).await
    }

    async fn send(&self, request: &OutgoingRequest, operation: &'static str) -> Result<HttpResponse, Error> {
        let inner = &self.inner;
        let authorizer = AppScope { tokens: &inner.tokens, scope: inner.transport.cloud().arm_scope() };
        let (transport, options) = (&inner.transport, &inner.retry);
        retry::send_paced(transport, options, AzureService::Arm, operation, request, &authorizer, &inner.pacer).await
    }
}

fn bad_response(operation: &'static str, message: impl std::fmt::Display) -> Error {
    Error::bad_response(AzureService::Arm, operation, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_account_accessors_read_the_wire_names() {
        let raw = serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {
                "/subscriptions/s/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u": {}}},
            "properties": {"encryption": {
                "keySource": "Microsoft.Keyvault",
                "keyvaultproperties": {"keyvaulturi": "https://kv.vault.azure.net", "keyname": "k", "keyversion": "",
                    "currentVersionedKeyIdentifier": "https://kv.vault.azure.net/keys/k/abc",
                    "lastKeyRotationTimestamp": "2026-11-29T00:00:00Z"},
                "identity": {"userAssignedIdentity": "/x/u", "federatedIdentityClientId": "app"}}}
        });
        let account = StorageAccount { raw };
        let encryption = account.encryption().unwrap();
        let kv = encryption.key_vault_properties.unwrap();
        assert_eq!(kv.key_name.as_deref(), Some("k"));
        assert_eq!(kv.current_versioned_key_identifier.as_deref(), Some("https://kv.vault.azure.net/keys/k/abc"));
        assert_eq!(encryption.identity.unwrap().federated_identity_client_id.as_deref(), Some("app"));
        assert!(account.has_user_assigned_identity(
            "/subscriptions/S/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/U"
        ));
        assert!(!account.has_user_assigned_identity("/subscriptions/s/other"));
    }
}
