//! Turns an Azure error response into an [`AzureError`], and reads the service's requested wait from its headers.
//!
//! The body parsing is a minimal stand-in with the signature of `crate::error_classify::parse_error_body`, which owns
//! the full rules; it understands the three shapes: ARM/Graph `{"error":{"code","message"}}`, Key Vault
//! `{"error":{…,"innererror":{"code"}}}` and Entra `{"error","error_description","error_codes":[…]}`.

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::error::{AzureError, AzureService};

pub(crate) fn parse_error_body(
    service: AzureService,
    operation: &'static str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> AzureError {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let (code, inner_code, message) = match json.get("error") {
        Some(serde_json::Value::Object(error)) => (
            error.get("code").and_then(text),
            error.get("innererror").and_then(|i| i.get("code")).and_then(text),
            error.get("message").and_then(text),
        ),
        Some(serde_json::Value::String(code)) => (
            Some(code.clone()),
            json.get("error_codes")
                .and_then(|c| c.as_array())
                .and_then(|c| c.first())
                .and_then(serde_json::Value::as_i64)
                .map(|n| format!("AADSTS{n}")),
            json.get("error_description").and_then(text),
        ),
        _ => (None, None, None),
    };
    let message = message.unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    AzureError { service, operation, status, code, inner_code, message, retry_after }
}

/// `x-ms-retry-after-ms`, `retry-after-ms` (milliseconds) or `Retry-After` (seconds or an HTTP date), in that order.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = header(name).and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = date - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_shapes() {
        let arm =
            parse_error_body(AzureService::Arm, "x", 409, None, br#"{"error":{"code":"Conflict","message":"m"}}"#);
        assert_eq!((arm.code.as_deref(), arm.message.as_str()), (Some("Conflict"), "m"));
        let kv = parse_error_body(
            AzureService::KeyVault,
            "x",
            403,
            None,
            br#"{"error":{"code":"Forbidden","message":"m","innererror":{"code":"ForbiddenByRbac"}}}"#,
        );
        assert_eq!(kv.inner_code.as_deref(), Some("ForbiddenByRbac"));
        let entra = parse_error_body(
            AzureService::Entra,
            "x",
            400,
            None,
            br#"{"error":"unauthorized_client","error_description":"AADSTS700016: nope","error_codes":[700016]}"#,
        );
        assert_eq!(
            (entra.code.as_deref(), entra.inner_code.as_deref()),
            (Some("unauthorized_client"), Some("AADSTS700016"))
        );
    }

    #[test]
    fn reads_every_retry_after_form() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        headers.insert("x-ms-retry-after-ms", "20".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(20)));

        let mut dated = HeaderMap::new();
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let http_date = later
            .format(&time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            ))
            .unwrap();
        dated.insert("retry-after", http_date.parse().unwrap());
        let wait = retry_after(&dated).expect("an HTTP date parses");
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
    }
}
