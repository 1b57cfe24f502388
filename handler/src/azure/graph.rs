//! Microsoft Graph: the multi-tenant application and its federated identity credentials.

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use super::credentials::{AppScope, TokenSource};
use super::encode_segment as segment;
use super::retry::{self, RetryOptions};
use super::transport::{HttpResponse, OutgoingRequest, Transport};
use crate::error::{AzureService, Error};

/// Graph client (v1.0). Cheap to clone.
#[derive(Debug, Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Url,
    transport: Transport,
    tokens: TokenSource,
    retry: RetryOptions,
}

/// What a federated identity credential should say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FicSpec {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A federated identity credential as Graph returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FederatedCredential {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Whether an upsert created the credential or updated an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
}

impl GraphClient {
    /// `endpoint` is the Graph origin, e.g. `cloud.graph_endpoint()`.
    pub fn new(endpoint: &str, transport: Transport, tokens: TokenSource, retry: RetryOptions) -> Result<Self, String> {
        let endpoint = Url::parse(endpoint).map_err(|e| format!("bad Graph endpoint {endpoint:?}: {e}"))?;
        Ok(Self { inner: Arc::new(Inner { endpoint, transport, tokens, retry }) })
    }

    pub async fn list_federated_credentials(&self, app_object_id: &str) -> Result<Vec<FederatedCredential>, Error> {
        #[derive(Deserialize)]
        struct Page {
            value: Vec<FederatedCredential>,
            #[serde(rename = "@odata.nextLink")]
            next_link: Option<String>,
        }
        const OP: &str = "list federated credentials";
        let mut url = self.url(&format!("/v1.0/applications/{}/federatedIdentityCredentials", segment(app_object_id)));
        let mut all = Vec::new();
        // An app holds at most 20 credentials; paging is followed anyway, bounded to stay safe.
        for _ in 0..50 {
            let page: Page =
                self.send(&OutgoingRequest::new(Method::GET, url), OP).await?.json(AzureService::Graph, OP)?;
            all.extend(page.value);
            match page.next_link.map(|l| Url::parse(&l)) {
                Some(Ok(next)) => url = next,
                _ => break,
            }
        }
        Ok(all)
    }

    /// Creates or updates the credential `name` (`PATCH …(name='…')` with `Prefer: create-if-missing`).
    pub async fn upsert_federated_credential(
        &self,
        app_object_id: &str,
        name: &str,
        spec: &FicSpec,
    ) -> Result<Upserted, Error> {
        const OP: &str = "upsert federated credential";
        let url = self.url(&format!(
            "/v1.0/applications/{}/federatedIdentityCredentials(name='{}')",
            segment(app_object_id),
            // OData doubles a quote inside a quoted key; the quotes themselves stay literal in the path.
            name.split('\'').map(segment).collect::<Vec<_>>().join("''")
        ));
        let mut body = serde_json::to_value(spec).unwrap_or_default();
        if let Some(object) = body.as_object_mut() {
            object.insert("name".to_owned(), serde_json::Value::String(name.to_owned()));
        }
        let request = OutgoingRequest::new(Method::PATCH, url)
            .json(&body)
            .header(HeaderName::from_static("prefer"), HeaderValue::from_static("create-if-missing"));
        let response = self.send(&request, OP).await?;
        Ok(if response.status == 201 { Upserted::Created } else { Upserted::Updated })
    }

    fn url(&self, path_and_query: &str) -> Url {
        // Paths are built from encoded segments, so joining cannot fail on a valid origin.
        self.inner.endpoint.join(path_and_query).unwrap_or_else(|_| self.inner.endpoint.clone())
    }

    async fn send(&self, request: &OutgoingRequest, operation: &'static str) -> Result<HttpResponse, Error> {
        let inner = &self.inner;
        let authorizer = AppScope { tokens: &inner.tokens, scope: inner.transport.cloud().graph_scope() };
        retry::send(&inner.transport, &inner.retry, AzureService::Graph, operation, request, &authorizer).await
    }
}
