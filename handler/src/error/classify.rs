//! Classification of Azure error responses into dispositions and reason codes, and the parser of error bodies (pure).
//!
//! [`RULES`] is the whole policy as one table, read top to bottom; the first matching row wins. Sources for each
//! code: reference `cross-tenant-cmk.md` §2.4 (Entra, Key Vault) and step 12 (Storage PATCH).

use std::time::Duration;

use crate::text::truncate;

use super::kinds::{AzureError, AzureService, Classified, CustomerAction, Disposition};

/// Which errors a row applies to. Codes match `code` or `inner_code`, case-insensitively.
#[derive(Debug, Clone, Copy)]
struct When {
    service: Option<AzureService>,
    status: (u16, u16),
    code: Option<&'static str>,
    message_contains: Option<&'static str>,
    operation_contains: Option<&'static str>,
}

const fn any() -> When {
    When { service: None, status: (0, 999), code: None, message_contains: None, operation_contains: None }
}

const fn from(service: AzureService) -> When {
    When { service: Some(service), ..any() }
}

impl When {
    const fn status(self, status: u16) -> Self {
        Self { status: (status, status), ..self }
    }
    const fn statuses(self, low: u16, high: u16) -> Self {
        Self { status: (low, high), ..self }
    }
    const fn code(self, code: &'static str) -> Self {
        Self { code: Some(code), ..self }
    }
    const fn message(self, fragment: &'static str) -> Self {
        Self { message_contains: Some(fragment), ..self }
    }
    const fn operation(self, fragment: &'static str) -> Self {
        Self { operation_contains: Some(fragment), ..self }
    }

    fn matches(&self, e: &AzureError) -> bool {
        let contains = |hay: &str, needle: &str| hay.to_ascii_lowercase().contains(&needle.to_ascii_lowercase());
        self.service.is_none_or(|s| s == e.service)
            && (self.status.0..=self.status.1).contains(&e.status)
            && self.code.is_none_or(|c| {
                [&e.code, &e.inner_code].iter().any(|have| have.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(c)))
            })
            && self.message_contains.is_none_or(|m| contains(&e.message, m))
            && self.operation_contains.is_none_or(|o| contains(e.operation, o))
    }
}

/// What a matching row decides.
#[derive(Debug)]
enum Then {
    Transient(&'static str),
    Permanent(&'static str),
    Customer(&'static CustomerAction),
}
use Then::{Customer, Permanent, Transient};

use AzureService::{Arm, Entra, Graph, KeyVault, ManagedIdentity, ServiceBus};
use CustomerAction as Act;

const KEY_OPERATIONS_UNKNOWN: CustomerAction = Act::AllowKeyOperations { missing: Vec::new() };

/// The classification table. Order matters: specific rows before the catch-alls at the bottom.
const RULES: &[(When, Then)] = &[
    // Throttling and outages say nothing about the request itself.
    (any().status(429), Transient("Throttled")),
    (any().status(408), Transient("ServiceUnavailable")),
    (any().statuses(500, 599), Transient("ServiceUnavailable")),
    // Entra token endpoint, customer tenant (error_codes[0] as AADSTS<n>).
    (from(Entra).code("AADSTS700016"), Customer(&Act::InstallApplication)),
    (from(Entra).code("AADSTS7000112"), Customer(&Act::EnableApplication)),
    (from(Entra).code("AADSTS70021"), Permanent("FederatedCredentialMismatch")),
    (from(Entra).code("AADSTS700211"), Permanent("FederatedCredentialMismatch")),
    (from(Entra).code("AADSTS700213"), Permanent("FederatedCredentialMismatch")),
    (from(Entra).code("AADSTS7002121"), Permanent("FederatedCredentialMismatch")),
    (from(Entra).code("AADSTS90002"), Permanent("CustomerTenantNotFound")),
    (from(Entra).code("AADSTS900432"), Permanent("CustomerTenantNotFound")),
    (from(Entra).code("AADSTS900382"), Permanent("CustomerTenantNotFound")),
    (from(Entra).code("AADSTS700222"), Permanent("FederatedAssertionRejected")),
    (from(Entra).code("AADSTS700226"), Permanent("FederatedAssertionRejected")),
    (from(Entra).code("AADSTS700229"), Permanent("FederatedAssertionRejected")),
    // The managed-identity token used as the assertion expired in flight: a fresh one fixes it.
    (from(Entra).code("AADSTS700024"), Transient("AssertionExpired")),
    // Key Vault data plane, customer tenant.
    (from(KeyVault).status(401).message("AKV10032"), Permanent("VaultTenantMismatch")),
    (from(KeyVault).status(403).code("ForbiddenByRbac"), Customer(&Act::GrantKeyAccess)),
    (from(KeyVault).status(403).code("AccessDenied"), Customer(&Act::GrantKeyAccess)),
    (from(KeyVault).status(403).code("ForbiddenByFirewall"), Customer(&Act::AllowNetworkAccess)),
    (from(KeyVault).status(403).code("ForbiddenByConnection"), Customer(&Act::AllowNetworkAccess)),
    (from(KeyVault).status(403).code("KeyDisabled"), Customer(&Act::KeyDisabled)),
    (from(KeyVault).status(403).message("disabled key"), Customer(&Act::KeyDisabled)),
    (from(KeyVault).status(403).code("KeyOperationForbidden"), Customer(&KEY_OPERATIONS_UNKNOWN)),
    (from(KeyVault).status(403).code("KeyNotYetValid"), Customer(&Act::KeyNotYetValid)),
    (from(KeyVault).status(403).code("KeyExpired"), Customer(&Act::KeyExpired)),
    (from(KeyVault).status(403).code("KeyNotYetValidOrExpired"), Customer(&Act::KeyExpired)),
    // Any other Key Vault 403 is the vault refusing our principal: only the customer can change that.
    (from(KeyVault).status(403), Customer(&Act::GrantKeyAccess)),
    (from(KeyVault).status(404), Customer(&Act::CreateKey)),
    // Storage PATCH: Storage checks the key itself, cross-tenant, during the update.
    (from(Arm).code("KeyVaultPolicyError"), Customer(&Act::EnablePurgeProtection)),
    (from(Arm).code("KeyVaultAuthenticationFailure"), Customer(&Act::GrantKeyAccess)),
    // Creating an account (decision 29). Names are global: taken elsewhere (hashicorp/terraform#11485) or in another
    // group of the subscription. Quota (azure-sdk-for-cpp#3959), policy and region refusals need the ISV, not a retry.
    (from(Arm).code("StorageAccountAlreadyTaken"), Permanent("StorageAccountNameTaken")),
    (from(Arm).code("StorageAccountAlreadyExists"), Permanent("StorageAccountNameTaken")),
    (from(Arm).code("AccountNameInvalid"), Permanent("StorageAccountNameInvalid")),
    (from(Arm).code("InvalidResourceLocation"), Permanent("StorageAccountDiffers")),
    (from(Arm).code("LocationNotAvailableForResourceType"), Permanent("LocationNotAvailable")),
    (from(Arm).code("MaxStorageAccountsCountPerSubscriptionExceeded"), Permanent("StorageAccountQuotaExceeded")),
    (from(Arm).status(403).code("RequestDisallowedByPolicy"), Permanent("RequestDisallowedByPolicy")),
    (from(Arm).status(409).code("StorageAccountOperationInProgress"), Transient("OperationInProgress")),
    (from(Arm).status(409).code("AnotherOperationInProgress"), Transient("OperationInProgress")),
    (from(Arm).status(409).code("Conflict"), Transient("OperationInProgress")),
    (from(Arm).status(403).code("AuthorizationFailed"), Permanent("IsvAuthorizationFailed")),
    (from(Arm).status(403).code("LinkedAuthorizationFailed"), Permanent("IsvAuthorizationFailed")),
    (from(Arm).status(404).operation("identity"), Permanent("ManagedIdentityNotFound")),
    (from(Arm).status(404).message("Microsoft.ManagedIdentity"), Permanent("ManagedIdentityNotFound")),
    (from(Arm).status(404).operation("storage account"), Permanent("StorageAccountNotFound")),
    (from(Arm).status(404).message("Microsoft.Storage/storageAccounts"), Permanent("StorageAccountNotFound")),
    // The platform's managed-identity endpoint: an unknown client id is an ISV configuration error.
    (from(ManagedIdentity).statuses(400, 404), Permanent("ManagedIdentityNotFound")),
    (from(Graph).status(403), Permanent("IsvAuthorizationFailed")),
    (from(Graph).status(404), Permanent("IsvApplicationNotFound")),
    (from(ServiceBus).statuses(401, 403), Permanent("IsvAuthorizationFailed")),
    (from(ServiceBus).status(404), Permanent("ServiceBusEntityNotFound")),
    // Catch-alls.
    (any().statuses(400, 499), Permanent("AzureRequestRejected")),
];

/// Classifies an Azure error response by [`RULES`]; anything unmatched (no 4xx) is treated as transient.
pub fn classify(e: &AzureError) -> Classified {
    let Some((_, then)) = RULES.iter().find(|(when, _)| when.matches(e)) else {
        return Classified {
            disposition: Disposition::Transient,
            reason_code: "ServiceUnavailable",
            customer_action: None,
        };
    };
    match then {
        Transient(reason) => {
            Classified { disposition: Disposition::Transient, reason_code: reason, customer_action: None }
        }
        Permanent(reason) => {
            Classified { disposition: Disposition::Permanent, reason_code: reason, customer_action: None }
        }
        Customer(action) => {
            let action = match action {
                Act::AllowKeyOperations { .. } => Act::AllowKeyOperations { missing: forbidden_operations(&e.message) },
                other => (*other).clone(),
            };
            Classified {
                disposition: Disposition::WaitingOnCustomer,
                reason_code: action.reason_code(),
                customer_action: Some(action),
            }
        }
    }
}

/// Key Vault says "Operation wrapKey is not permitted on this key."; without that sentence, both CMK operations.
fn forbidden_operations(message: &str) -> Vec<String> {
    let named = message
        .split_once("Operation ")
        .and_then(|(_, rest)| rest.split_once(" is not permitted"))
        .map(|(op, _)| op.trim())
        .filter(|op| op.eq_ignore_ascii_case("wrapKey") || op.eq_ignore_ascii_case("unwrapKey"));
    match named {
        Some(op) if op.eq_ignore_ascii_case("wrapKey") => vec!["wrapKey".to_owned()],
        Some(_) => vec!["unwrapKey".to_owned()],
        None => vec!["wrapKey".to_owned(), "unwrapKey".to_owned()],
    }
}

/// Longest message kept from an error body.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Builds an [`AzureError`] from a response, understanding every Azure error shape: ARM/Graph/Key Vault
/// `{"error":{"code","message","innererror":{"code"}|"details":[{"code"}]}}`, bare `{"code","message"}`, Entra
/// `{"error","error_description","error_codes":[n]}`, and Service Bus XML `<Error><Code/><Detail/></Error>`.
/// The message is cleaned of anything token-like, since error messages end up in logs and events.
pub fn parse_error_body(
    service: AzureService,
    operation: &'static str,
    status: u16,
    headers_retry_after: Option<Duration>,
    body: &[u8],
) -> AzureError {
    let text = String::from_utf8_lossy(body);
    let (code, inner_code, message) = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => from_json(&json),
        Err(_) if text.trim_start().starts_with('<') => from_xml(&text),
        Err(_) => (None, None, None),
    };
    let message = message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| {
        let body = text.trim();
        if body.is_empty() { format!("HTTP {status} with an empty body") } else { body.to_owned() }
    });
    AzureError {
        service,
        operation,
        status,
        code,
        inner_code,
        message: truncate(&redact_secrets(&message), MAX_MESSAGE_CHARS),
        retry_after: headers_retry_after,
    }
}

type Parts = (Option<String>, Option<String>, Option<String>);

fn from_json(json: &serde_json::Value) -> Parts {
    let text = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_str).map(str::to_owned);
    match json.get("error") {
        Some(error @ serde_json::Value::Object(_)) => {
            let inner = ["innererror", "innerError"]
                .iter()
                .find_map(|k| text(error.get(*k).and_then(|i| i.get("code"))))
                .or_else(|| text(error.get("details").and_then(|d| d.get(0)).and_then(|d| d.get("code"))));
            (text(error.get("code")), inner, text(error.get("message")))
        }
        Some(serde_json::Value::String(error)) => {
            let description = text(json.get("error_description"));
            let first_code = json
                .get("error_codes")
                .and_then(|c| c.get(0))
                .and_then(serde_json::Value::as_u64)
                .map(|n| format!("AADSTS{n}"))
                .or_else(|| description.as_deref().and_then(aadsts_prefix));
            (Some(error.clone()), first_code, description)
        }
        _ => (text(json.get("code")), None, text(json.get("message")).or_else(|| text(json.get("Message")))),
    }
}

/// `AADSTS700016: …` → `AADSTS700016`.
fn aadsts_prefix(description: &str) -> Option<String> {
    let digits: String = description.strip_prefix("AADSTS")?.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

fn from_xml(text: &str) -> Parts {
    let element = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_owned())
    };
    (element("Code"), None, element("Detail").or_else(|| element("Message")))
}

const REDACTED: &str = "[redacted]";

/// Replaces bearer tokens, JWTs, SAS signatures, keys and other long opaque strings with `[redacted]`.
///
/// Heuristic by design: a word is redacted when it looks like a JWT (`eyJ….….`), follows a secret-bearing name
/// (`Bearer`, `sig=`, `SharedAccessKey=`, `AccountKey=`, `client_assertion=`, `access_token`…), or is a run of 64+
/// base64-ish characters. GUIDs, URLs and error codes stay readable.
pub fn redact_secrets(text: &str) -> String {
    const SECRET_NAMES: &[&str] = &[
        "sig=",
        "signature=",
        "sharedaccesskey=",
        "sharedaccesssignature",
        "accountkey=",
        "client_assertion=",
        "client_secret=",
        "access_token=",
        "refresh_token=",
        "password=",
        "code=",
    ];
    let mut out = String::with_capacity(text.len());
    let mut redact_next_word = false;
    for piece in split_keep_whitespace(text) {
        if piece.chars().all(char::is_whitespace) {
            out.push_str(piece);
            continue;
        }
        if redact_next_word {
            out.push_str(REDACTED);
            redact_next_word = false;
            continue;
        }
        let lower = piece.to_ascii_lowercase();
        if lower == "bearer" || lower == "sharedaccesssignature" {
            out.push_str(piece);
            redact_next_word = true;
            continue;
        }
        out.push_str(&redact_word(piece, SECRET_NAMES));
    }
    out
}

fn split_keep_whitespace(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_space = None;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if in_space.is_some_and(|s| s != space) {
            pieces.push(&text[start..i]);
            start = i;
        }
        in_space = Some(space);
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Redacts inside one whitespace-free word: `name=value` pairs with secret names, JWTs and long opaque runs.
fn redact_word(word: &str, secret_names: &[&str]) -> String {
    let is_opaque = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=' | '%');
    let lower = word.to_ascii_lowercase();
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        // A secret-bearing name: keep the name, drop its value up to the next separator.
        if let Some(name) = secret_names.iter().find(|n| lower[i..].starts_with(**n) && starts_word(&lower, i)) {
            out.push_str(&word[i..i + name.len()]);
            out.push_str(REDACTED);
            i += name.len();
            while let Some(c) = word[i..].chars().next() {
                if matches!(c, '&' | ';' | ',' | '"' | '\'' | ')') {
                    break;
                }
                i += c.len_utf8();
            }
            continue;
        }
        let c = word[i..].chars().next().unwrap_or(' ');
        if is_opaque(c) && c != '/' && c != '=' && c != '%' {
            let run_end = word[i..].find(|ch: char| !is_opaque(ch)).map_or(word.len(), |n| i + n);
            let run = &word[i..run_end];
            if looks_secret(run) {
                out.push_str(REDACTED);
                i = run_end;
                continue;
            }
            // Not a secret: copy up to the next potential boundary so names inside the run are still seen.
            let step = run.find(['/', '=', '&', '?']).map_or(run.len(), |n| n + 1).max(c.len_utf8());
            out.push_str(&word[i..i + step]);
            i += step;
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn starts_word(lower: &str, i: usize) -> bool {
    i == 0 || lower[..i].ends_with(|c: char| !c.is_ascii_alphanumeric() && c != '_')
}

/// JWTs (three base64url parts, the first `eyJ`) or 64+ characters of base64 without URL structure.
fn looks_secret(run: &str) -> bool {
    let jwt = run.starts_with("eyJ") && run.split('.').count() >= 2 && run.len() >= 20;
    let long_opaque = run.len() >= 64 && !run.contains("//") && run.split('/').count() <= 2 && !run.contains('.');
    jwt || long_opaque
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens_but_keeps_useful_text() {
        let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl";
        let text = format!(
            "AADSTS700016: app 3109d1c4-a5de-4d84-8832-feabb916a4b6 with Bearer abc.def assertion={jwt} url https://kv.vault.azure.net/keys/k/0682afdd9c104f4285df20107e956cad?sig=Zm9vYmFy&se=1 key {}",
            "A".repeat(80)
        );
        let clean = redact_secrets(&text);
        assert!(!clean.contains("eyJ0eXAi"), "{clean}");
        assert!(!clean.contains("abc.def"), "{clean}");
        assert!(!clean.contains("Zm9vYmFy"), "{clean}");
        assert!(!clean.contains(&"A".repeat(80)), "{clean}");
        assert!(clean.contains("3109d1c4-a5de-4d84-8832-feabb916a4b6"), "{clean}");
        assert!(clean.contains("https://kv.vault.azure.net/keys/k/0682afdd9c104f4285df20107e956cad"), "{clean}");
        assert!(clean.contains("AADSTS700016"), "{clean}");
    }

    #[test]
    fn reads_the_operation_key_vault_forbids() {
        assert_eq!(forbidden_operations("Operation unwrapKey is not permitted on this key."), vec!["unwrapKey"]);
        assert_eq!(forbidden_operations("nope"), vec!["wrapKey", "unwrapKey"]);
    }
}
