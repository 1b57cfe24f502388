//! The only code that talks HTTP to Azure: the allow-listed transport, the retry loop, credentials, and one client
//! per service (ARM, Microsoft Graph, Key Vault, Service Bus).

mod error_body;

pub mod credentials;
pub mod retry;
pub mod transport;
