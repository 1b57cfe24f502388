//! Shared access signatures: minting (a helper for tests and other engineers) and verification as Service Bus does
//! it: `HMAC-SHA256(key, url_encode(sr) + "\n" + se)` with the named rule's key, `sr` a prefix of the resource.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use crate::scenario::SasKey;

/// What `url_encode` leaves alone: the unreserved characters, as .NET's `WebUtility.UrlEncode` and Python's `quote_plus`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn url_encode(text: &str) -> String {
    utf8_percent_encode(text, URL_ENCODE).to_string()
}

fn sign(key: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `SharedAccessSignature sr=…&sig=…&se=…&skn=…` for `resource_uri`, valid until `expiry_unix`.
pub fn sas_token(resource_uri: &str, key_name: &str, key: &str, expiry_unix: i64) -> String {
    let encoded_resource = url_encode(resource_uri);
    let signature = sign(key, &format!("{encoded_resource}\n{expiry_unix}"));
    format!(
        "SharedAccessSignature sr={encoded_resource}&sig={}&se={expiry_unix}&skn={}",
        url_encode(&signature),
        url_encode(key_name)
    )
}

/// Why a SAS token was refused: `(status, code and detail)` as Service Bus words them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasRefusal {
    pub status: u16,
    pub detail: String,
}

fn unauthorized(detail: impl Into<String>) -> SasRefusal {
    SasRefusal { status: 401, detail: detail.into() }
}

/// Verifies `token` (the header value after `SharedAccessSignature `) for `resource_url` at `now_unix`; returns the
/// rule that signed it, whose rights the caller checks (`access::sas_grants`).
pub fn verify<'k>(
    token: &str,
    keys: &'k [SasKey],
    resource_url: &str,
    now_unix: i64,
) -> Result<&'k SasKey, SasRefusal> {
    let mut raw_sr = None;
    let (mut sig, mut se, mut skn) = (None, None, None);
    for pair in token.trim().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name.trim() {
            "sr" => raw_sr = Some(value),
            "sig" => sig = Some(value),
            "se" => se = Some(value),
            "skn" => skn = Some(value),
            _ => {}
        }
    }
    let (Some(raw_sr), Some(sig), Some(se), Some(skn)) = (raw_sr, sig, se, skn) else {
        return Err(unauthorized("InvalidSignature: The token is malformed: sr, sig, se and skn are all required."));
    };
    let decode = |value: &str| percent_decode_str(&value.replace('+', " ")).decode_utf8_lossy().into_owned();
    let (resource, signature, key_name) = (decode(raw_sr), decode(sig), decode(skn));
    let expiry: i64 = se.parse().map_err(|_| unauthorized("InvalidSignature: The token has an invalid expiry."))?;
    let Some(key) = keys.iter().find(|key| key.name == key_name) else {
        return Err(unauthorized(format!(
            "InvalidSignature: The token has an invalid signature (no authorization rule named '{key_name}')."
        )));
    };
    // Clients differ in how they escape `sr` (upper- or lower-case hex); the signature covers the text they sent.
    let candidates = [raw_sr.to_owned(), url_encode(&resource), url_encode(&resource).to_ascii_lowercase()];
    let signed =
        candidates.iter().any(|encoded| constant_time_eq(&sign(&key.key, &format!("{encoded}\n{se}")), &signature));
    if !signed {
        return Err(unauthorized("InvalidSignature: The token has an invalid signature."));
    }
    if expiry <= now_unix {
        return Err(unauthorized(format!("ExpiredToken: The token is expired. Expiration time: '{expiry}'.")));
    }
    if !covers(&resource, resource_url) {
        return Err(unauthorized(format!(
            "InvalidAudience: The token audience '{resource}' does not match the resource '{resource_url}'."
        )));
    }
    Ok(key)
}

/// Whether the signed resource `sr` covers `url`: a prefix on a path boundary, ignoring scheme, case and `%`-escapes.
fn covers(sr: &str, url: &str) -> bool {
    let normalise = |text: &str| {
        let decoded = percent_decode_str(text).decode_utf8_lossy().to_ascii_lowercase();
        decoded.split_once("://").map_or(decoded.as_str(), |(_, rest)| rest).to_owned()
    };
    let (sr, url) = (normalise(sr), normalise(url));
    let sr = sr.trim_end_matches('/');
    match url.strip_prefix(sr) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<SasKey> {
        vec![
            SasKey { name: "root".into(), key: "secret".into(), rights: vec!["Manage".into()] },
            SasKey { name: "sender".into(), key: "s3nd".into(), rights: vec!["Send".into()] },
        ]
    }

    fn token_value(token: &str) -> &str {
        token.strip_prefix("SharedAccessSignature ").unwrap()
    }

    #[test]
    fn a_minted_token_verifies_for_resources_below_it() {
        let token = sas_token("https://ns.servicebus.windows.net/orders", "root", "secret", 2_000);
        let url = "https://ns.servicebus.windows.net/orders/$DeadLetterQueue/messages/head?timeout=5";
        assert_eq!(verify(token_value(&token), &keys(), url, 1_000).map(|k| k.name.as_str()), Ok("root"));
        let other = "https://ns.servicebus.windows.net/orders2/messages";
        assert_eq!(verify(token_value(&token), &keys(), other, 1_000).unwrap_err().status, 401);
    }

    #[test]
    fn refusals() {
        let url = "https://ns.servicebus.windows.net/orders/messages";
        let expired = sas_token("https://ns.servicebus.windows.net/", "root", "secret", 999);
        assert!(verify(token_value(&expired), &keys(), url, 1_000).unwrap_err().detail.starts_with("ExpiredToken"));
        let forged = sas_token("https://ns.servicebus.windows.net/", "root", "wrong", 2_000);
        assert!(verify(token_value(&forged), &keys(), url, 1_000).unwrap_err().detail.starts_with("InvalidSignature"));
        let sender = sas_token("ns.servicebus.windows.net", "sender", "s3nd", 2_000);
        assert_eq!(
            verify(token_value(&sender), &keys(), url, 1_000).map(|k| k.rights.clone()),
            Ok(vec!["Send".into()])
        );
    }
}
