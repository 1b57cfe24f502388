//! JWT-shaped access tokens: minted and verified by one emulator instance only (HS256 with a random key).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::Clock;
use crate::cloud::Cloud;

type HmacSha256 = Hmac<Sha256>;

/// The claims the emulator puts in (and reads from) its tokens; a subset of Entra's access-token claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Object id of the identity: the managed identity's principal id or the service principal's id.
    pub sub: String,
    pub oid: String,
    pub tid: String,
    pub aud: String,
    /// Client (app) id of the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// `app` for app-only tokens (the only kind this emulator mints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idtyp: Option<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// Unique token id.
    pub uti: String,
    /// Resource id of the managed identity the token was issued to (managed-identity tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_mirid: Option<String>,
    /// `1.0` for `sts.windows.net` tokens, `2.0` for v2.0-issuer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
}

/// Who a token is for and about, before times and ids are filled in.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub tenant_id: &'a str,
    pub object_id: &'a str,
    pub client_id: &'a str,
    /// Set for managed identities: the identity's ARM resource id.
    pub mi_resource_id: Option<&'a str>,
}

impl Claims {
    /// Claims for a token with audience `resource`, issued now for `lifetime`. The issuer follows Entra: the
    /// cloud's v2.0 login issuer for the token-exchange audience (what a federated credential names), else the v1
    /// `sts.windows.net` issuer.
    pub fn issue(cloud: Cloud, subject: &Subject<'_>, resource: &str, now: i64, lifetime_secs: i64) -> Self {
        let exchange = audience_matches(resource, cloud.token_exchange_audience());
        let (iss, ver) = if exchange {
            (format!("https://{}/{}/v2.0", cloud.login_host(), subject.tenant_id), "2.0")
        } else {
            (format!("https://sts.windows.net/{}/", subject.tenant_id), "1.0")
        };
        Self {
            iss,
            sub: subject.object_id.to_owned(),
            oid: subject.object_id.to_owned(),
            tid: subject.tenant_id.to_owned(),
            aud: strip_default_scope(resource).to_owned(),
            appid: Some(subject.client_id.to_owned()),
            azp: Some(subject.client_id.to_owned()),
            idtyp: Some("app".to_owned()),
            exp: now + lifetime_secs,
            iat: now,
            nbf: now,
            uti: URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
            xms_mirid: subject.mi_resource_id.map(str::to_owned),
            ver: Some(ver.to_owned()),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("the token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
}

/// Mints and verifies tokens. The key is random per instance, so a token from another emulator does not verify.
pub struct TokenMinter {
    clock: Clock,
    key: [u8; 32],
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs and dumps.
        f.debug_struct("TokenMinter").field("clock", &self.clock).finish_non_exhaustive()
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"azure-emulator"}"#;

impl TokenMinter {
    pub fn new(clock: Clock) -> Self {
        let mut key = [0_u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self { clock, key }
    }

    /// Emulated time in unix seconds, as token lifetimes see it.
    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    pub fn mint(&self, claims: Claims) -> String {
        let payload = serde_json::to_vec(&claims).expect("claims serialise");
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let signature = self.mac(&signing_input).finalize().into_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Checks the signature and the lifetime against the emulator clock.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.verify_signature(token)?;
        self.check_lifetime(&claims)?;
        Ok(claims)
    }

    /// Checks only the signature: the token endpoint judges the assertion's lifetime after the directory rules,
    /// as Entra reports a missing service principal before an expired assertion.
    pub fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated segments".into()));
        };
        let decode = |segment: &str, what: &str| {
            URL_SAFE_NO_PAD.decode(segment).map_err(|e| TokenError::Malformed(format!("{what} is not base64url: {e}")))
        };
        let header_json: serde_json::Value = serde_json::from_slice(&decode(header, "header")?)
            .map_err(|e| TokenError::Malformed(format!("header is not JSON: {e}")))?;
        if header_json.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::BadSignature);
        }
        let signature = decode(signature, "signature")?;
        self.mac(&format!("{header}.{payload}")).verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        serde_json::from_slice(&decode(payload, "payload")?)
            .map_err(|e| TokenError::Malformed(format!("payload is not a claims object: {e}")))
    }

    pub fn check_lifetime(&self, claims: &Claims) -> Result<(), TokenError> {
        let now = self.now();
        if now >= claims.exp {
            return Err(TokenError::Expired { exp: claims.exp, now });
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid { nbf: claims.nbf, now });
        }
        Ok(())
    }

    fn mac(&self, input: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(input.as_bytes());
        mac
    }
}

/// Whether a token audience names `resource`. Tolerates a trailing `/`, the `/.default` scope form and case.
pub fn audience_matches(claims_aud: &str, resource: &str) -> bool {
    let normalise = |s: &str| strip_default_scope(s.trim()).trim_end_matches('/').to_ascii_lowercase();
    normalise(claims_aud) == normalise(resource)
}

/// `https://vault.azure.net/.default` → `https://vault.azure.net`; other values unchanged.
pub fn strip_default_scope(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject { tenant_id: "t1", object_id: "o1", client_id: "c1", mi_resource_id: None }
    }

    #[test]
    fn round_trip_and_foreign_key() {
        let clock = Clock::default();
        let minter = TokenMinter::new(clock.clone());
        let claims = Claims::issue(Cloud::Public, &subject(), "https://vault.azure.net/.default", minter.now(), 60);
        let token = minter.mint(claims.clone());
        assert_eq!(minter.verify(&token).unwrap(), claims);
        assert_eq!(claims.aud, "https://vault.azure.net");
        assert_eq!(claims.iss, "https://sts.windows.net/t1/");
        let other = TokenMinter::new(clock);
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn exchange_audience_gets_v2_issuer() {
        let claims = Claims::issue(Cloud::UsGovernment, &subject(), "api://AzureADTokenExchangeUSGov", 0, 60);
        assert_eq!(claims.iss, "https://login.microsoftonline.us/t1/v2.0");
    }

    #[test]
    fn lifetime_follows_the_emulator_clock() {
        let clock = Clock::default();
        let minter = TokenMinter::new(clock.clone());
        let token = minter.mint(Claims::issue(Cloud::Public, &subject(), "r", minter.now(), 60));
        clock.advance(std::time::Duration::from_secs(61));
        assert!(matches!(minter.verify(&token), Err(TokenError::Expired { .. })));
        let future = minter.mint(Claims {
            nbf: minter.now() + 100,
            ..Claims::issue(Cloud::Public, &subject(), "r", minter.now(), 600)
        });
        assert!(matches!(minter.verify(&future), Err(TokenError::NotYetValid { .. })));
    }

    #[test]
    fn malformed_and_tampered_tokens_are_refused() {
        let minter = TokenMinter::new(Clock::default());
        assert!(matches!(minter.verify("abc"), Err(TokenError::Malformed(_))));
        let token = minter.mint(Claims::issue(Cloud::Public, &subject(), "r", minter.now(), 60));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        parts[1] = &forged;
        assert_eq!(minter.verify(&parts.join(".")), Err(TokenError::BadSignature));
    }

    #[test]
    fn audiences_match_loosely() {
        assert!(audience_matches("https://vault.azure.net", "https://vault.azure.net/.default"));
        assert!(audience_matches("https://management.azure.com/", "https://management.azure.com"));
        assert!(!audience_matches("https://vault.azure.net", "https://managedhsm.azure.net"));
    }
}
