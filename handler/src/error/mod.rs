//! The handler's error type and its classification: transient, waiting on the customer, or permanent.
//!
//! Every failure that can end an onboarding attempt is an [`Error`]. [`Error::disposition`] decides what happens to
//! the message (retry soon, retry later and tell the customer, or dead-letter) and [`Error::reason_code`] is the
//! stable, machine-readable code that goes into events and dead-letter properties. Classification is pure: it looks
//! only at the data in the error, never at the network.

use std::fmt;
use std::time::Duration;

use crate::contract::ValidationError;

pub mod classify;
mod kinds;

pub use kinds::{
    AzureError, AzureService, Classified, CustomerAction, Disposition, TransportError, TransportErrorKind,
};

/// Every way an onboarding attempt can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message itself is wrong; nothing was called.
    #[error("invalid onboarding message: {0}")]
    Invalid(#[from] ValidationError),
    /// The customer's side is not ready; `detail` says exactly what we saw.
    #[error("waiting on the customer ({}): {detail}", action.reason_code())]
    Customer { action: CustomerAction, detail: String },
    /// An Azure service answered with an error status.
    #[error("{} {} failed with HTTP {}{}: {}", .0.service, .0.operation, .0.status,
            .0.code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), .0.message)]
    Azure(AzureError),
    /// No response from an Azure service.
    #[error("{} {} failed: {}", .0.service, .0.operation, .0.message)]
    Transport(TransportError),
    /// The ISV side is misconfigured (missing identity or federated credential, no rights): ops must fix it.
    #[error("ISV configuration problem ({code}): {message}")]
    IsvConfiguration { code: &'static str, message: String },
    /// The outbound transport refused a host that is not an endpoint of the configured cloud.
    #[error("refused to call {host}: not an allowed Azure endpoint")]
    HostNotAllowed { host: String },
    /// The storage account read back differs from what we configured.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Retries of a waiting or transient failure ran past the onboarding deadline.
    #[error("gave up after the deadline: {last}")]
    DeadlineExceeded { last: Box<Error> },
    /// The message asks for something that must not be done as sent (another tenant's vault, re-keying an account
    /// that uses another vault): nobody's fix but the producer's.
    #[error("refused ({code}): {message}")]
    Refused { code: &'static str, message: String },
    /// Azure has not caught up yet (a registration in progress, a credential propagating): try again later.
    #[error("pending ({code}): {message}")]
    Pending { code: &'static str, message: String },
    /// This process holds a subscription's ARM requests back to stay under Azure's limits (`azure::pacing`), and
    /// the request's turn comes after the invocation's deadline: try again at that turn.
    #[error("paced: the next {kind} request to subscription {subscription} may go in {wait:?}")]
    Paced { subscription: String, kind: &'static str, wait: Duration },
}

impl Error {
    /// A response that arrived but is not what the API documents (bad JSON, missing fields, bad header values).
    pub fn bad_response(service: AzureService, operation: &'static str, message: impl fmt::Display) -> Self {
        Self::Transport(TransportError {
            service,
            operation,
            kind: TransportErrorKind::BadResponse,
            message: message.to_string(),
        })
    }

    pub fn disposition(&self) -> Disposition {
        match self {
            Self::Invalid(_) | Self::IsvConfiguration { .. } | Self::HostNotAllowed { .. } => Disposition::Permanent,
            Self::DeadlineExceeded { .. } | Self::Refused { .. } => Disposition::Permanent,
            Self::Customer { .. } => Disposition::WaitingOnCustomer,
            Self::Transport(e) if e.is_missing_vault() => Disposition::WaitingOnCustomer,
            Self::Transport(_) | Self::Verification(_) | Self::Pending { .. } | Self::Paced { .. } => {
                Disposition::Transient
            }
            Self::Azure(e) => classify::classify(e).disposition,
        }
    }

    /// Stable, machine-readable reason code (PascalCase), used in events and dead-letter properties.
    pub fn reason_code(&self) -> &str {
        match self {
            Self::Invalid(e) => e.code,
            Self::Customer { action, .. } => action.reason_code(),
            Self::Azure(e) => classify::classify(e).reason_code,
            Self::Transport(e) if e.is_missing_vault() => CustomerAction::VaultNotFound.reason_code(),
            Self::Transport(e) => match e.kind {
                TransportErrorKind::Timeout => "Timeout",
                TransportErrorKind::BadResponse => "BadResponse",
                TransportErrorKind::Connect | TransportErrorKind::Reset => "NetworkError",
                TransportErrorKind::NameNotResolved => "NameNotResolved",
                TransportErrorKind::OutOfTime => "InvocationTimeUp",
            },
            Self::IsvConfiguration { code, .. } | Self::Refused { code, .. } | Self::Pending { code, .. } => code,
            Self::HostNotAllowed { .. } => "HostNotAllowed",
            Self::Verification(_) => "VerificationPending",
            Self::DeadlineExceeded { .. } => "DeadlineExceeded",
            Self::Paced { .. } => "SubscriptionPaced",
        }
    }

    /// The customer action this error waits on, if any (also for Azure errors that classify as customer-side).
    pub fn customer_action(&self) -> Option<CustomerAction> {
        match self {
            Self::Customer { action, .. } => Some(action.clone()),
            Self::Transport(e) if e.is_missing_vault() => Some(CustomerAction::VaultNotFound),
            Self::Azure(e) => classify::classify(e).customer_action,
            _ => None,
        }
    }

    /// How long the service asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Azure(e) => e.retry_after,
            Self::Paced { wait, .. } => Some(*wait),
            _ => None,
        }
    }
}
