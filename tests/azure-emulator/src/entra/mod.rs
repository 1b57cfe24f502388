//! Entra ID: the directory (tenants, apps, federated credentials, service principals, managed identities), token
//! minting and verification, the App Service managed-identity endpoint and the v2.0 token endpoint.

mod directory;
mod endpoint;
mod error;
mod msi;
mod token;

pub use directory::{Directory, DirectoryError, MAX_FEDERATED_CREDENTIALS, validate_credential};
pub use endpoint::handle;
pub use error::EntraError;
pub use msi::{app_service_error, msi};
pub use token::{Claims, Subject, TokenError, TokenMinter, audience_matches, strip_default_scope};

/// Lifetime of tokens from the token endpoint (Entra: 60–90 minutes).
pub const APP_TOKEN_LIFETIME_SECS: i64 = 3599;
/// Lifetime of managed-identity tokens (App Service hands out tokens valid for about a day).
pub const MI_TOKEN_LIFETIME_SECS: i64 = 24 * 3600;
