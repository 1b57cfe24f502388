//! The Entra directory: tenants, app registrations with their federated credentials, service principals, managed
//! identities and the function app's identities; and the rules of the federated client-assertion exchange.
//!
//! Writes made during a run (a service principal installed or removed, a federated credential added, changed or
//! deleted) are visible at once to Graph, but reach token issuance only after the scenario's propagation delays.

use serde_json::json;
use time::OffsetDateTime;

use super::error::EntraError;
use super::token::{Claims, audience_matches};
use crate::cloud::Cloud;
use crate::propagation::{Delays, Pending};
use crate::scenario::{
    Application, Change, FederatedIdentityCredential, FunctionApp, ManagedIdentity, Scenario, ServicePrincipal, Tenant,
};

/// Most federated identity credentials one application may have (Entra's limit).
pub const MAX_FEDERATED_CREDENTIALS: usize = 20;

/// Tenants, applications, service principals and managed identities.
#[derive(Debug, Default)]
pub struct Directory {
    tenants: Vec<Tenant>,
    applications: Vec<Application>,
    service_principals: Vec<ServicePrincipal>,
    managed_identities: Vec<ManagedIdentity>,
    function_app: Option<FunctionApp>,
    delays: Delays,
    /// Service principals token issuance does not see as Graph does yet, by (tenant, app id), lower-cased.
    principals_pending: Pending<(String, String), ServicePrincipal>,
    /// Federated credentials token issuance does not see as Graph does yet, by (app object id, name), lower-cased.
    credentials_pending: Pending<(String, String), FederatedIdentityCredential>,
}

fn principal_key(sp: &ServicePrincipal) -> (String, String) {
    (sp.tenant_id.to_ascii_lowercase(), sp.app_id.to_ascii_lowercase())
}

fn credential_key(app_object_id: &str, name: &str) -> (String, String) {
    (app_object_id.to_ascii_lowercase(), name.to_ascii_lowercase())
}

/// Why a directory write was refused; Graph turns each into its own error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl Directory {
    /// The scenario's directory, in force from the start; later writes propagate after `delays`.
    pub fn from_scenario(scenario: &Scenario, delays: Delays) -> Result<Self, String> {
        let mut directory = Self {
            tenants: scenario.tenants.clone(),
            managed_identities: scenario.managed_identities.clone(),
            function_app: scenario.function_app.clone(),
            ..Self::default()
        };
        for application in &scenario.applications {
            directory.add_application(application.clone())?;
        }
        for sp in &scenario.service_principals {
            directory.add_service_principal(sp.clone(), None)?;
        }
        directory.check_identities()?;
        directory.delays = delays;
        Ok(directory)
    }

    fn add_application(&mut self, mut application: Application) -> Result<(), String> {
        if !self.tenant_exists(&application.tenant_id) {
            return Err(format!("application {}: unknown tenant {}", application.app_id, application.tenant_id));
        }
        if self.application_by_app_id(&application.app_id).is_some()
            || self.application_by_object_id(&application.object_id).is_some()
        {
            return Err(format!("application {} is declared twice", application.app_id));
        }
        let credentials = std::mem::take(&mut application.federated_identity_credentials);
        let object_id = application.object_id.clone();
        self.applications.push(application);
        for credential in credentials {
            self.insert_federated_credential(&object_id, credential, None).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Installs a service principal; when `now` is given (a run-time change) token issuance sees it after the delay.
    fn add_service_principal(&mut self, sp: ServicePrincipal, now: Option<OffsetDateTime>) -> Result<(), String> {
        if !self.tenant_exists(&sp.tenant_id) {
            return Err(format!("service principal {}: unknown tenant {}", sp.id, sp.tenant_id));
        }
        if self.application_by_app_id(&sp.app_id).is_none() {
            return Err(format!("service principal {}: unknown application {}", sp.id, sp.app_id));
        }
        let key = principal_key(&sp);
        if let Some(now) = now {
            let current = self.service_principals.iter().find(|existing| principal_key(existing) == key);
            self.principals_pending.record(key.clone(), current, now, self.delays.service_principal);
        }
        // Re-adding replaces: a customer re-installing the app gets a fresh object.
        self.service_principals.retain(|existing| principal_key(existing) != key);
        self.service_principals.push(sp);
        Ok(())
    }

    fn check_identities(&self) -> Result<(), String> {
        for identity in &self.managed_identities {
            if !self.tenant_exists(&identity.tenant_id) {
                return Err(format!(
                    "managed identity {}: unknown tenant {}",
                    identity.resource_id, identity.tenant_id
                ));
            }
        }
        if let Some(app) = &self.function_app {
            for resource_id in &app.user_assigned {
                if self.managed_identity_by_resource_id(resource_id).is_none() {
                    return Err(format!("functionApp.userAssigned: {resource_id} is not in managedIdentities"));
                }
            }
        }
        Ok(())
    }

    /// Applies a run-time change made at `now`.
    pub fn apply(&mut self, change: &Change, now: OffsetDateTime) -> Result<(), String> {
        match change {
            Change::AddServicePrincipal { service_principal } => {
                self.add_service_principal(service_principal.clone(), Some(now))
            }
            Change::RemoveServicePrincipal { tenant_id, app_id } => {
                let key = (tenant_id.to_ascii_lowercase(), app_id.to_ascii_lowercase());
                let Some(index) = self.service_principals.iter().position(|sp| principal_key(sp) == key) else {
                    return Err(format!("no service principal for app {app_id} in tenant {tenant_id}"));
                };
                let removed = self.service_principals.remove(index);
                self.principals_pending.record(key, Some(&removed), now, self.delays.service_principal);
                Ok(())
            }
            Change::AddFederatedCredential { app_object_id, credential } => self
                .add_federated_credential(app_object_id, credential.clone(), now)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            other => Err(format!("the directory does not apply {other:?}")),
        }
    }

    pub fn tenant_exists(&self, tenant_id: &str) -> bool {
        self.tenants.iter().any(|t| t.id.eq_ignore_ascii_case(tenant_id))
    }

    pub fn application_by_app_id(&self, app_id: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.app_id.eq_ignore_ascii_case(app_id))
    }

    pub fn application_by_object_id(&self, object_id: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.object_id.eq_ignore_ascii_case(object_id))
    }

    /// The service principal as Graph shows it (the latest write).
    pub fn service_principal(&self, tenant_id: &str, app_id: &str) -> Option<&ServicePrincipal> {
        self.service_principals
            .iter()
            .find(|sp| sp.tenant_id.eq_ignore_ascii_case(tenant_id) && sp.app_id.eq_ignore_ascii_case(app_id))
    }

    /// The service principal as token issuance sees it at `now`.
    pub fn service_principal_in_force(
        &self,
        tenant_id: &str,
        app_id: &str,
        now: OffsetDateTime,
    ) -> Option<&ServicePrincipal> {
        let key = (tenant_id.to_ascii_lowercase(), app_id.to_ascii_lowercase());
        self.principals_pending.view(&key, self.service_principal(tenant_id, app_id), now)
    }

    /// An application's federated credentials as token issuance sees them at `now`.
    fn credentials_in_force<'a>(
        &'a self,
        application: &'a Application,
        now: OffsetDateTime,
    ) -> Vec<&'a FederatedIdentityCredential> {
        let app = application.object_id.to_ascii_lowercase();
        self.credentials_pending.effective(
            &application.federated_identity_credentials,
            |c| credential_key(&app, &c.name),
            |key| key.0 == app,
            now,
        )
    }

    /// ARM resource ids are case-insensitive (ARM itself lower-cases `resourcegroups` in some responses).
    pub fn managed_identity_by_resource_id(&self, resource_id: &str) -> Option<&ManagedIdentity> {
        self.managed_identities.iter().find(|mi| mi.resource_id.eq_ignore_ascii_case(resource_id))
    }

    pub fn managed_identity_by_client_id(&self, client_id: &str) -> Option<&ManagedIdentity> {
        self.managed_identities.iter().find(|mi| mi.client_id.eq_ignore_ascii_case(client_id))
    }

    pub fn managed_identity_by_principal_id(&self, principal_id: &str) -> Option<&ManagedIdentity> {
        self.managed_identities.iter().find(|mi| mi.principal_id.eq_ignore_ascii_case(principal_id))
    }

    /// Adds (or replaces, by resource id) a user-assigned identity, e.g. when ARM creates one.
    pub fn add_managed_identity(&mut self, identity: ManagedIdentity) {
        self.managed_identities.retain(|mi| !mi.resource_id.eq_ignore_ascii_case(&identity.resource_id));
        self.managed_identities.push(identity);
    }

    pub fn function_app(&self) -> Option<&FunctionApp> {
        self.function_app.as_ref()
    }

    /// The rules Entra applies when `app_id` presents `assertion` (a managed-identity token) to get a token in
    /// `target_tenant` at `now`, with the service principals and credentials in force then. The assertion's
    /// lifetime is judged by the caller, which owns the clock.
    pub fn federated_exchange(
        &self,
        cloud: Cloud,
        app_id: &str,
        target_tenant: &str,
        assertion: &Claims,
        now: OffsetDateTime,
    ) -> Result<&ServicePrincipal, EntraError> {
        if !self.tenant_exists(target_tenant) {
            return Err(EntraError::unknown_tenant(target_tenant));
        }
        let not_found = || {
            EntraError::bad_request(
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{app_id}' was not found in the directory '{target_tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                ),
            )
        };
        let application = self.application_by_app_id(app_id).ok_or_else(not_found)?;
        let home = application.tenant_id.eq_ignore_ascii_case(target_tenant);
        if !home && application.sign_in_audience != "AzureADMultipleOrgs" {
            return Err(not_found());
        }
        let sp = self.service_principal_in_force(target_tenant, app_id, now).ok_or_else(not_found)?;
        if !sp.account_enabled {
            return Err(EntraError::bad_request(
                "unauthorized_client",
                7000112,
                format!("Application '{app_id}'({}) is disabled.", application.display_name),
            ));
        }
        match_federated_credential(cloud, &self.credentials_in_force(application, now), assertion)?;
        Ok(sp)
    }

    /// Adds a federated credential under Graph's rules at `now`; returns the stored credential (with its id). Token
    /// issuance sees it after the federated-credential delay.
    pub fn add_federated_credential(
        &mut self,
        app_object_id: &str,
        credential: FederatedIdentityCredential,
        now: OffsetDateTime,
    ) -> Result<&FederatedIdentityCredential, DirectoryError> {
        self.insert_federated_credential(app_object_id, credential, Some(now))
    }

    fn insert_federated_credential(
        &mut self,
        app_object_id: &str,
        mut credential: FederatedIdentityCredential,
        now: Option<OffsetDateTime>,
    ) -> Result<&FederatedIdentityCredential, DirectoryError> {
        validate_credential(&credential)?;
        let application = self.application_mut(app_object_id)?;
        let credentials = &application.federated_identity_credentials;
        if credentials.iter().any(|c| c.name.eq_ignore_ascii_case(&credential.name)) {
            return Err(DirectoryError::Conflict(format!(
                "FederatedIdentityCredential with name {} already exists.",
                credential.name
            )));
        }
        if credentials.iter().any(|c| c.issuer == credential.issuer && c.subject == credential.subject) {
            return Err(DirectoryError::Conflict(
                "FederatedIdentityCredential with the same issuer and subject already exists.".to_owned(),
            ));
        }
        if credentials.len() >= MAX_FEDERATED_CREDENTIALS {
            return Err(DirectoryError::Invalid(format!(
                "Exceeded the maximum number of allowed federated identity credentials ({MAX_FEDERATED_CREDENTIALS}) on this application."
            )));
        }
        if credential.id.is_none() {
            // Deterministic ids keep state dumps comparable across runs.
            let seed = format!("{}/{}", application.object_id, credential.name);
            credential.id = Some(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, seed.as_bytes()).to_string());
        }
        if let Some(now) = now {
            let key = credential_key(app_object_id, &credential.name);
            self.credentials_pending.record(key, None, now, self.delays.federated_credential);
        }
        let application = self.application_mut(app_object_id)?;
        application.federated_identity_credentials.push(credential);
        Ok(application.federated_identity_credentials.last().expect("just pushed"))
    }

    /// Replaces the updatable fields of the credential named or identified by `key` (the name is immutable) at
    /// `now`; token issuance keeps the old values until the federated-credential delay has passed.
    pub fn update_federated_credential(
        &mut self,
        app_object_id: &str,
        key: &str,
        update: &serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<(), DirectoryError> {
        let application = self.application_mut(app_object_id)?;
        let index = find_credential(&application.federated_identity_credentials, key).ok_or_else(|| {
            DirectoryError::NotFound(format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ))
        })?;
        let mut updated = application.federated_identity_credentials[index].clone();
        if let Some(name) = update.get("name").and_then(|n| n.as_str())
            && name != updated.name
        {
            return Err(DirectoryError::Invalid("Property 'name' is read-only and cannot be set.".to_owned()));
        }
        merge_credential(&mut updated, update)?;
        validate_credential(&updated)?;
        let clash = application
            .federated_identity_credentials
            .iter()
            .enumerate()
            .any(|(i, c)| i != index && c.issuer == updated.issuer && c.subject == updated.subject);
        if clash {
            return Err(DirectoryError::Conflict(
                "FederatedIdentityCredential with the same issuer and subject already exists.".to_owned(),
            ));
        }
        let previous = application.federated_identity_credentials[index].clone();
        application.federated_identity_credentials[index] = updated;
        let pending_key = credential_key(app_object_id, &previous.name);
        self.credentials_pending.record(pending_key, Some(&previous), now, self.delays.federated_credential);
        Ok(())
    }

    /// Deletes a credential at `now`; token issuance keeps accepting it until the federated-credential delay.
    pub fn remove_federated_credential(
        &mut self,
        app_object_id: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<(), DirectoryError> {
        let application = self.application_mut(app_object_id)?;
        let index = find_credential(&application.federated_identity_credentials, key).ok_or_else(|| {
            DirectoryError::NotFound(format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ))
        })?;
        let removed = application.federated_identity_credentials.remove(index);
        let pending_key = credential_key(app_object_id, &removed.name);
        self.credentials_pending.record(pending_key, Some(&removed), now, self.delays.federated_credential);
        Ok(())
    }

    /// `POST /servicePrincipals` in `tenant_id` at `now`: installs the app there (token issuance sees it after the
    /// service-principal delay).
    pub fn create_service_principal(
        &mut self,
        tenant_id: &str,
        app_id: &str,
        now: OffsetDateTime,
    ) -> Result<&ServicePrincipal, DirectoryError> {
        let application = self.application_by_app_id(app_id).ok_or_else(|| {
            DirectoryError::Invalid(format!(
                "The appId '{app_id}' of the service principal does not reference a valid application object."
            ))
        })?;
        if !application.tenant_id.eq_ignore_ascii_case(tenant_id)
            && application.sign_in_audience != "AzureADMultipleOrgs"
        {
            return Err(DirectoryError::Invalid(format!(
                "The appId '{app_id}' of the service principal does not reference a valid application object."
            )));
        }
        if self.service_principal(tenant_id, app_id).is_some() {
            return Err(DirectoryError::Conflict(
                "Another object with the same value for property servicePrincipalNames already exists.".to_owned(),
            ));
        }
        let sp = ServicePrincipal {
            id: uuid::Uuid::new_v4().to_string(),
            app_id: application.app_id.clone(),
            tenant_id: tenant_id.to_owned(),
            account_enabled: true,
        };
        self.principals_pending.record(principal_key(&sp), None, now, self.delays.service_principal);
        self.service_principals.push(sp);
        Ok(self.service_principals.last().expect("just pushed"))
    }

    fn application_mut(&mut self, object_id: &str) -> Result<&mut Application, DirectoryError> {
        self.applications.iter_mut().find(|a| a.object_id.eq_ignore_ascii_case(object_id)).ok_or_else(|| {
            DirectoryError::NotFound(format!(
                "Resource '{object_id}' does not exist or one of its queried reference-property objects are not present."
            ))
        })
    }

    /// State dump for `/_emulator/state`.
    pub fn dump(&self) -> serde_json::Value {
        json!({
            "tenants": self.tenants,
            "applications": self.applications,
            "servicePrincipals": self.service_principals,
            "managedIdentities": self.managed_identities,
            "functionApp": self.function_app,
        })
    }
}

/// Finds the credential whose id or name is `key` (Graph accepts either in the key segment).
fn find_credential(credentials: &[FederatedIdentityCredential], key: &str) -> Option<usize> {
    credentials
        .iter()
        .position(|c| c.id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(key)))
        .or_else(|| credentials.iter().position(|c| c.name.eq_ignore_ascii_case(key)))
}

fn merge_credential(
    credential: &mut FederatedIdentityCredential,
    update: &serde_json::Value,
) -> Result<(), DirectoryError> {
    let invalid = |field: &str| DirectoryError::Invalid(format!("Invalid value specified for property '{field}'."));
    if let Some(value) = update.get("issuer") {
        credential.issuer = value.as_str().ok_or_else(|| invalid("issuer"))?.to_owned();
    }
    if let Some(value) = update.get("subject") {
        credential.subject = value.as_str().ok_or_else(|| invalid("subject"))?.to_owned();
    }
    if let Some(value) = update.get("audiences") {
        credential.audiences = serde_json::from_value(value.clone()).map_err(|_| invalid("audiences"))?;
    }
    if let Some(value) = update.get("description") {
        credential.description = value.as_str().map(str::to_owned);
    }
    Ok(())
}

/// Graph's documented rules for a federated credential. Wrong issuer/subject/audience values are *accepted*:
/// they only fail at token exchange, as in Entra.
pub fn validate_credential(credential: &FederatedIdentityCredential) -> Result<(), DirectoryError> {
    let name = &credential.name;
    let url_friendly = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
    let starts_alphanumeric = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !(3..=120).contains(&name.chars().count()) || !url_friendly || !starts_alphanumeric {
        return Err(DirectoryError::Invalid(format!(
            "Invalid value specified for property 'name' of resource 'FederatedIdentityCredential': '{name}'. The name must be 3 to 120 URL-friendly characters and start with a letter or digit."
        )));
    }
    if credential.issuer.trim().is_empty() || credential.issuer.len() > 600 {
        return Err(DirectoryError::Invalid(
            "Invalid value specified for property 'issuer' of resource 'FederatedIdentityCredential'.".to_owned(),
        ));
    }
    if credential.subject.trim().is_empty() || credential.subject.len() > 600 {
        return Err(DirectoryError::Invalid(
            "Invalid value specified for property 'subject' of resource 'FederatedIdentityCredential'.".to_owned(),
        ));
    }
    if credential.audiences.len() != 1 || credential.audiences[0].is_empty() || credential.audiences[0].len() > 600 {
        return Err(DirectoryError::Invalid("Invalid value specified for property 'audiences' of resource 'FederatedIdentityCredential': exactly one audience is required.".to_owned()));
    }
    if credential.description.as_ref().is_some_and(|d| d.chars().count() > 600) {
        return Err(DirectoryError::Invalid(
            "Invalid value specified for property 'description' of resource 'FederatedIdentityCredential'.".to_owned(),
        ));
    }
    Ok(())
}

/// Finds the one credential whose issuer and subject equal the assertion's exactly (no trimming, case-sensitive),
/// with the cloud's exchange audience. The error names which part failed, like Entra's sub-codes do.
fn match_federated_credential(
    cloud: Cloud,
    credentials: &[&FederatedIdentityCredential],
    assertion: &Claims,
) -> Result<(), EntraError> {
    let mismatch = |part: &str, value: &str, sub_code: u32| {
        EntraError::bad_request(
            "invalid_client",
            70021,
            format!(
                "No matching federated identity record found for presented assertion {part} '{value}' (AADSTS{sub_code}). Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                assertion.iss, assertion.sub, assertion.aud
            ),
        )
    };
    let by_issuer: Vec<_> = credentials.iter().filter(|c| c.issuer == assertion.iss).collect();
    if by_issuer.is_empty() {
        return Err(mismatch("issuer", &assertion.iss, 700211));
    }
    let Some(credential) = by_issuer.iter().find(|c| c.subject == assertion.sub) else {
        return Err(mismatch("subject", &assertion.sub, 700213));
    };
    let audience = cloud.token_exchange_audience();
    let audience_ok = audience_matches(&assertion.aud, audience)
        && credential.audiences.iter().any(|a| audience_matches(&assertion.aud, a));
    if !audience_ok {
        return Err(mismatch("audience", &assertion.aud, 7002121));
    }
    Ok(())
}
