//! Authentication and the Service Bus client: a SAS connection string, or Entra credentials chained like Azure tools.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_identity::{AzureCliCredential, ManagedIdentityCredential, WorkloadIdentityCredential};
use cmk_handler::azure::credentials::TokenSource;
use cmk_handler::azure::retry::RetryOptions;
use cmk_handler::azure::servicebus::{ServiceBusAuth, ServiceBusClient};
use cmk_handler::azure::transport::Transport;
use cmk_handler::cloud::Cloud;

use crate::cli::{AuthMethod, ConnectionArgs};

/// Per-request timeout; long receives are bounded by their own `timeout` parameter, well below this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A connected client and who it acts as, for audit records.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: ServiceBusClient,
    /// The namespace's host name.
    pub namespace: String,
    /// `sas:{key name}` or `entra:{credential}`.
    pub credential: String,
    /// The Entra token source, to name the signed-in principal in audit records.
    tokens: Option<TokenSource>,
}

impl Connection {
    /// Who acts, for audit records: the SAS policy, or the Entra principal named by the token's claims.
    pub async fn principal(&self) -> String {
        let Some(tokens) = &self.tokens else { return self.credential.clone() };
        match tokens.app_token(&tokens.cloud().service_bus_scope()).await {
            Ok(token) => match token_principal(token.secret()) {
                Some(name) => format!("{}:{name}", self.credential),
                None => self.credential.clone(),
            },
            Err(_) => self.credential.clone(),
        }
    }
}

/// `upn` (a user), else `appid` (a service principal or managed identity), with the object id, from a JWT's claims.
/// The signature is not checked: the value is a label for audit records, and Service Bus verified the token anyway.
pub fn token_principal(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?,
    )
    .ok()?;
    let claim = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
    let name =
        claim("upn").or(claim("preferred_username")).or(claim("unique_name")).or(claim("appid")).or(claim("azp"));
    match (name, claim("oid")) {
        (Some(name), Some(oid)) => Some(format!("{name} ({oid})")),
        (Some(name), None) => Some(name.to_owned()),
        (None, oid) => oid.map(str::to_owned),
    }
}

pub fn cloud(args: &ConnectionArgs) -> Result<Cloud, String> {
    args.cloud.parse::<Cloud>()
}

pub fn connect(args: &ConnectionArgs) -> Result<Connection, String> {
    let cloud = cloud(args)?;
    let transport = Transport::new(cloud, args.emulator.clone(), HTTP_TIMEOUT)?;
    // The CLI is interactive: fail within seconds rather than retry for a minute.
    let retry = RetryOptions { max_attempts: 3, budget: Duration::from_secs(20), ..RetryOptions::default() };
    if let Some(connection_string) = &args.connection_string {
        let (namespace, auth) = ServiceBusAuth::from_connection_string(connection_string)?;
        let credential = match &auth {
            ServiceBusAuth::SharedAccessKey { key_name, .. } => format!("sas:{key_name}"),
            ServiceBusAuth::Bearer(_) => "entra".to_owned(),
        };
        let client = ServiceBusClient::new(&namespace, transport, auth, retry)?;
        return Ok(Connection { client, namespace, credential, tokens: None });
    }
    let namespace = args
        .namespace
        .as_deref()
        .ok_or("no Service Bus namespace: pass --namespace (or CMK_SERVICEBUS_NAMESPACE), or --connection-string")?;
    let namespace = qualified_namespace(namespace, cloud);
    let (credential, name) = entra_credential(args.auth)?;
    let tokens = TokenSource::from_credentials(cloud, &transport, credential, None);
    let client = ServiceBusClient::new(&namespace, transport, ServiceBusAuth::Bearer(tokens.clone()), retry)?;
    Ok(Connection { client, namespace, credential: format!("entra:{name}"), tokens: Some(tokens) })
}

/// `isv-cmk` → `isv-cmk.servicebus.windows.net` (per cloud); an FQDN stays as it is.
pub fn qualified_namespace(namespace: &str, cloud: Cloud) -> String {
    let namespace = namespace.trim().trim_start_matches("sb://").trim_end_matches('/').to_ascii_lowercase();
    if namespace.contains('.') { namespace } else { format!("{namespace}.{}", cloud.service_bus_suffix()) }
}

fn entra_credential(method: AuthMethod) -> Result<(Arc<dyn TokenCredential>, &'static str), String> {
    let cli = || AzureCliCredential::new(None).map(|c| c as Arc<dyn TokenCredential>);
    let managed = || ManagedIdentityCredential::new(None).map(|c| c as Arc<dyn TokenCredential>);
    let workload = || WorkloadIdentityCredential::new(None).map(|c| c as Arc<dyn TokenCredential>);
    let single = |name: &'static str, made: azure_core::Result<Arc<dyn TokenCredential>>| {
        made.map(|c| (c, name)).map_err(|e| format!("cannot use the {name} credential: {e}"))
    };
    match method {
        AuthMethod::Cli => single("azure-cli", cli()),
        AuthMethod::ManagedIdentity => single("managed-identity", managed()),
        AuthMethod::WorkloadIdentity => single("workload-identity", workload()),
        AuthMethod::Auto => {
            // A credential whose environment is absent (no workload identity variables, say) is left out of the chain.
            let sources: Vec<(&'static str, Arc<dyn TokenCredential>)> =
                [("azure-cli", cli()), ("managed-identity", managed()), ("workload-identity", workload())]
                    .into_iter()
                    .filter_map(|(name, made)| made.ok().map(|c| (name, c)))
                    .collect();
            if sources.is_empty() {
                return Err(
                    "no Entra credential is available; log in with `az login` or pass --connection-string".into()
                );
            }
            Ok((Arc::new(Chain { sources, chosen: Mutex::new(None) }), "auto"))
        }
    }
}

/// Tries each credential in order; the first that yields a token is used from then on.
#[derive(Debug)]
struct Chain {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: Mutex<Option<usize>>,
}

#[async_trait::async_trait]
impl TokenCredential for Chain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = *self.chosen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = chosen {
            return self.sources[index].1.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (index, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    *self.chosen.lock().unwrap_or_else(|e| e.into_inner()) = Some(index);
                    return Ok(token);
                }
                Err(error) => failures.push(format!("{name}: {error}")),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!("no Entra credential produced a token ({})", failures.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_names_the_token_principal() {
        use base64::Engine;
        let jwt = |claims: serde_json::Value| {
            let encode = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!("{}.{}.sig", encode(&serde_json::json!({"alg": "RS256"})), encode(&claims))
        };
        let user = jwt(serde_json::json!({"upn": "alice@contoso.com", "oid": "o-1", "appid": "a"}));
        assert_eq!(token_principal(&user).as_deref(), Some("alice@contoso.com (o-1)"));
        let identity = jwt(serde_json::json!({"appid": "app-2", "oid": "o-2"}));
        assert_eq!(token_principal(&identity).as_deref(), Some("app-2 (o-2)"));
        assert_eq!(token_principal("not a token"), None);
    }

    #[test]
    fn namespaces_are_qualified_per_cloud() {
        assert_eq!(qualified_namespace("isv-cmk", Cloud::Public), "isv-cmk.servicebus.windows.net");
        assert_eq!(
            qualified_namespace("sb://ISV.servicebus.windows.net/", Cloud::Public),
            "isv.servicebus.windows.net"
        );
    }
}
