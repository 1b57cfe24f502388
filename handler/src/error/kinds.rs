//! The vocabulary of failures shared by the error type and its classifier: dispositions, Azure services, parsed Azure
//! error responses, transport failures and the customer actions a failure can wait on (pure data).

use std::fmt;
use std::time::Duration;

/// What should happen to a message whose attempt failed with this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Likely to succeed if tried again soon (throttling, outages, timeouts, conflicts).
    Transient,
    /// Blocked on something only the customer can do in their tenant; retried with a longer backoff until a deadline.
    WaitingOnCustomer,
    /// Will never succeed as sent: dead-letter it.
    Permanent,
}

/// The Azure service an HTTP error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum AzureService {
    /// The managed-identity endpoint of the Functions platform.
    ManagedIdentity,
    /// Entra ID token endpoint (`login.microsoftonline.com`).
    Entra,
    Arm,
    Graph,
    KeyVault,
    ServiceBus,
}

impl fmt::Display for AzureService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ManagedIdentity => "managed identity",
            Self::Entra => "Entra ID",
            Self::Arm => "Azure Resource Manager",
            Self::Graph => "Microsoft Graph",
            Self::KeyVault => "Key Vault",
            Self::ServiceBus => "Service Bus",
        })
    }
}

/// An error response from an Azure service, parsed from any of Azure's error shapes:
/// ARM/Graph `{"error":{"code","message"}}`, Key Vault `{"error":{"code","message","innererror":{"code"}}}`,
/// Entra `{"error","error_description","error_codes":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureError {
    pub service: AzureService,
    /// What we were doing, e.g. `get key`, `update storage account`.
    pub operation: &'static str,
    pub status: u16,
    /// `error.code` (ARM, Graph, Key Vault) or `error` (Entra).
    pub code: Option<String>,
    /// Key Vault `error.innererror.code`, or the first Entra `error_codes` entry as `AADSTS<n>`.
    pub inner_code: Option<String>,
    /// Human-readable message from the body, with anything token-like removed.
    pub message: String,
    /// From `Retry-After` / `retry-after-ms` / `x-ms-retry-after-ms`, when the service sent one.
    pub retry_after: Option<Duration>,
}

/// A failure below HTTP: the request never got a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    pub service: AzureService,
    pub operation: &'static str,
    pub kind: TransportErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    Connect,
    Timeout,
    /// The connection dropped mid-request or mid-response.
    Reset,
    /// A response arrived but was not what the API documents (bad JSON, missing fields, larger than the cap).
    BadResponse,
    /// The host name does not resolve (DNS), reported by the resolver or by a forward proxy (RFC 9209
    /// `Proxy-Status: …; error=dns_error`).
    NameNotResolved,
    /// The invocation's deadline passed before a response arrived (or before the request could be sent).
    OutOfTime,
}

/// Something only the customer can fix, in their own tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CustomerAction {
    /// The multi-tenant app has no service principal in the customer tenant (AADSTS700016).
    InstallApplication,
    /// The app's service principal is disabled in the customer tenant (AADSTS7000112).
    EnableApplication,
    /// The app's service principal lacks `Key Vault Crypto Service Encryption User` on the vault or key, or the
    /// assignment has not propagated yet.
    GrantKeyAccess,
    /// No key of that name (or version) in the vault.
    CreateKey,
    KeyDisabled,
    KeyExpired,
    KeyNotYetValid,
    /// The key is not RSA/RSA-HSM of 2048, 3072 or 4096 bits.
    UnsupportedKeyType {
        detail: String,
    },
    /// `key_ops` lacks `wrapKey` or `unwrapKey`.
    AllowKeyOperations {
        missing: Vec<String>,
    },
    /// Soft delete or purge protection is off on the vault (`recoveryLevel` contains `Purgeable`).
    EnablePurgeProtection,
    /// The vault's firewall refused the call (`ForbiddenByFirewall`): trusted Microsoft services must be allowed.
    AllowNetworkAccess,
    /// The vault's host name does not resolve: no such vault (wrong name, deleted, or not created yet).
    VaultNotFound,
    /// The key carries no tag `cmk-consent` / `cmk-consent-*` naming this storage account: its owner has not
    /// agreed that it protects this account (the confused-deputy defence, ARCHITECTURE.md decision 28).
    ConsentToAccount {
        storage_account_id: String,
    },
}

impl CustomerAction {
    /// Stable reason code for events and dead-letter properties.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::InstallApplication => "ServicePrincipalMissing",
            Self::EnableApplication => "ApplicationDisabled",
            Self::GrantKeyAccess => "KeyAccessDenied",
            Self::CreateKey => "KeyNotFound",
            Self::KeyDisabled => "KeyDisabled",
            Self::KeyExpired => "KeyExpired",
            Self::KeyNotYetValid => "KeyNotYetValid",
            Self::UnsupportedKeyType { .. } => "KeyTypeUnsupported",
            Self::AllowKeyOperations { .. } => "KeyOperationsMissing",
            Self::EnablePurgeProtection => "PurgeProtectionDisabled",
            Self::AllowNetworkAccess => "KeyVaultFirewall",
            Self::VaultNotFound => "VaultNotFound",
            Self::ConsentToAccount { .. } => "KeyConsentMissing",
        }
    }
}

impl TransportError {
    /// A Key Vault or Managed HSM host that does not resolve has no vault behind it: only the customer can create it
    /// or send the right name. Any other unresolvable host is ours to fix, and stays transient.
    pub fn is_missing_vault(&self) -> bool {
        self.kind == TransportErrorKind::NameNotResolved && self.service == AzureService::KeyVault
    }
}

/// The result of classifying an [`AzureError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub disposition: Disposition,
    pub reason_code: &'static str,
    pub customer_action: Option<CustomerAction>,
}
