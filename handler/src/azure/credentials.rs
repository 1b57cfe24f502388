//! Where tokens come from: the function app's identity, the CMK identity's exchange token, and one federated
//! credential per customer tenant — all `azure_identity` credentials sending through our [`Transport`].
//!
//! Credential objects are cached (one per key) and cache their tokens per scope, so steady state makes no token
//! request per message. Credential failures become our errors with Entra's status and error body preserved, so that
//! classification sees `AADSTS700016` and friends.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientMethodOptions, ClientOptions, RetryOptions as CoreRetryOptions};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId,
};

use super::retry::Authorizer;
use super::retry_after::retry_after;
use super::transport::{AuthorizationValue, HostRefused, ResponseTooLarge, TimedOut, Transport};
use crate::cloud::Cloud;
use crate::error::classify::parse_error_body;
use crate::error::{AzureService, Error, TransportError, TransportErrorKind};

/// A bearer token. `Debug` never prints it.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Who calls a customer's vault: the multi-tenant app `app_client_id` in the customer's `tenant`, authenticated with the
/// exchange token of the CMK identity `uami_client_id` (`None`: the default CMK identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerIdentity<'a> {
    pub tenant: &'a str,
    pub app_client_id: &'a str,
    pub uami_client_id: Option<&'a str>,
}

/// Credentials made once and kept, by key.
type CredentialCache<K> = Mutex<HashMap<K, Arc<dyn TokenCredential>>>;

/// Where the assertion for the exchange comes from.
enum Exchange {
    /// One credential for every exchange (the ops CLI), or none.
    Fixed(Option<Arc<dyn TokenCredential>>),
    /// The function app's user-assigned identities, one credential per client id, made on first use: identity sets
    /// may name several CMK identities.
    ManagedIdentities {
        default_client_id: Option<String>,
        by_client_id: Mutex<HashMap<String, Arc<dyn TokenCredential>>>,
    },
}

/// Hands out tokens for every identity the handler uses. Cheap to clone.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

struct Inner {
    cloud: Cloud,
    transport: Transport,
    /// ARM, Graph and Service Bus tokens: the function app's identity (or, for the ops CLI, the operator's).
    app: Arc<dyn TokenCredential>,
    /// The service that issues `app` tokens, for error attribution.
    app_service: AzureService,
    /// The CMK user-assigned identities, asked only for the token-exchange audience.
    exchange: Exchange,
    /// One client-assertion credential per (customer tenant, app, CMK identity).
    customer: CredentialCache<(String, String, String)>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("cloud", &self.inner.cloud)
            .field("fixed_exchange_identity", &matches!(self.inner.exchange, Exchange::Fixed(Some(_))))
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// The function app's managed identities (App Service protocol: `IDENTITY_ENDPOINT` / `IDENTITY_HEADER`, which
    /// `azure_identity` reads itself). `uami_client_id` selects the CMK identity used for the assertion exchange.
    pub fn managed_identity(cloud: Cloud, transport: &Transport, uami_client_id: Option<&str>) -> Result<Self, String> {
        let options = |user_assigned_id| ManagedIdentityCredentialOptions {
            user_assigned_id,
            client_options: client_options(cloud, transport),
        };
        let app = ManagedIdentityCredential::new(Some(options(None)))
            .map_err(|e| format!("cannot create the managed identity credential: {e}"))?;
        let exchange = Exchange::ManagedIdentities {
            default_client_id: uami_client_id.map(str::to_owned),
            by_client_id: Mutex::new(HashMap::new()),
        };
        Ok(Self::new(cloud, transport, app, AzureService::ManagedIdentity, exchange))
    }

    /// Any credential for ARM/Graph/Service Bus (the ops CLI passes Azure CLI or workload identity credentials), and
    /// optionally the identity whose token is the customer-tenant assertion.
    pub fn from_credentials(
        cloud: Cloud,
        transport: &Transport,
        app: Arc<dyn TokenCredential>,
        exchange: Option<Arc<dyn TokenCredential>>,
    ) -> Self {
        Self::new(cloud, transport, app, AzureService::Entra, Exchange::Fixed(exchange))
    }

    fn new(
        cloud: Cloud,
        transport: &Transport,
        app: Arc<dyn TokenCredential>,
        app_service: AzureService,
        exchange: Exchange,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cloud,
                transport: transport.clone(),
                app,
                app_service,
                exchange,
                customer: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn cloud(&self) -> Cloud {
        self.inner.cloud
    }

    /// A token of the app's own identity for `scope` (e.g. `cloud.arm_scope()`).
    pub async fn app_token(&self, scope: &str) -> Result<BearerToken, Error> {
        get_token(self.inner.app.as_ref(), scope, self.inner.app_service, "get token").await
    }

    /// A token of the multi-tenant app in the customer's tenant, obtained with the CMK identity's exchange token as the
    /// client assertion.
    pub async fn customer_token(&self, caller: &CustomerIdentity<'_>, scope: &str) -> Result<BearerToken, Error> {
        let credential = self.customer_credential(caller)?;
        get_token(credential.as_ref(), scope, AzureService::Entra, "get customer-tenant token").await
    }

    /// Forgets the credential of this customer identity, and with it the token it caches: the next customer token
    /// for it is exchanged anew, so Entra judges the app's service principal in the customer tenant now (a deleted
    /// one refuses the exchange, AADSTS700016) instead of when a cached token runs out (decision 31). Callers
    /// sharing the identity at that moment get a fresh token too, which costs them nothing but that exchange.
    pub fn renew_customer_token(&self, caller: &CustomerIdentity<'_>) {
        let key = customer_key(caller);
        self.inner.customer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&key);
    }

    /// The credential whose tokens are the assertion: the fixed one, or the managed identity with that client id.
    fn exchange_credential(&self, uami_client_id: Option<&str>) -> Result<Arc<dyn TokenCredential>, Error> {
        let missing = || Error::IsvConfiguration {
            code: "CmkIdentityMissing",
            message: "no user-assigned identity is configured for the cross-tenant token exchange".to_owned(),
        };
        match &self.inner.exchange {
            Exchange::Fixed(credential) => credential.clone().ok_or_else(missing),
            Exchange::ManagedIdentities { default_client_id, by_client_id } => {
                let client_id =
                    uami_client_id.or(default_client_id.as_deref()).ok_or_else(missing)?.to_ascii_lowercase();
                let mut cache = by_client_id.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(credential) = cache.get(&client_id) {
                    return Ok(credential.clone());
                }
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: Some(UserAssignedId::ClientId(client_id.clone())),
                    client_options: client_options(self.inner.cloud, &self.inner.transport),
                };
                let credential: Arc<dyn TokenCredential> = ManagedIdentityCredential::new(Some(options))
                    .map_err(|e| Error::IsvConfiguration { code: "CredentialInvalid", message: e.to_string() })?;
                cache.insert(client_id, credential.clone());
                Ok(credential)
            }
        }
    }

    fn customer_credential(&self, caller: &CustomerIdentity<'_>) -> Result<Arc<dyn TokenCredential>, Error> {
        let (tenant, app_client_id) = (caller.tenant, caller.app_client_id);
        let key = customer_key(caller);
        let mut cache = self.inner.customer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(credential) = cache.get(&key) {
            return Ok(credential.clone());
        }
        let exchange = self.exchange_credential(caller.uami_client_id)?;
        let assertion =
            ExchangeAssertion { exchange, scope: format!("{}/.default", self.inner.cloud.token_exchange_audience()) };
        let options = ClientAssertionCredentialOptions {
            client_options: client_options(self.inner.cloud, &self.inner.transport),
        };
        let credential: Arc<dyn TokenCredential> =
            ClientAssertionCredential::new(tenant.to_owned(), app_client_id.to_owned(), assertion, Some(options))
                .map_err(|e| Error::IsvConfiguration { code: "CredentialInvalid", message: e.to_string() })?;
        cache.insert(key, credential.clone());
        Ok(credential)
    }
}

/// The customer credential cache's key: (tenant, app, CMK identity), lowercase.
fn customer_key(caller: &CustomerIdentity<'_>) -> (String, String, String) {
    (
        caller.tenant.to_ascii_lowercase(),
        caller.app_client_id.to_ascii_lowercase(),
        caller.uami_client_id.unwrap_or_default().to_ascii_lowercase(),
    )
}

/// Our transport, the cloud's authority, and no retries of azure_core's own: our send loop owns retry timing.
fn client_options(cloud: Cloud, transport: &Transport) -> ClientOptions {
    use azure_core::cloud::CloudConfiguration;
    let configuration = match cloud {
        Cloud::Public => CloudConfiguration::AzurePublic,
        Cloud::UsGovernment => CloudConfiguration::AzureGovernment,
        Cloud::China => CloudConfiguration::AzureChina,
    };
    ClientOptions {
        transport: Some(azure_core::http::Transport::new(Arc::new(transport.clone()))),
        retry: CoreRetryOptions::none(),
        cloud: Some(Arc::new(configuration)),
        ..Default::default()
    }
}

/// The CMK identity's token for the exchange audience, presented as the client assertion.
struct ExchangeAssertion {
    exchange: Arc<dyn TokenCredential>,
    scope: String,
}

impl fmt::Debug for ExchangeAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeAssertion").field("scope", &self.scope).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ClientAssertion for ExchangeAssertion {
    async fn secret(&self, _options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let token = self.exchange.get_token(&[&self.scope], None).await?;
        Ok(token.token.secret().to_owned())
    }
}

/// One token, within the invocation's deadline: the credential's HTTP goes through our transport, which bounds each
/// request, and the whole exchange (assertion plus token) is bounded here too.
async fn get_token(
    credential: &dyn TokenCredential,
    scope: &str,
    service: AzureService,
    operation: &'static str,
) -> Result<BearerToken, Error> {
    match super::deadline::run(credential.get_token(&[scope], None)).await {
        Some(Ok(token)) => Ok(BearerToken(token.token.secret().to_owned())),
        Some(Err(e)) => Err(map_credential_error(&e, service, operation)),
        None => Err(Error::Transport(TransportError {
            service,
            operation,
            kind: TransportErrorKind::OutOfTime,
            message: "the invocation ran out of time while fetching a token".to_owned(),
        })),
    }
}

/// Digs the HTTP response out of azure_identity's wrapped error (a `Credential` error around an `HttpResponse`
/// error that keeps the raw response) so the Entra or MSI body is classified like any other Azure error.
pub(crate) fn map_credential_error(error: &azure_core::Error, service: AzureService, operation: &'static str) -> Error {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<HostRefused>() {
            return Error::HostNotAllowed { host: refused.0.clone() };
        }
        if let Some(timed_out) = e.downcast_ref::<TimedOut>() {
            let out_of_time = super::deadline::remaining().is_some_and(|left| left.is_zero());
            let kind = if out_of_time { TransportErrorKind::OutOfTime } else { TransportErrorKind::Timeout };
            return Error::Transport(TransportError { service, operation, kind, message: timed_out.to_string() });
        }
        if let Some(too_large) = e.downcast_ref::<ResponseTooLarge>() {
            return Error::bad_response(service, operation, too_large);
        }
        if let Some(core) = e.downcast_ref::<azure_core::Error>() {
            match core.kind() {
                azure_core::error::ErrorKind::HttpResponse { status, raw_response: Some(raw), .. } => {
                    let status = u16::from(*status);
                    // An MSI 400 means "identity not assigned"; the token endpoint's 400 names the Entra error.
                    let service = if raw.body().is_empty() { service } else { body_service(raw.body(), service) };
                    let wait = retry_after(&raw_headers(raw.headers()));
                    return Error::Azure(parse_error_body(service, operation, status, wait, raw.body()));
                }
                azure_core::error::ErrorKind::Io | azure_core::error::ErrorKind::Connection => {
                    return Error::Transport(TransportError {
                        service,
                        operation,
                        kind: TransportErrorKind::Connect,
                        message: error.to_string(),
                    });
                }
                _ => {}
            }
        }
        current = e.source();
    }
    Error::Transport(TransportError {
        service,
        operation,
        kind: TransportErrorKind::BadResponse,
        message: error.to_string(),
    })
}

/// azure_core's headers as a reqwest map, to read `Retry-After` the same way as for our own requests.
fn raw_headers(headers: &azure_core::http::headers::Headers) -> reqwest::header::HeaderMap {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let name = reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).ok()?;
            Some((name, reqwest::header::HeaderValue::from_str(value.as_str()).ok()?))
        })
        .collect()
}

/// Entra bodies carry `error_codes`; attribute them to Entra even when the MSI endpoint relayed them.
fn body_service(body: &[u8], fallback: AzureService) -> AzureService {
    if serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("error_codes").is_some()) {
        AzureService::Entra
    } else {
        fallback
    }
}

/// Bearer tokens for one scope of the app's identity.
pub(crate) struct AppScope<'a> {
    pub tokens: &'a TokenSource,
    pub scope: String,
}

#[async_trait::async_trait]
impl Authorizer for AppScope<'_> {
    async fn authorization(&self, _url: &url::Url) -> Result<Option<AuthorizationValue>, Error> {
        let token = self.tokens.app_token(&self.scope).await?;
        Ok(Some(AuthorizationValue(format!("Bearer {}", token.secret()))))
    }
}

/// Bearer tokens for one scope of the multi-tenant app in a customer tenant.
pub(crate) struct CustomerScope<'a> {
    pub tokens: &'a TokenSource,
    pub caller: CustomerIdentity<'a>,
    pub scope: String,
}

#[async_trait::async_trait]
impl Authorizer for CustomerScope<'_> {
    async fn authorization(&self, _url: &url::Url) -> Result<Option<AuthorizationValue>, Error> {
        let token = self.tokens.customer_token(&self.caller, &self.scope).await?;
        Ok(Some(AuthorizationValue(format!("Bearer {}", token.secret()))))
    }
}
