//! Entra ID's error responses: `{"error","error_description","error_codes",…}` with an AADSTS number.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One Entra error, as the token endpoint answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AADSTS{code}: {description}")]
pub struct EntraError {
    pub status: StatusCode,
    /// The OAuth `error` value, e.g. `invalid_client`.
    pub error: String,
    /// The AADSTS number, e.g. `700016`.
    pub code: u32,
    /// Description without the `AADSTSnnn: ` prefix (the body adds it and the trace ids, as Entra does).
    pub description: String,
}

impl EntraError {
    pub fn new(status: StatusCode, error: &str, code: u32, description: impl Into<String>) -> Self {
        Self { status, error: error.to_owned(), code, description: description.into() }
    }

    pub fn bad_request(error: &str, code: u32, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, code, description)
    }

    /// AADSTS90002: the tenant in the path does not exist (in this cloud).
    pub fn unknown_tenant(tenant: &str) -> Self {
        Self::bad_request(
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        )
    }

    /// Entra's JSON body, stamped with `now` and fresh trace and correlation ids.
    pub fn body(&self, now: OffsetDateTime) -> serde_json::Value {
        let trace_id = uuid::Uuid::new_v4();
        let correlation_id = uuid::Uuid::new_v4();
        // Entra prints the timestamp as "2025-01-01 10:00:00Z" in the body and in the description trailer.
        let timestamp = now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339).unwrap_or_default().replace('T', " ");
        serde_json::json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        })
    }

    /// The HTTP response, with the body stamped at `now` (the emulator clock).
    pub fn response_at(&self, now: OffsetDateTime) -> Response {
        (self.status, [("cache-control", "no-store, no-cache")], axum::Json(self.body(now))).into_response()
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        self.response_at(OffsetDateTime::now_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_entra_shape() {
        let error =
            EntraError::bad_request("unauthorized_client", 700016, "Application with identifier 'x' was not found.");
        let body = error.body(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(body["error"], "unauthorized_client");
        assert_eq!(body["error_codes"], serde_json::json!([700016]));
        assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS700016: Application with identifier"));
        assert_eq!(body["timestamp"], "1970-01-01 00:00:00Z");
        for field in ["trace_id", "correlation_id", "error_uri"] {
            assert!(body[field].is_string(), "{field}");
        }
    }
}
