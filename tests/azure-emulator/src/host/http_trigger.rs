//! HTTP-triggered functions on the emulator port: route and method matching, function keys (`authLevel`), the
//! `Data.req` request object (reference §5.3) and the translation of `Outputs.{res}` back into an HTTP response.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use uuid::Uuid;

use super::config::{Binding, FunctionConfig};
use super::invoke::{self, Outcome};
use super::json::{Json, quote};
use super::result::Outputs;
use super::runtime::Runtime;
use crate::http::Req;

pub async fn serve(runtime: &Runtime, req: Req) -> Response {
    let path = req.url.path().to_owned();
    let prefix = &runtime.config.host.route_prefix;
    let relative = if prefix.is_empty() {
        path.trim_start_matches('/')
    } else {
        match path.strip_prefix(&format!("/{prefix}")) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
            _ => return not_found(),
        }
    };
    let Some((function, trigger, params)) = find(runtime, relative) else { return not_found() };
    if !method_allowed(trigger, req.method.as_str()) {
        return not_found();
    }
    if !authorized(runtime, trigger, &req) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let invocation_id = Uuid::new_v4();
    let now = runtime.shared.upgrade().map(|shared| shared.clock.now()).unwrap_or_else(time::OffsetDateTime::now_utc);
    let body = request_body(function, trigger, &req, &params, invocation_id, now);
    let outcome = invoke::invoke(
        &runtime.client,
        &runtime.worker,
        runtime.hold,
        &function.name,
        invocation_id,
        body,
        runtime.config.host.function_timeout,
    )
    .await;
    match outcome {
        Outcome::Success(answer) => {
            runtime.log_answer(&function.name, &answer);
            match runtime.send_service_bus_outputs(function, &answer, invocation_id).await {
                Ok(outputs) => {
                    runtime.record_ok();
                    http_response(function, &outputs)
                }
                Err(message) => {
                    runtime.record_failure(&function.name, &message);
                    (StatusCode::INTERNAL_SERVER_ERROR, "function invocation failed").into_response()
                }
            }
        }
        Outcome::Failure(message) => {
            runtime.record_failure(&function.name, &message);
            (StatusCode::INTERNAL_SERVER_ERROR, "function invocation failed").into_response()
        }
        Outcome::TimedOut => {
            runtime.record_timeout(&function.name);
            (StatusCode::INTERNAL_SERVER_ERROR, "function timed out").into_response()
        }
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no HTTP-triggered function matches this route").into_response()
}

/// Route parameters captured from the path, in template order.
type RouteParams = Vec<(String, String)>;

/// The first enabled HTTP function whose route template matches, with the captured route parameters.
fn find<'a>(runtime: &'a Runtime, path: &str) -> Option<(&'a FunctionConfig, &'a Binding, RouteParams)> {
    runtime.config.functions.iter().filter(|f| !f.disabled).find_map(|function| {
        let trigger = function.trigger().filter(|t| t.kind == "httptrigger")?;
        let template = trigger.str("route").unwrap_or(&function.name);
        match_route(template, path).map(|params| (function, trigger, params))
    })
}

/// ASP.NET-style templates: literal segments (case-insensitive), `{name}`, `{name?}`, `{name:constraint}`, `{*rest}`.
pub fn match_route(template: &str, path: &str) -> Option<RouteParams> {
    let template: Vec<&str> = template.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let mut params = Vec::new();
    for (i, part) in template.iter().enumerate() {
        if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if let Some(rest) = inner.strip_prefix('*') {
                params.push((rest.to_owned(), segments.get(i..).map(|s| s.join("/")).unwrap_or_default()));
                return Some(params);
            }
            let optional = inner.ends_with('?');
            let name = inner.trim_end_matches('?').split(':').next().unwrap_or_default();
            match segments.get(i) {
                Some(value) => params.push((name.to_owned(), decode(value))),
                None if optional => {}
                None => return None,
            }
        } else if !segments.get(i).is_some_and(|s| s.eq_ignore_ascii_case(part)) {
            return None;
        }
    }
    (segments.len() <= template.len()).then_some(params)
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn method_allowed(trigger: &Binding, method: &str) -> bool {
    match trigger.raw.get("methods").and_then(|m| m.as_array()) {
        Some(methods) if !methods.is_empty() => {
            methods.iter().filter_map(|m| m.as_str()).any(|m| m.eq_ignore_ascii_case(method))
        }
        _ => true,
    }
}

/// `authLevel` (default `function`): a function key or the master key; `admin` needs the master key.
fn authorized(runtime: &Runtime, trigger: &Binding, req: &Req) -> bool {
    let level = trigger.str("authLevel").unwrap_or("function").to_ascii_lowercase();
    if level == "anonymous" {
        return true;
    }
    let presented = req.header("x-functions-key").map(str::to_owned).or_else(|| req.query("code"));
    let keys = &runtime.keys;
    match presented.as_deref() {
        Some(key) if key == keys.master => true,
        Some(key) => level != "admin" && key == keys.function,
        None => false,
    }
}

/// `{"Data":{"req":{Url,Method,Query,Headers,Params,Identities,Body}},"Metadata":{…}}`.
fn request_body(
    function: &FunctionConfig,
    trigger: &Binding,
    req: &Req,
    params: &[(String, String)],
    invocation_id: Uuid,
    now: time::OffsetDateTime,
) -> String {
    // The host's `GetQueryCollectionAsDictionary`: one entry per name (ASP.NET's query collection ignores case; the
    // first spelling names it), a repeated name's values joined with commas (`StringValues.ToString()`).
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in req.url.query_pairs() {
        match grouped.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some((_, values)) => values.push(value.into_owned()),
            None => grouped.push((name.into_owned(), vec![value.into_owned()])),
        }
    }
    let query: Vec<(String, Json)> = grouped.into_iter().map(|(k, v)| (k, Json::str(v.join(",")))).collect();
    let mut headers: Vec<(String, Json)> = Vec::new();
    for name in req.headers.keys() {
        let values =
            req.headers.get_all(name).iter().map(|v| Json::str(String::from_utf8_lossy(v.as_bytes()))).collect();
        headers.push((title_case(name.as_str()), Json::Array(values)));
    }
    let params_json = Json::Object(params.iter().map(|(k, v)| (k.clone(), Json::str(v))).collect());
    let mut request = vec![
        ("Url".to_owned(), Json::str(req.url.as_str())),
        ("Method".to_owned(), Json::str(req.method.as_str())),
        ("Query".to_owned(), Json::str(Json::Object(query.clone()).compact())),
        ("Headers".to_owned(), Json::Object(headers.clone())),
        ("Params".to_owned(), params_json),
        ("Identities".to_owned(), Json::Array(Vec::new())),
    ];
    if !req.body.is_empty() {
        let content_type = req.header("content-type").unwrap_or_default().to_ascii_lowercase();
        let body = if content_type.starts_with("application/octet-stream") || content_type.starts_with("multipart/") {
            base64::engine::general_purpose::STANDARD.encode(&req.body)
        } else {
            String::from_utf8_lossy(&req.body).into_owned()
        };
        request.push(("Body".to_owned(), Json::String(body)));
    }
    let mut metadata: Vec<(String, Json)> = params.iter().map(|(k, v)| (k.clone(), Json::str(quote(v)))).collect();
    metadata.push(("Query".into(), Json::Object(query)));
    metadata.push(("Headers".into(), Json::Object(headers)));
    metadata.push((
        "sys".into(),
        Json::Object(vec![
            ("MethodName".into(), Json::str(&function.name)),
            ("UtcNow".into(), Json::str(super::payload::utc_now_text(now))),
            ("RandGuid".into(), Json::str(invocation_id.to_string())),
        ]),
    ));
    Json::Object(vec![
        ("Data".into(), Json::Object(vec![(trigger.name.clone(), Json::Object(request))])),
        ("Metadata".into(), Json::Object(metadata)),
    ])
    .compact()
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The bound `http` output: `{statusCode, body, headers}` (what `Outputs.{res}` deserialised to), or for `$return` a
/// bare value as the body. No response bound is the host's `OkResult`: 200 with no body.
fn http_response(function: &FunctionConfig, outputs: &Outputs) -> Response {
    let Some(binding) = function.outputs().find(|b| b.kind == "http") else {
        return StatusCode::OK.into_response();
    };
    let Some(value) = outputs.get(&binding.name) else {
        return StatusCode::OK.into_response();
    };
    let (status, body, headers) = match value {
        Json::Object(_) => (
            value.get_ignore_case("statusCode").or_else(|| value.get_ignore_case("status")),
            value.get_ignore_case("body"),
            value.get_ignore_case("headers"),
        ),
        other => (None, Some(other), None),
    };
    let status = status
        .and_then(|s| match s {
            Json::Number(n) => n.as_u64().map(|n| n.to_string()),
            Json::String(s) => Some(s.clone()),
            _ => None,
        })
        .and_then(|s| s.trim().parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let (bytes, implied_type) = match body {
        None | Some(Json::Null) => (Vec::new(), None),
        Some(Json::String(text)) => (text.clone().into_bytes(), Some("text/plain; charset=utf-8")),
        Some(other) => (other.compact().into_bytes(), Some("application/json; charset=utf-8")),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(Json::Object(members)) = headers {
        for (name, value) in members {
            let text = match value {
                Json::String(s) => s.clone(),
                other => other.compact(),
            };
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(text)) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    if let (Some(implied), false) = (implied_type, response.headers().contains_key("content-type")) {
        response.headers_mut().insert("content-type", HeaderValue::from_static(implied));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(match_route("order", "Order"), Some(vec![]));
        assert_eq!(match_route("items/{id}", "items/42"), Some(vec![("id".into(), "42".into())]));
        assert_eq!(match_route("items/{id?}", "items"), Some(vec![]));
        assert_eq!(match_route("items/{id:int}", "items"), None);
        assert_eq!(match_route("files/{*path}", "files/a/b"), Some(vec![("path".into(), "a/b".into())]));
        assert_eq!(match_route("order", "order/extra"), None);
    }
}
