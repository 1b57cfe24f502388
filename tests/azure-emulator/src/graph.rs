//! Microsoft Graph v1.0, the slice the handler uses: applications, their federated identity credentials, and
//! service principals. Every call needs an emulator-minted token with the Graph audience.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::cloud::Cloud;
use crate::entra::{Claims, Directory, DirectoryError, audience_matches};
use crate::http::Req;
use crate::scenario::{Application, FederatedIdentityCredential, ServicePrincipal};
use crate::state::Shared;

/// Microsoft Graph's well-known application id, which v2.0 tokens carry as `aud`.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// What the path addresses.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Applications,
    Application(AppKey),
    Credentials(AppKey),
    Credential(AppKey, String),
    ServicePrincipals,
    ServicePrincipalByAppId(String),
}

#[derive(Debug, PartialEq, Eq)]
enum AppKey {
    ObjectId(String),
    AppId(String),
}

pub async fn handle(shared: &Shared, req: Req) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = req.header("client-request-id").map_or_else(|| request_id.clone(), str::to_owned);
    let ctx = Ctx { shared, request_id, client_request_id };
    let cloud = Cloud::service_for_host(&req.host()).map(|(cloud, _)| cloud).unwrap_or_default();
    let claims = match authenticate(shared, cloud, &req) {
        Ok(claims) => claims,
        Err(message) => return ctx.error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", &message),
    };
    let path = percent_decode_str(req.url.path()).decode_utf8_lossy().into_owned();
    let Some(route) = path.strip_prefix("/v1.0/").and_then(parse_route) else {
        return ctx.error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Resource not found for the segment '{path}'."),
        );
    };
    let now = shared.clock.now();
    let mut world = shared.world.lock().expect("world lock poisoned");
    let directory = &mut world.directory;
    let tenant = claims.tid.as_str();
    let host = req.host();
    match (&req.method, route) {
        (&Method::GET, Route::Applications) => {
            let filter = req.query("$filter").unwrap_or_default();
            let Some(app_id) = parse_filter_eq(&filter, "appId") else {
                return ctx.error(
                    StatusCode::BAD_REQUEST,
                    "Request_UnsupportedQuery",
                    &format!("Unsupported query: {filter}"),
                );
            };
            let found: Vec<Value> = find_app(directory, tenant, &AppKey::AppId(app_id))
                .map(|app| application_json(&host, app, false))
                .into_iter()
                .collect();
            ctx.ok(
                StatusCode::OK,
                json!({ "@odata.context": format!("https://{host}/v1.0/$metadata#applications"), "value": found }),
            )
        }
        (&Method::GET, Route::Application(key)) => match find_app(directory, tenant, &key) {
            Some(app) => ctx.ok(StatusCode::OK, application_json(&host, app, true)),
            None => ctx.not_found(&key_text(&key)),
        },
        (method, Route::Credentials(key)) => {
            let Some(object_id) = find_app(directory, tenant, &key).map(|a| a.object_id.clone()) else {
                return ctx.not_found(&key_text(&key));
            };
            match *method {
                Method::GET => {
                    let app = directory.application_by_object_id(&object_id).expect("found above");
                    let value: Vec<Value> = app.federated_identity_credentials.iter().map(credential_json).collect();
                    let context = format!(
                        "https://{host}/v1.0/$metadata#applications('{object_id}')/federatedIdentityCredentials"
                    );
                    ctx.ok(StatusCode::OK, json!({ "@odata.context": context, "value": value }))
                }
                Method::POST => {
                    let created =
                        body_json(&req).and_then(|body| credential_from_json(&body, None)).and_then(|credential| {
                            directory.add_federated_credential(&object_id, credential, now).cloned()
                        });
                    match created {
                        Ok(credential) => ctx.ok(StatusCode::CREATED, entity_json(&host, &object_id, &credential)),
                        Err(error) => ctx.directory_error(&error),
                    }
                }
                _ => ctx.method_not_allowed(),
            }
        }
        (method, Route::Credential(key, credential_key)) => {
            let Some(object_id) = find_app(directory, tenant, &key).map(|a| a.object_id.clone()) else {
                return ctx.not_found(&key_text(&key));
            };
            credential_call(&ctx, directory, &req, method, &object_id, &credential_key, now)
        }
        (&Method::GET, Route::ServicePrincipalByAppId(app_id)) => match directory.service_principal(tenant, &app_id) {
            Some(sp) => {
                let body = service_principal_json(&host, directory, sp);
                ctx.ok(StatusCode::OK, body)
            }
            None => ctx.not_found(&format!("appId='{app_id}'")),
        },
        (&Method::GET, Route::ServicePrincipals) => {
            let filter = req.query("$filter").unwrap_or_default();
            let Some(app_id) = parse_filter_eq(&filter, "appId") else {
                return ctx.error(
                    StatusCode::BAD_REQUEST,
                    "Request_UnsupportedQuery",
                    &format!("Unsupported query: {filter}"),
                );
            };
            let value: Vec<Value> = directory
                .service_principal(tenant, &app_id)
                .map(|sp| service_principal_json(&host, directory, sp))
                .into_iter()
                .collect();
            ctx.ok(
                StatusCode::OK,
                json!({ "@odata.context": format!("https://{host}/v1.0/$metadata#servicePrincipals"), "value": value }),
            )
        }
        (&Method::POST, Route::ServicePrincipals) => {
            let app_id = match body_json(&req).and_then(|body| required_str(&body, "appId")) {
                Ok(app_id) => app_id,
                Err(error) => return ctx.directory_error(&error),
            };
            match directory.create_service_principal(tenant, &app_id, now).cloned() {
                Ok(sp) => {
                    let body = service_principal_json(&host, directory, &sp);
                    ctx.ok(StatusCode::CREATED, body)
                }
                Err(error) => ctx.directory_error(&error),
            }
        }
        _ => ctx.method_not_allowed(),
    }
}

/// `GET|PATCH|DELETE …/federatedIdentityCredentials/{id or name}` and `…(name='{name}')`, at `now`.
fn credential_call(
    ctx: &Ctx<'_>,
    directory: &mut Directory,
    req: &Req,
    method: &Method,
    object_id: &str,
    key: &str,
    now: time::OffsetDateTime,
) -> Response {
    let host = req.host();
    let existing = directory
        .application_by_object_id(object_id)
        .and_then(|app| {
            app.federated_identity_credentials
                .iter()
                .find(|c| c.id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(key)))
                .or_else(|| app.federated_identity_credentials.iter().find(|c| c.name.eq_ignore_ascii_case(key)))
        })
        .cloned();
    match (method, existing) {
        (&Method::GET, Some(credential)) => ctx.ok(StatusCode::OK, entity_json(&host, object_id, &credential)),
        (&Method::DELETE, Some(_)) => match directory.remove_federated_credential(object_id, key, now) {
            Ok(()) => ctx.no_content(),
            Err(error) => ctx.directory_error(&error),
        },
        (&Method::PATCH, Some(_)) => {
            let updated =
                body_json(req).and_then(|body| directory.update_federated_credential(object_id, key, &body, now));
            match updated {
                Ok(()) => ctx.no_content(),
                Err(error) => ctx.directory_error(&error),
            }
        }
        (&Method::PATCH, None) if prefers_create(req) => {
            let created = body_json(req)
                .and_then(|body| credential_from_json(&body, Some(key)))
                .and_then(|credential| directory.add_federated_credential(object_id, credential, now).cloned());
            match created {
                Ok(credential) => ctx.ok(StatusCode::CREATED, entity_json(&host, object_id, &credential)),
                Err(error) => ctx.directory_error(&error),
            }
        }
        (&Method::GET | &Method::PATCH | &Method::DELETE, None) => ctx.not_found(key),
        _ => ctx.method_not_allowed(),
    }
}

fn prefers_create(req: &Req) -> bool {
    req.headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("create-if-missing"))
}

/// A valid emulator token whose audience is Graph (of the request's cloud) from a known tenant.
fn authenticate(shared: &Shared, cloud: Cloud, req: &Req) -> Result<Claims, String> {
    let token = req.bearer().filter(|t| !t.is_empty()).ok_or("Access token is empty.")?;
    let claims = shared.tokens.verify(token).map_err(|e| format!("Access token validation failure. {e}"))?;
    let graph = format!("https://{}", cloud.graph_host());
    if !audience_matches(&claims.aud, &graph) && claims.aud != GRAPH_APP_ID {
        return Err("Access token validation failure. Invalid audience.".to_owned());
    }
    let world = shared.world.lock().expect("world lock poisoned");
    if !world.directory.tenant_exists(&claims.tid) {
        return Err("Access token validation failure. Unknown tenant.".to_owned());
    }
    Ok(claims)
}

fn parse_route(rest: &str) -> Option<Route> {
    let rest = rest.trim_end_matches('/');
    if let Some(after) = rest.strip_prefix("servicePrincipals") {
        if after.is_empty() {
            return Some(Route::ServicePrincipals);
        }
        return alternate_key(after, "appId")
            .filter(|(_, tail)| tail.is_empty())
            .map(|(id, _)| Route::ServicePrincipalByAppId(id));
    }
    let after = rest.strip_prefix("applications")?;
    if after.is_empty() {
        return Some(Route::Applications);
    }
    let (key, tail) = if let Some((app_id, tail)) = alternate_key(after, "appId") {
        (AppKey::AppId(app_id), tail)
    } else {
        let after = after.strip_prefix('/')?;
        let (id, tail) = after.split_at(after.find('/').unwrap_or(after.len()));
        (AppKey::ObjectId(id.to_owned()), tail)
    };
    if tail.is_empty() {
        return Some(Route::Application(key));
    }
    let tail = tail.strip_prefix("/federatedIdentityCredentials")?;
    if tail.is_empty() {
        return Some(Route::Credentials(key));
    }
    if let Some((name, rest)) = alternate_key(tail, "name") {
        return rest.is_empty().then_some(Route::Credential(key, name));
    }
    let id = tail.strip_prefix('/').filter(|id| !id.is_empty() && !id.contains('/'))?;
    Some(Route::Credential(key, id.to_owned()))
}

/// `(appId='x')rest` → `("x", rest)`; OData doubles a quote inside a literal (`''`).
fn alternate_key<'a>(segment: &'a str, property: &str) -> Option<(String, &'a str)> {
    let quoted = segment.strip_prefix('(')?.strip_prefix(property)?.strip_prefix("='")?;
    let mut value = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
            continue;
        }
        if chars.peek().is_some_and(|&(_, next)| next == '\'') {
            chars.next();
            value.push('\'');
            continue;
        }
        return quoted[i + 1..].strip_prefix(')').map(|rest| (value, rest));
    }
    None
}

/// `appId eq 'x'` → `x`.
fn parse_filter_eq(filter: &str, property: &str) -> Option<String> {
    let rest = filter.trim().strip_prefix(property)?.trim_start().strip_prefix("eq")?.trim();
    rest.strip_prefix('\'')?.strip_suffix('\'').map(str::to_owned)
}

/// Applications are only visible from their home tenant, as in Entra.
fn find_app<'d>(directory: &'d Directory, tenant: &str, key: &AppKey) -> Option<&'d Application> {
    let app = match key {
        AppKey::ObjectId(id) => directory.application_by_object_id(id),
        AppKey::AppId(id) => directory.application_by_app_id(id),
    }?;
    app.tenant_id.eq_ignore_ascii_case(tenant).then_some(app)
}

fn key_text(key: &AppKey) -> String {
    match key {
        AppKey::ObjectId(id) => id.clone(),
        AppKey::AppId(id) => format!("appId='{id}'"),
    }
}

fn body_json(req: &Req) -> Result<Value, DirectoryError> {
    serde_json::from_slice(&req.body)
        .map_err(|e| DirectoryError::Invalid(format!("Unable to read JSON request payload: {e}")))
}

fn required_str(body: &Value, field: &str) -> Result<String, DirectoryError> {
    body.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DirectoryError::Invalid(format!("Property '{field}' is required.")))
}

/// A credential from a request body; `url_name` is the name from a `(name='…')` upsert URL.
fn credential_from_json(body: &Value, url_name: Option<&str>) -> Result<FederatedIdentityCredential, DirectoryError> {
    let name = match (url_name, body.get("name").and_then(Value::as_str)) {
        (Some(url), Some(body)) if url != body => {
            return Err(DirectoryError::Invalid("The name in the body does not match the name in the URL.".to_owned()));
        }
        (Some(url), _) => url.to_owned(),
        (None, _) => required_str(body, "name")?,
    };
    let audiences = body
        .get("audiences")
        .cloned()
        .map(serde_json::from_value::<Vec<String>>)
        .transpose()
        .map_err(|_| DirectoryError::Invalid("Property 'audiences' must be an array of strings.".to_owned()))?
        .ok_or_else(|| DirectoryError::Invalid("Property 'audiences' is required.".to_owned()))?;
    Ok(FederatedIdentityCredential {
        id: None,
        name,
        issuer: required_str(body, "issuer")?,
        subject: required_str(body, "subject")?,
        audiences,
        description: body.get("description").and_then(Value::as_str).map(str::to_owned),
    })
}

fn application_json(host: &str, app: &Application, with_context: bool) -> Value {
    let mut body = json!({
        "id": app.object_id,
        "appId": app.app_id,
        "displayName": app.display_name,
        "signInAudience": app.sign_in_audience,
        "publisherDomain": null,
        "uniqueName": null,
    });
    if with_context {
        body["@odata.context"] = json!(format!("https://{host}/v1.0/$metadata#applications/$entity"));
    }
    body
}

fn credential_json(credential: &FederatedIdentityCredential) -> Value {
    json!({
        "id": credential.id,
        "name": credential.name,
        "issuer": credential.issuer,
        "subject": credential.subject,
        "description": credential.description,
        "audiences": credential.audiences,
    })
}

fn entity_json(host: &str, object_id: &str, credential: &FederatedIdentityCredential) -> Value {
    let mut body = credential_json(credential);
    body["@odata.context"] = json!(format!(
        "https://{host}/v1.0/$metadata#applications('{object_id}')/federatedIdentityCredentials/$entity"
    ));
    body
}

fn service_principal_json(host: &str, directory: &Directory, sp: &ServicePrincipal) -> Value {
    let app = directory.application_by_app_id(&sp.app_id);
    json!({
        "@odata.context": format!("https://{host}/v1.0/$metadata#servicePrincipals/$entity"),
        "id": sp.id,
        "appId": sp.app_id,
        "displayName": app.map(|a| a.display_name.clone()),
        "accountEnabled": sp.account_enabled,
        "appOwnerOrganizationId": app.map(|a| a.tenant_id.clone()),
        "servicePrincipalType": "Application",
        "signInAudience": app.map(|a| a.sign_in_audience.clone()),
    })
}

/// Per-request response helpers: Graph echoes `client-request-id` and stamps errors with the emulator clock.
struct Ctx<'a> {
    shared: &'a Shared,
    request_id: String,
    client_request_id: String,
}

impl Ctx<'_> {
    fn ok(&self, status: StatusCode, body: Value) -> Response {
        self.decorate((status, Json(body)).into_response())
    }

    fn no_content(&self) -> Response {
        self.decorate(StatusCode::NO_CONTENT.into_response())
    }

    fn not_found(&self, key: &str) -> Response {
        let message = format!(
            "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
        );
        self.error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", &message)
    }

    fn method_not_allowed(&self) -> Response {
        self.error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    }

    fn directory_error(&self, error: &DirectoryError) -> Response {
        let (status, code) = match error {
            DirectoryError::NotFound(_) => (StatusCode::NOT_FOUND, "Request_ResourceNotFound"),
            DirectoryError::Conflict(_) => (StatusCode::CONFLICT, "Request_MultipleObjectsWithSameKeyValue"),
            DirectoryError::Invalid(_) => (StatusCode::BAD_REQUEST, "Request_BadRequest"),
        };
        self.error(status, code, &error.to_string())
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        let now = self.shared.clock.now();
        let date = now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339).unwrap_or_default();
        let body = error_body(code, message, date, &self.request_id, &self.client_request_id);
        self.decorate((status, Json(body)).into_response())
    }

    fn decorate(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        for (name, value) in [("request-id", &self.request_id), ("client-request-id", &self.client_request_id)] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// Graph's error shape, shared with the fault injector.
pub fn error_body(code: &str, message: &str, date: String, request_id: &str, client_request_id: &str) -> Value {
    json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": { "date": date, "request-id": request_id, "client-request-id": client_request_id },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(parse_route("applications"), Some(Route::Applications));
        assert_eq!(parse_route("applications/abc"), Some(Route::Application(AppKey::ObjectId("abc".into()))));
        assert_eq!(parse_route("applications(appId='x-1')"), Some(Route::Application(AppKey::AppId("x-1".into()))));
        assert_eq!(
            parse_route("applications(appId='x')/federatedIdentityCredentials"),
            Some(Route::Credentials(AppKey::AppId("x".into())))
        );
        assert_eq!(
            parse_route("applications/o/federatedIdentityCredentials(name='n1')"),
            Some(Route::Credential(AppKey::ObjectId("o".into()), "n1".into()))
        );
        assert_eq!(
            parse_route("applications/o/federatedIdentityCredentials/f1"),
            Some(Route::Credential(AppKey::ObjectId("o".into()), "f1".into()))
        );
        assert_eq!(parse_route("servicePrincipals(appId='a')"), Some(Route::ServicePrincipalByAppId("a".into())));
        assert_eq!(
            parse_route("applications/o/federatedIdentityCredentials(name='it''s')"),
            Some(Route::Credential(AppKey::ObjectId("o".into()), "it's".into()))
        );
        assert_eq!(parse_route("applications(appId='x'"), None);
        assert_eq!(parse_route("users"), None);
        assert_eq!(parse_route("applications/o/owners"), None);
    }

    #[test]
    fn filters_parse() {
        assert_eq!(parse_filter_eq("appId eq 'abc'", "appId"), Some("abc".into()));
        assert_eq!(parse_filter_eq("displayName eq 'abc'", "appId"), None);
    }
}
