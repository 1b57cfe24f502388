//! The only code that talks HTTP to Azure: the allow-listed transport, the retry loop, credentials, and one client
//! per service (ARM, Microsoft Graph, Key Vault, Service Bus).
//!
//! [`AzureClients::new`] builds them all from a [`ClientConfig`]; nothing in here reads the process environment
//! except `azure_identity`'s managed-identity credential, which reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` itself.

mod retry_after;

pub mod arm;
pub mod challenge;
pub mod credentials;
pub mod deadline;
pub mod graph;
pub mod keyvault;
pub mod pacing;
pub mod retry;
pub mod servicebus;
pub mod transport;

use std::time::Duration;

use url::Url;

pub use arm::ArmClient;
pub use credentials::TokenSource;
pub use graph::GraphClient;
pub use keyvault::KeyVaultClient;
pub use retry::RetryOptions;
pub use servicebus::{ServiceBusAuth, ServiceBusClient};
pub use transport::Transport;

use crate::cloud::Cloud;

/// Everything the clients need; the lead maps `Settings` to it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub cloud: Cloud,
    /// Loopback `http://` address every request's bytes go to (tests and the local testbed only).
    pub test_proxy: Option<Url>,
    pub http_timeout: Duration,
    pub retry: RetryOptions,
    /// FQDN, e.g. `myns.servicebus.windows.net`.
    pub service_bus_namespace: String,
    /// Client id of the CMK user-assigned identity (the token-exchange identity).
    pub uami_client_id: Option<String>,
}

/// One client per service, sharing a transport and a token source. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AzureClients {
    pub arm: ArmClient,
    pub graph: GraphClient,
    pub key_vault: KeyVaultClient,
    pub service_bus: ServiceBusClient,
    pub tokens: TokenSource,
    transport: Transport,
}

impl AzureClients {
    /// The function app's clients: managed identities, Service Bus with bearer tokens.
    pub fn new(config: &ClientConfig) -> Result<Self, String> {
        let transport = Transport::new(config.cloud, config.test_proxy.clone(), config.http_timeout)?
            .with_allowed_host(&config.service_bus_namespace);
        let tokens = TokenSource::managed_identity(config.cloud, &transport, config.uami_client_id.as_deref())?;
        Self::with_tokens(config, transport, tokens.clone(), ServiceBusAuth::Bearer(tokens))
    }

    /// Clients over a given transport, token source and Service Bus auth (the ops CLI and tests).
    pub fn with_tokens(
        config: &ClientConfig,
        transport: Transport,
        tokens: TokenSource,
        service_bus_auth: ServiceBusAuth,
    ) -> Result<Self, String> {
        let cloud = config.cloud;
        Ok(Self {
            arm: ArmClient::new(&cloud.arm_endpoint(), transport.clone(), tokens.clone(), config.retry)?,
            graph: GraphClient::new(&cloud.graph_endpoint(), transport.clone(), tokens.clone(), config.retry)?,
            key_vault: KeyVaultClient::new(transport.clone(), tokens.clone(), config.retry),
            service_bus: ServiceBusClient::new(
                &config.service_bus_namespace,
                transport.clone(),
                service_bus_auth,
                config.retry,
            )?,
            tokens,
            transport,
        })
    }

    /// Builds the shared HTTP client now (it loads the system trust store), so the first request does not wait for
    /// it; every client and credential here shares that one client.
    pub async fn warm_up(&self) -> Result<(), String> {
        self.transport.warm_up().await
    }
}

/// Characters left as they are in a URL path segment (RFC 3986 unreserved); everything else is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one URL path segment.
pub(crate) fn encode_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}
