//! Step 3, the ISV identity chain: the CMK user-assigned identity exists and the multi-tenant app trusts it through a
//! federated identity credential (issuer = the ISV tenant's Entra issuer, subject = the identity's principal id,
//! audience = the cloud's token-exchange audience). Verify mode only reads; ensure mode creates the credential.

use crate::azure::graph::{FederatedCredential, FicSpec};
use crate::cloud::Cloud;
use crate::error::Error;

/// What the rest of the workflow needs to know about the ISV side, once the chain is known to be sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityChain {
    pub uami_id: String,
    pub uami_client_id: String,
    pub uami_principal_id: String,
    pub isv_tenant_id: String,
    pub app_client_id: String,
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

/// True when one existing credential makes the exchange work. Entra compares issuer and subject exactly
/// (leading/trailing whitespace breaks the exchange; subjects are case-sensitive), so this does too.
pub fn has_matching_credential(existing: &[FederatedCredential], want: &FicSpec) -> bool {
    existing
        .iter()
        .any(|fic| fic.issuer == want.issuer && fic.subject == want.subject && fic.audiences == want.audiences)
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
        assert!(has_matching_credential(&[fic(issuer, "p1", "api://AzureADTokenExchange")], &want));
        assert!(!has_matching_credential(&[fic(issuer, "P1", "api://AzureADTokenExchange")], &want));
        assert!(!has_matching_credential(&[fic(&format!("{issuer} "), "p1", "api://AzureADTokenExchange")], &want));
        assert!(!has_matching_credential(&[fic(issuer, "p1", "api://AzureADTokenExchangeUSGov")], &want));
        assert!(!has_matching_credential(&[], &want));
    }

    #[test]
    fn sovereign_clouds_use_their_issuer_and_audience() {
        let want = required_credential(Cloud::UsGovernment, "t1", "p1");
        assert_eq!(want.issuer, "https://login.microsoftonline.us/t1/v2.0");
        assert_eq!(want.audiences, vec!["api://AzureADTokenExchangeUSGov".to_owned()]);
    }
}
