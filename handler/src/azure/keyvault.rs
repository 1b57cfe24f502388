//! Key Vault and Managed HSM keys over REST (api-version 7.4), as the multi-tenant app in the customer's tenant.
//!
//! REST rather than the SDK so we see the raw error codes (`ForbiddenByRbac`, `KeyDisabled`), keep our own retry
//! budget and use a per-customer-tenant credential (ARCHITECTURE.md, decision 3).
//!
//! Like the Azure SDKs, the first request to a vault goes without a token: its 401 challenge names the vault's
//! tenant, remembered per vault. A token is only fetched, and sent, for a vault whose tenant is the customer tenant
//! of the message; any other vault is refused before a token exists ([`challenge`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde::Deserialize;
use url::Url;

use super::challenge;
use super::credentials::{CustomerIdentity, CustomerScope, TokenSource};
use super::encode_segment;
use super::retry::{self, Anonymous, RetryOptions};
use super::transport::{HttpResponse, OutgoingRequest, Transport};
use crate::error::{AzureService, Error};

const API_VERSION: &str = "7.4";

/// Key Vault data-plane client for any vault of the configured cloud. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyVaultClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    tokens: TokenSource,
    retry: RetryOptions,
    /// Each vault's tenant, from its challenge, by lowercase host.
    tenants: Mutex<HashMap<String, String>>,
}

/// A key as `GET /keys/{name}[/{version}]` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBundle {
    pub kid: String,
    pub kty: String,
    pub key_ops: Vec<String>,
    /// RSA modulus, big-endian.
    pub n: Vec<u8>,
    /// RSA public exponent, big-endian.
    pub e: Vec<u8>,
    pub attributes: KeyAttributes,
    /// The key version's tags (`cmk-consent…` proves the owner's consent to an account).
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyAttributes {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Not before, unix seconds.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Expiry, unix seconds.
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub recovery_level: Option<String>,
    #[serde(default)]
    pub recoverable_days: Option<i64>,
}

impl KeyBundle {
    /// Bit length of the RSA modulus (leading zero bytes and bits ignored); 0 for non-RSA keys.
    pub fn modulus_bits(&self) -> usize {
        let Some(first) = self.n.iter().position(|b| *b != 0) else { return 0 };
        (self.n.len() - first) * 8 - self.n[first].leading_zeros() as usize
    }

    /// The last path segment of `kid`.
    pub fn version(&self) -> &str {
        self.kid.trim_end_matches('/').rsplit('/').next().unwrap_or_default()
    }
}

impl KeyVaultClient {
    pub fn new(transport: Transport, tokens: TokenSource, retry: RetryOptions) -> Self {
        Self { inner: Arc::new(Inner { transport, tokens, retry, tenants: Mutex::new(HashMap::new()) }) }
    }

    /// Gets the latest version of the key, or `version`, as the multi-tenant app in the customer's tenant.
    pub async fn get_key(
        &self,
        caller: &CustomerIdentity<'_>,
        vault_uri: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<KeyBundle, Error> {
        #[derive(Deserialize)]
        struct Wire {
            key: WireKey,
            #[serde(default)]
            attributes: KeyAttributes,
            #[serde(default)]
            tags: BTreeMap<String, String>,
        }
        #[derive(Deserialize)]
        struct WireKey {
            kid: String,
            kty: String,
            #[serde(default)]
            key_ops: Vec<String>,
            #[serde(default)]
            n: Option<String>,
            #[serde(default)]
            e: Option<String>,
        }
        const OP: &str = "get key";
        let path = match version {
            Some(v) if !v.is_empty() => format!("keys/{}/{}", encode_segment(name), encode_segment(v)),
            _ => format!("keys/{}", encode_segment(name)),
        };
        let url = vault_url(vault_uri, &path, OP)?;
        let response = self.send(*caller, OutgoingRequest::new(Method::GET, url), OP).await?;
        let wire: Wire = response.json(AzureService::KeyVault, OP)?;
        let decode = |v: Option<String>| -> Result<Vec<u8>, Error> {
            v.map_or(Ok(Vec::new()), |s| {
                URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|e| bad_response(OP, e))
            })
        };
        Ok(KeyBundle {
            n: decode(wire.key.n)?,
            e: decode(wire.key.e)?,
            kid: wire.key.kid,
            kty: wire.key.kty,
            key_ops: wire.key.key_ops,
            attributes: wire.attributes,
            tags: wire.tags,
        })
    }

    /// Wraps `value` with the key `kid` (a full versioned key id) and algorithm `alg` (e.g. `RSA-OAEP-256`).
    pub async fn wrap_key(
        &self,
        caller: &CustomerIdentity<'_>,
        kid: &str,
        alg: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.key_operation(*caller, kid, "wrapkey", alg, value, "wrap key").await
    }

    pub async fn unwrap_key(
        &self,
        caller: &CustomerIdentity<'_>,
        kid: &str,
        alg: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.key_operation(*caller, kid, "unwrapkey", alg, value, "unwrap key").await
    }

    async fn key_operation(
        &self,
        caller: CustomerIdentity<'_>,
        kid: &str,
        verb: &str,
        alg: &str,
        value: &[u8],
        operation: &'static str,
    ) -> Result<Vec<u8>, Error> {
        #[derive(Deserialize)]
        struct Wire {
            value: String,
        }
        let mut url = Url::parse(kid).map_err(|e| bad_response(operation, e))?;
        let path = format!("{}/{verb}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.query_pairs_mut().clear().append_pair("api-version", API_VERSION);
        let body = serde_json::json!({ "alg": alg, "value": URL_SAFE_NO_PAD.encode(value) });
        let response = self.send(caller, OutgoingRequest::new(Method::POST, url).json(&body), operation).await?;
        let wire: Wire = response.json(AzureService::KeyVault, operation)?;
        URL_SAFE_NO_PAD.decode(wire.value.trim_end_matches('=')).map_err(|e| bad_response(operation, e))
    }

    /// The tenant a vault belongs to, from its challenge (one unauthenticated request per vault per process).
    pub async fn vault_tenant(&self, vault_uri: &str) -> Result<String, Error> {
        const OP: &str = "read vault challenge";
        let url = vault_url(vault_uri, "keys", OP)?;
        self.tenant_of(&OutgoingRequest::new(Method::GET, url), OP).await
    }

    /// The tenant a vault belongs to, if its challenge was already read in this process.
    pub fn known_vault_tenant(&self, vault_host: &str) -> Option<String> {
        self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner()).get(&vault_host.to_ascii_lowercase()).cloned()
    }

    /// Sends `request` with a token for the vault's scope. A 401 to a token is answered, as the Azure SDKs' challenge
    /// policy does, by one more try with the challenge read again and a freshly exchanged token: the vault may have
    /// stopped taking the cached one before it ran out (a revocation under continuous access evaluation, a clock that
    /// disagrees with ours). A second 401 is the answer.
    async fn send(
        &self,
        caller: CustomerIdentity<'_>,
        request: OutgoingRequest,
        operation: &'static str,
    ) -> Result<HttpResponse, Error> {
        let refused = |result: &Result<HttpResponse, Error>| matches!(result, Err(Error::Azure(e)) if e.status == 401);
        let result = self.send_once(caller, &request, operation).await;
        if !refused(&result) {
            return result;
        }
        tracing::debug!(operation, "the vault refused the token; retrying once with a fresh one");
        self.inner.tokens.renew_customer_token(&caller);
        self.send_once(caller, &request, operation).await
    }

    async fn send_once(
        &self,
        caller: CustomerIdentity<'_>,
        request: &OutgoingRequest,
        operation: &'static str,
    ) -> Result<HttpResponse, Error> {
        let inner = &self.inner;
        inner.transport.ensure_allowed(&request.url)?;
        let host = request.url.host_str().unwrap_or_default().to_ascii_lowercase();
        let vault_tenant = self.tenant_of(request, operation).await?;
        if !vault_tenant.eq_ignore_ascii_case(caller.tenant) {
            return Err(Error::Refused {
                code: "VaultTenantMismatch",
                message: format!(
                    "{host} belongs to tenant {vault_tenant}, not to the customer tenant {} the message names; no token \
                     was requested for it or sent to it",
                    caller.tenant
                ),
            });
        }
        let scope = vault_scope(inner.transport.cloud(), &request.url);
        let authorizer = CustomerScope { tokens: &inner.tokens, caller, scope };
        let result =
            retry::send(&inner.transport, &inner.retry, AzureService::KeyVault, operation, request, &authorizer).await;
        if matches!(&result, Err(Error::Azure(e)) if e.status == 401) {
            // The vault refused a token for the tenant it named: read its challenge again next time.
            inner.tenants.lock().unwrap_or_else(|p| p.into_inner()).remove(&host);
        }
        result
    }

    /// The vault's tenant: remembered, or read from the 401 challenge to `request` sent without a token or a body.
    async fn tenant_of(&self, request: &OutgoingRequest, operation: &'static str) -> Result<String, Error> {
        let inner = &self.inner;
        let host = request.url.host_str().unwrap_or_default().to_ascii_lowercase();
        if let Some(tenant) = self.known_vault_tenant(&host) {
            return Ok(tenant);
        }
        let probe = OutgoingRequest::new(request.method.clone(), request.url.clone());
        let challenged = |status: u16| status == 401;
        let response = retry::send_expecting(
            &inner.transport,
            &inner.retry,
            AzureService::KeyVault,
            operation,
            &probe,
            &Anonymous,
            challenged,
        )
        .await?;
        let header =
            response.header("www-authenticate").ok_or_else(|| bad_response(operation, "a 401 without a challenge"))?;
        let challenge = challenge::parse(header, &host).map_err(|e| bad_response(operation, e))?;
        let expected = vault_scope(inner.transport.cloud(), &request.url);
        if !expected.trim_end_matches("/.default").eq_ignore_ascii_case(&challenge.resource) {
            return Err(bad_response(
                operation,
                format!("the challenge asks for {}, not {expected}", challenge.resource),
            ));
        }
        inner.tenants.lock().unwrap_or_else(|p| p.into_inner()).insert(host, challenge.tenant.clone());
        Ok(challenge.tenant)
    }
}

/// Managed HSM hosts take the HSM audience; everything else the Key Vault one.
fn vault_scope(cloud: crate::cloud::Cloud, url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if host.ends_with(&format!(".{}", cloud.managed_hsm_suffix())) {
        cloud.managed_hsm_scope()
    } else {
        cloud.key_vault_scope()
    }
}

fn vault_url(vault_uri: &str, path: &str, operation: &'static str) -> Result<Url, Error> {
    let base = Url::parse(vault_uri).map_err(|e| bad_response(operation, e))?;
    let mut url = base.join(&format!("/{path}")).map_err(|e| bad_response(operation, e))?;
    url.query_pairs_mut().append_pair("api-version", API_VERSION);
    Ok(url)
}

fn bad_response(operation: &'static str, message: impl std::fmt::Display) -> Error {
    Error::bad_response(AzureService::KeyVault, operation, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignores_leading_zeros() {
        let mut key = KeyBundle {
            kid: "https://kv.vault.azure.net/keys/k/v1".into(),
            kty: "RSA".into(),
            key_ops: vec![],
            n: vec![0xff; 256],
            e: vec![1, 0, 1],
            attributes: KeyAttributes::default(),
            tags: BTreeMap::new(),
        };
        assert_eq!(key.modulus_bits(), 2048);
        key.n.insert(0, 0);
        assert_eq!(key.modulus_bits(), 2048);
        key.n[1] = 0x01;
        assert_eq!(key.modulus_bits(), 2041);
        assert_eq!(key.version(), "v1");
    }

    #[test]
    fn managed_hsm_hosts_get_the_hsm_scope() {
        let cloud = crate::cloud::Cloud::Public;
        let hsm = Url::parse("https://h.managedhsm.azure.net/keys/k").unwrap();
        let kv = Url::parse("https://v.vault.azure.net/keys/k").unwrap();
        assert_eq!(vault_scope(cloud, &hsm), "https://managedhsm.azure.net/.default");
        assert_eq!(vault_scope(cloud, &kv), "https://vault.azure.net/.default");
    }
}
