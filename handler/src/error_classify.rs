//! Classification of Azure error responses into dispositions and reason codes (pure).

use crate::error::{AzureError, Classified, Disposition};

pub fn classify(_error: &AzureError) -> Classified {
    Classified { disposition: Disposition::Transient, reason_code: "Unclassified", customer_action: None }
}
