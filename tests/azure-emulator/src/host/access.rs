//! The host's own Service Bus access, checked as the service checks its clients: the connection's credential (a
//! connection string's SAS rule, or the function app's managed identity and its role assignments) must hold `Listen`
//! on a trigger's entity and `Send` on an output binding's entity.

use super::config::{self, Credential};
use super::settings::Settings;
use crate::servicebus::access::{self, Right};
use crate::state::Shared;

/// `Ok` when the connection named `connection` may exercise `right` on `entity` now; else the error the Service Bus
/// client reports (`Unauthorized access. 'Listen' claim(s) are required …`).
pub fn check(
    shared: &Shared,
    settings: &Settings,
    connection: Option<&str>,
    entity: &str,
    right: Right,
) -> Result<(), String> {
    let (namespace, credential) = config::connection_of(connection, settings)?;
    let auth = shared
        .bus
        .namespace_auth(&namespace)
        .ok_or_else(|| format!("the Service Bus namespace {namespace} does not exist (no DNS record)"))?;
    let host = format!("{namespace}.{}", shared.bus.suffix());
    let refused = || Err(access::missing_claim(right, &host, entity));
    match credential {
        Credential::SharedAccessKey { name, key } => {
            if !auth.local_auth {
                return Err(
                    "LocalAuthDisabled: Authorization failed because SAS authentication has been disabled for the namespace."
                        .to_owned(),
                );
            }
            let rule = auth.sas_keys.iter().find(|rule| rule.name == name && rule.key == key);
            let Some(rule) = rule else {
                return Err(format!("InvalidSignature: The token has an invalid signature (rule '{name}')."));
            };
            if access::sas_grants(&rule.rights, right) { Ok(()) } else { refused() }
        }
        Credential::ManagedIdentity { client_id } => {
            let now = shared.clock.now();
            let scope = shared.bus.entity_scope(&namespace, entity);
            let world = shared.world.lock().expect("world lock poisoned");
            let (tenant, principal) = identity(&world.directory, client_id.as_deref())?;
            if !tenant.eq_ignore_ascii_case(&auth.tenant_id) {
                return Err(format!("InvalidIssuer: Token issuer is invalid: tenant '{tenant}'."));
            }
            if access::entra_grants(&world.rbac, &auth, &principal, &scope, right, now) { Ok(()) } else { refused() }
        }
    }
}

/// (tenant, principal id) of the function app's system-assigned identity, or of the attached user-assigned
/// identity with `client_id`.
fn identity(directory: &crate::entra::Directory, client_id: Option<&str>) -> Result<(String, String), String> {
    let app = directory
        .function_app()
        .ok_or("ManagedIdentityCredential authentication unavailable: the function app has no managed identity.")?;
    let Some(client_id) = client_id else {
        return Ok((app.tenant_id.clone(), app.system_assigned.principal_id.clone()));
    };
    directory
        .managed_identity_by_client_id(client_id)
        .filter(|mi| app.user_assigned.iter().any(|id| id.eq_ignore_ascii_case(&mi.resource_id)))
        .map(|mi| (mi.tenant_id.clone(), mi.principal_id.clone()))
        .ok_or_else(|| format!("ManagedIdentityCredential: no user-assigned identity with client id {client_id} is attached to the function app."))
}
