//! The REST data plane of `{namespace}.servicebus.windows.net`: send (single and batch), peek-lock,
//! receive-and-delete, complete, unlock and renew, with SAS or bearer authorisation and XML error bodies.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use uuid::Uuid;

use crate::entra::{TokenError, audience_matches};
use crate::http::Req;
use crate::state::Shared;

use super::bus::NamespaceAuth;
use super::model::BusError;
use super::{sas, wire};

/// The audience of Entra tokens for Service Bus, in every cloud.
pub const AUDIENCE: &str = "https://servicebus.azure.net";
/// How long a receive waits when the request names no `timeout`.
const DEFAULT_RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);
const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.servicebus.json";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operation {
    Send,
    PeekLock,
    ReceiveAndDelete,
    Complete { id: String, token: String },
    Unlock { id: String, token: String },
    Renew { id: String, token: String },
}

impl Operation {
    fn right(&self) -> &'static str {
        if *self == Self::Send { "Send" } else { "Listen" }
    }
}

/// Splits the path into the entity (`orders`, `events/subscriptions/all/$DeadLetterQueue`) and the operation.
fn parse(method: &Method, path: &str) -> Option<(String, Operation)> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
        .collect();
    let n = segments.len();
    let is = |index: usize, word: &str| segments.get(index).is_some_and(|s| s.eq_ignore_ascii_case(word));
    let entity = |end: usize| (end > 0).then(|| segments[..end].join("/"));
    if n >= 2 && is(n - 1, "messages") && *method == Method::POST {
        return Some((entity(n - 1)?, Operation::Send));
    }
    if n >= 3 && is(n - 2, "messages") && is(n - 1, "head") {
        let operation = match *method {
            Method::POST => Operation::PeekLock,
            Method::DELETE => Operation::ReceiveAndDelete,
            _ => return None,
        };
        return Some((entity(n - 2)?, operation));
    }
    if n >= 4 && is(n - 3, "messages") {
        let (id, token) = (segments[n - 2].clone(), segments[n - 1].clone());
        let operation = match *method {
            Method::DELETE => Operation::Complete { id, token },
            Method::PUT => Operation::Unlock { id, token },
            Method::POST => Operation::Renew { id, token },
            _ => return None,
        };
        return Some((entity(n - 3)?, operation));
    }
    None
}

/// REST data plane for `{namespace}.servicebus.windows.net`.
pub async fn handle(shared: &Shared, namespace: &str, req: Req) -> Response {
    // A namespace the scenario does not have does not resolve in DNS: the client sees a failed connection.
    let Some(auth) = shared.bus.namespace_auth(namespace) else { return crate::faults::reset_response() };
    let errors = ErrorContext { host: req.host(), path: req.url.path().to_owned() };
    if req.method == Method::GET {
        // The management API's entity description (runtime counts); it needs the Manage right.
        if let Err((status, detail)) = authorize(shared, namespace, &auth, &req, "Manage") {
            return errors.respond(status, &detail);
        }
        return super::management::entity(shared, namespace, &req);
    }
    let Some((entity, operation)) = parse(&req.method, req.url.path()) else {
        return errors.respond(400, "The request is not a supported Service Bus messaging operation.");
    };
    if let Err((status, detail)) = authorize(shared, namespace, &auth, &req, operation.right()) {
        return errors.respond(status, &detail);
    }
    let bus = &shared.bus;
    let result = match operation {
        Operation::Send => send(shared, namespace, &entity, &req).map(|()| StatusCode::CREATED.into_response()),
        Operation::PeekLock | Operation::ReceiveAndDelete => {
            let wait = match req.query("timeout").map(|t| t.parse::<u64>()) {
                None => DEFAULT_RECEIVE_TIMEOUT,
                Some(Ok(seconds)) => Duration::from_secs(seconds),
                Some(Err(_)) => return errors.respond(400, "The timeout query parameter must be a number of seconds."),
            };
            if operation == Operation::PeekLock {
                bus.receive(namespace, &entity, wait).await.map(|delivered| match delivered {
                    Some(delivered) => {
                        let lock = Some((delivered.lock_token, delivered.locked_until));
                        let mut response = message_response(StatusCode::CREATED, &delivered.message, lock);
                        let location = lock_location(&req, delivered.message.sequence_number, delivered.lock_token);
                        if let Ok(value) = location.parse() {
                            response.headers_mut().insert(header::LOCATION, value);
                        }
                        response
                    }
                    None => StatusCode::NO_CONTENT.into_response(),
                })
            } else {
                bus.receive_and_delete(namespace, &entity, wait).await.map(|message| match message {
                    Some(message) => message_response(StatusCode::OK, &message, None),
                    None => StatusCode::NO_CONTENT.into_response(),
                })
            }
        }
        Operation::Complete { id, token } | Operation::Unlock { id, token } | Operation::Renew { id, token } => {
            let kind = match parse(&req.method, req.url.path()) {
                Some((_, Operation::Complete { .. })) => Settle::Complete,
                Some((_, Operation::Unlock { .. })) => Settle::Unlock,
                _ => Settle::Renew,
            };
            settle(shared, namespace, &entity, &id, &token, kind)
        }
    };
    result.unwrap_or_else(|error| errors.respond(error.status(), &error.to_string()))
}

#[derive(Debug, Clone, Copy)]
enum Settle {
    Complete,
    Unlock,
    Renew,
}

fn settle(shared: &Shared, ns: &str, entity: &str, id: &str, token: &str, kind: Settle) -> Result<Response, BusError> {
    let token: Uuid =
        token.parse().map_err(|_| BusError::BadRequest(format!("The lock token '{token}' is not a GUID.")))?;
    let bus = &shared.bus;
    let Some((sequence, message_id)) = bus.lock_owner(ns, entity, token)? else { return Err(BusError::LockLost) };
    let names_it = id.parse::<i64>().is_ok_and(|n| n == sequence) || message_id.as_deref() == Some(id);
    if !names_it {
        return Err(BusError::MessageNotFound);
    }
    match kind {
        Settle::Complete => bus.complete(ns, entity, token)?,
        Settle::Unlock => bus.abandon(ns, entity, token)?,
        Settle::Renew => {
            let until = bus.renew_lock(ns, entity, token)?;
            let properties = serde_json::json!({ "LockedUntilUtc": wire::format_date(until) });
            return Ok((StatusCode::OK, [("brokerproperties", properties.to_string())]).into_response());
        }
    }
    Ok(StatusCode::OK.into_response())
}

fn send(shared: &Shared, ns: &str, entity: &str, req: &Req) -> Result<(), BusError> {
    let is_batch =
        req.header("content-type").is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with(BATCH_CONTENT_TYPE));
    let messages = if is_batch {
        wire::messages_from_batch(&req.body).map_err(BusError::BadRequest)?
    } else {
        vec![wire::message_from_request(&req.headers, &req.body).map_err(BusError::BadRequest)?]
    };
    for message in messages {
        shared.bus.send(ns, entity, message)?;
    }
    Ok(())
}

fn message_response(
    status: StatusCode,
    message: &super::Message,
    lock: Option<(Uuid, time::OffsetDateTime)>,
) -> Response {
    let mut response = Response::new(Body::from(message.body.clone()));
    *response.status_mut() = status;
    *response.headers_mut() = wire::response_headers(message, lock);
    response
}

/// `https://{host}/{entity}/messages/{sequence}/{lockToken}`, built from the request's own path.
fn lock_location(req: &Req, sequence: i64, token: Uuid) -> String {
    let path = req.url.path();
    let entity_path = path.to_ascii_lowercase().rfind("/messages/").map_or(path, |index| &path[..index]);
    format!("https://{}{entity_path}/messages/{sequence}/{token}", req.host())
}

/// Checks `Authorization`: a SAS token (unless local auth is off) or an emulator-issued Entra token.
fn authorize(shared: &Shared, ns: &str, auth: &NamespaceAuth, req: &Req, right: &str) -> Result<(), (u16, String)> {
    let Some(value) = req.header("authorization") else {
        return Err((401, "MissingToken: The authorization header was not found.".into()));
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("SharedAccessSignature") {
        if !auth.local_auth {
            return Err((
                403,
                "LocalAuthDisabled: Authorization failed because SAS authentication has been disabled for the namespace."
                    .into(),
            ));
        }
        let now = shared.clock.now().unix_timestamp();
        return sas::verify(token, &auth.sas_keys, req.url.as_str(), right, now).map_err(|r| (r.status, r.detail));
    }
    if scheme.eq_ignore_ascii_case("Bearer") {
        let claims = shared.tokens.verify(token.trim()).map_err(|error| match error {
            TokenError::Expired { exp, .. } => {
                (401, format!("ExpiredToken: The token is expired. Expiration time: '{exp}'."))
            }
            other => (401, format!("InvalidSignature: {other}.")),
        })?;
        let namespace_audience = format!("https://{ns}.{}", shared.bus.suffix());
        if !(audience_matches(&claims.aud, AUDIENCE) || audience_matches(&claims.aud, &namespace_audience)) {
            return Err((401, format!("InvalidAudience: The token has an invalid audience '{}'.", claims.aud)));
        }
        if !claims.tid.eq_ignore_ascii_case(&auth.tenant_id) {
            return Err((401, format!("InvalidIssuer: Token issuer is invalid: tenant '{}'.", claims.tid)));
        }
        return Ok(());
    }
    Err((401, "InvalidToken: The authorization header must be a SharedAccessSignature or Bearer token.".into()))
}

/// Where an error happened, for the `TrackingId`/`SystemTracker` tail Service Bus appends to every detail.
struct ErrorContext {
    host: String,
    path: String,
}

impl ErrorContext {
    /// `<Error><Code>…</Code><Detail>…</Detail></Error>`, as Service Bus answers errors.
    fn respond(&self, status: u16, detail: &str) -> Response {
        let tracker = format!(
            " TrackingId:{}_G0, SystemTracker:{}{}, Timestamp:{}",
            Uuid::new_v4(),
            self.host,
            self.path,
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
        );
        let body = format!(
            "<Error><Code>{status}</Code><Detail>{}</Detail></Error>",
            xml_escape(&format!("{detail}{tracker}"))
        );
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [(header::CONTENT_TYPE, "application/xml; charset=utf-8")], body).into_response()
    }
}

/// Escapes element text (quotes need no escaping outside attributes, and Service Bus leaves them as they are).
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_from_paths() {
        let op = |method: Method, path: &str| parse(&method, path);
        assert_eq!(op(Method::POST, "/orders/messages"), Some(("orders".into(), Operation::Send)));
        assert_eq!(
            op(Method::POST, "/events/subscriptions/all/%24DeadLetterQueue/messages/head"),
            Some(("events/subscriptions/all/$DeadLetterQueue".into(), Operation::PeekLock))
        );
        assert_eq!(op(Method::DELETE, "/orders/messages/head"), Some(("orders".into(), Operation::ReceiveAndDelete)));
        assert_eq!(
            op(Method::PUT, "/orders/messages/42/abc"),
            Some(("orders".into(), Operation::Unlock { id: "42".into(), token: "abc".into() }))
        );
        assert_eq!(op(Method::GET, "/orders/messages/head"), None);
        assert_eq!(op(Method::POST, "/messages"), None);
    }
}
