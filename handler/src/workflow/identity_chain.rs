//! Step 3, the ISV identity chain: the CMK user-assigned identity exists and the multi-tenant app trusts it through a
//! federated identity credential (issuer = the ISV tenant's Entra issuer, subject = the identity's principal id,
//! audience = the cloud's token-exchange audience). Verify mode only reads; ensure mode creates the credential.
//!
//! A credential Entra has only just been given is not used at once (AADSTS70021 "no matching federated identity
//! record" for a while). The handler stamps the time into the description of every credential it writes, so any
//! instance, after any restart, knows how recent it is ([`while_propagating`]).

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::azure::arm::UserAssignedIdentity;
use crate::azure::graph::{FederatedCredential, FicSpec};
use crate::cloud::Cloud;
use crate::error::Error;

/// How long a mismatch right after the handler wrote the credential counts as propagation, not misconfiguration.
/// Entra documents a delay of seconds to minutes (Azure/azure-workload-identity issue #576, "Propagation delay after
/// creating federated identity credential"); ten minutes covers it with room, and stays bounded.
pub const PROPAGATION_WINDOW: Duration = Duration::from_secs(10 * 60);

/// What the description of a credential the handler wrote ends with, followed by an RFC 3339 time.
const WRITTEN_STAMP: &str = "written by the CMK onboarding handler at ";

/// What the rest of the workflow needs to know about the ISV side, once the chain is known to be sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityChain {
    pub uami_id: String,
    pub uami_client_id: String,
    pub uami_principal_id: String,
    pub isv_tenant_id: String,
    pub app_client_id: String,
    /// When the handler wrote the federated credential, if it did (from its description).
    pub credential_written_at: Option<OffsetDateTime>,
}

impl IdentityChain {
    pub fn new(uami: UserAssignedIdentity, app_client_id: &str, credential_written_at: Option<OffsetDateTime>) -> Self {
        Self {
            uami_id: uami.id,
            uami_client_id: uami.client_id,
            uami_principal_id: uami.principal_id,
            isv_tenant_id: uami.tenant_id,
            app_client_id: app_client_id.to_owned(),
            credential_written_at,
        }
    }
}

/// The credential the app must have for the identity.
pub fn required_credential(cloud: Cloud, isv_tenant: &str, uami_principal_id: &str) -> FicSpec {
    FicSpec {
        issuer: cloud.fic_issuer(isv_tenant),
        subject: uami_principal_id.to_owned(),
        audiences: vec![cloud.token_exchange_audience().to_owned()],
        description: Some("Federated identity credential for cross-tenant customer-managed keys".to_owned()),
    }
}

/// The credential as the handler writes it (ensure mode), stamped with the time it is written.
pub fn stamped(want: &FicSpec, now: OffsetDateTime) -> FicSpec {
    let base = want.description.as_deref().unwrap_or("Federated identity credential");
    let stamp = now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339).unwrap_or_default();
    FicSpec { description: Some(format!("{base}; {WRITTEN_STAMP}{stamp}")), ..want.clone() }
}

/// The existing credential that makes the exchange work, if any. Entra compares issuer and subject exactly
/// (leading/trailing whitespace breaks the exchange; subjects are case-sensitive), so this does too.
pub fn matching_credential<'a>(existing: &'a [FederatedCredential], want: &FicSpec) -> Option<&'a FederatedCredential> {
    existing
        .iter()
        .find(|fic| fic.issuer == want.issuer && fic.subject == want.subject && fic.audiences == want.audiences)
}

/// When the handler wrote `credential`, from the stamp in its description; `None` for one written by anyone else.
pub fn written_at(credential: &FederatedCredential) -> Option<OffsetDateTime> {
    let description = credential.description.as_deref()?;
    let (_, stamp) = description.rsplit_once(WRITTEN_STAMP)?;
    OffsetDateTime::parse(stamp.trim(), &Rfc3339).ok()
}

/// A federated-credential mismatch (AADSTS70021 and its sub-codes) within [`PROPAGATION_WINDOW`] after the handler
/// wrote the credential is Entra catching up: transient. Any other error, or one after the window (or for a
/// credential whose writing time is unknown), stays what it is (permanent for a mismatch).
pub fn while_propagating(error: Error, written_at: Option<OffsetDateTime>, now: OffsetDateTime) -> Error {
    let Some(written_at) = written_at else { return error };
    let age = now - written_at;
    let recent = age >= time::Duration::ZERO && age < PROPAGATION_WINDOW;
    if error.reason_code() != "FederatedCredentialMismatch" || !recent {
        return error;
    }
    Error::Pending {
        code: "FederatedCredentialPropagating",
        message: format!(
            "the federated identity credential was written {} s ago and Entra does not use it yet: {error}",
            age.whole_seconds()
        ),
    }
}

/// The error for verify mode when nothing matches: say exactly what is missing and how to add it.
pub fn missing_credential_error(app_object_id: &str, want: &FicSpec, name: &str) -> Error {
    Error::IsvConfiguration {
        code: "FederatedCredentialMissing",
        message: format!(
            "application {app_object_id} has no federated identity credential with issuer {} subject {} audience {}; \
             add it (az ad app federated-credential create --id {app_object_id} --parameters \
             '{{\"name\":\"{name}\",\"issuer\":\"{}\",\"subject\":\"{}\",\"audiences\":[\"{}\"]}}') or set CMK_FIC_MODE=ensure",
            want.issuer, want.subject, want.audiences[0], want.issuer, want.subject, want.audiences[0]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fic(issuer: &str, subject: &str, audience: &str) -> FederatedCredential {
        serde_json::from_value(serde_json::json!({
            "id": "x", "name": "n", "issuer": issuer, "subject": subject, "audiences": [audience]
        }))
        .unwrap()
    }

    #[test]
    fn only_an_exact_match_counts() {
        let want = required_credential(Cloud::Public, "t1", "p1");
        let issuer = "https://login.microsoftonline.com/t1/v2.0";
        assert!(matching_credential(&[fic(issuer, "p1", "api://AzureADTokenExchange")], &want).is_some());
        assert!(matching_credential(&[fic(issuer, "P1", "api://AzureADTokenExchange")], &want).is_none());
        assert!(
            matching_credential(&[fic(&format!("{issuer} "), "p1", "api://AzureADTokenExchange")], &want).is_none()
        );
        assert!(matching_credential(&[fic(issuer, "p1", "api://AzureADTokenExchangeUSGov")], &want).is_none());
        assert!(matching_credential(&[], &want).is_none());
    }

    #[test]
    fn the_writing_time_survives_in_the_description() {
        let now = time::macros::datetime!(2026-11-29 12:00:00.5 UTC);
        let spec = stamped(&required_credential(Cloud::Public, "t1", "p1"), now);
        let stored: FederatedCredential = serde_json::from_value(serde_json::json!({
            "name": "n", "issuer": spec.issuer, "subject": spec.subject, "audiences": spec.audiences,
            "description": spec.description,
        }))
        .unwrap();
        assert_eq!(written_at(&stored), Some(time::macros::datetime!(2026-11-29 12:00 UTC)));
        assert!(stored.description.unwrap().len() <= 600, "Graph's limit on descriptions");
        assert_eq!(written_at(&fic("i", "s", "a")), None);
    }

    #[test]
    fn a_mismatch_right_after_writing_is_propagation() {
        let mismatch = || {
            Error::Azure(crate::error::classify::parse_error_body(
                crate::error::AzureService::Entra,
                "get customer-tenant token",
                400,
                None,
                br#"{"error":"invalid_client","error_description":"AADSTS70021: No matching federated identity record found for presented assertion.","error_codes":[70021]}"#,
            ))
        };
        let written = time::macros::datetime!(2026-11-29 12:00 UTC);
        let at = |minutes: i64| written + time::Duration::minutes(minutes);
        assert_eq!(mismatch().disposition(), crate::error::Disposition::Permanent);

        let soon = while_propagating(mismatch(), Some(written), at(1));
        assert_eq!(
            (soon.reason_code(), soon.disposition()),
            ("FederatedCredentialPropagating", crate::error::Disposition::Transient)
        );
        let late = while_propagating(mismatch(), Some(written), at(11));
        assert_eq!(late.reason_code(), "FederatedCredentialMismatch", "permanent after the window");
        let unknown = while_propagating(mismatch(), None, at(1));
        assert_eq!(unknown.reason_code(), "FederatedCredentialMismatch", "not written by us: permanent");
        let skewed = while_propagating(mismatch(), Some(at(5)), at(0));
        assert_eq!(skewed.reason_code(), "FederatedCredentialMismatch", "a stamp from the future is not trusted");
        let other = Error::Verification("x".into());
        assert_eq!(while_propagating(other, Some(written), at(1)).reason_code(), "VerificationPending");
    }

    #[test]
    fn sovereign_clouds_use_their_issuer_and_audience() {
        let want = required_credential(Cloud::UsGovernment, "t1", "p1");
        assert_eq!(want.issuer, "https://login.microsoftonline.us/t1/v2.0");
        assert_eq!(want.audiences, vec!["api://AzureADTokenExchangeUSGov".to_owned()]);
    }
}
