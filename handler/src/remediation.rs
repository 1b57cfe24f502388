//! What the customer must do for each `CustomerAction`, as commands with this onboarding's values filled in (pure).
//!
//! Commands follow the seed article and its includes (reference `cross-tenant-cmk.md` steps 5–9 and §5): Azure CLI
//! and Az PowerShell, run by the customer in their own tenant. Values we cannot know (the vault's ARM id, which lives
//! in the customer's subscription) are looked up by the commands themselves into `$kvResourceId`.

use serde::Serialize;

use crate::cloud::Cloud;
use crate::error::CustomerAction;

/// The role the ISV app's service principal needs on the vault (id `e147488a-f6f5-4113-8e2d-b22465e65bf6`).
pub const KEY_VAULT_ROLE: &str = "Key Vault Crypto Service Encryption User";
/// The Managed HSM local role with the same purpose.
pub const MANAGED_HSM_ROLE: &str = "Managed HSM Crypto Service Encryption User";

/// Tag on the key that proves its owner's consent: named `cmk-consent` or `cmk-consent-{anything}` (one per account a
/// key protects), its value the storage account's resource id (compared case-insensitively, as ARM ids are).
pub const CONSENT_TAG: &str = "cmk-consent";

/// The tag name the remediation suggests for `storage_account_id`: `cmk-consent-{account name}`, so one key can
/// consent to several accounts (Key Vault tag names are at most 512 characters; an account name at most 24).
pub fn consent_tag_name(storage_account_id: &str) -> String {
    let name = storage_account_id.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    format!("{CONSENT_TAG}-{}", name.to_ascii_lowercase())
}

/// One thing to do, in both shells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemediationStep {
    pub title: String,
    pub azure_cli: Vec<String>,
    pub powershell: Vec<String>,
}

/// The values of this onboarding that go into the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemediationContext<'a> {
    pub cloud: Cloud,
    pub customer_tenant_id: &'a str,
    pub app_client_id: &'a str,
    /// First label of the vault (or HSM) host.
    pub vault_name: &'a str,
    pub managed_hsm: bool,
    pub key_name: &'a str,
    pub key_version: Option<&'a str>,
    /// The vault's ARM id, when known (it usually is not: it lives in the customer's subscription).
    pub vault_resource_id: Option<&'a str>,
}

/// What is missing, what to run, and where the admin-consent page is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Remediation {
    /// One sentence.
    pub missing: String,
    pub actions: Vec<RemediationStep>,
    pub admin_consent_url: String,
}

pub fn remediation(action: &CustomerAction, ctx: &RemediationContext<'_>) -> Remediation {
    Remediation {
        missing: missing(action, ctx),
        actions: std::iter::once(sign_in(ctx)).chain(steps(action, ctx)).collect(),
        admin_consent_url: ctx.cloud.admin_consent_url(ctx.customer_tenant_id, ctx.app_client_id),
    }
}

/// The fix for access the key watch found lost. Access worked before, so a missing service principal was deleted:
/// the one created again has a new object id, and role assignments name object ids, so the role on the key must be
/// assigned again too (the old assignment names a principal that no longer exists).
pub fn lost_access_remediation(action: &CustomerAction, ctx: &RemediationContext<'_>) -> Remediation {
    let mut fix = remediation(action, ctx);
    if matches!(action, CustomerAction::InstallApplication) {
        fix.missing = format!(
            "The ISV application {} has no service principal in tenant {} any more: create it again, then assign the new one (a new object id) the {} role on key {} again.",
            ctx.app_client_id,
            ctx.customer_tenant_id,
            role(ctx),
            ctx.key_name
        );
        fix.actions.extend(steps(&CustomerAction::GrantKeyAccess, ctx));
    }
    // The key worked before, so it was deleted: recovering it (within the vault's retention) brings back the versions
    // the account's data is wrapped with, which a new key cannot.
    if matches!(action, CustomerAction::CreateKey) {
        let store = if ctx.managed_hsm { "managed HSM" } else { "key vault" };
        let (cli_target, ps_target) = target(ctx);
        let key = ctx.key_name;
        fix.missing = format!(
            "Key {key} is gone from {store} {}: if it was deleted, recover it within the vault's retention period (a new key cannot read the account's data).",
            ctx.vault_name
        );
        fix.actions.splice(
            1..,
            [step(
                format!("Recover the deleted key {key}"),
                &[format!("az keyvault key recover {cli_target} --name {key}")],
                &[format!("Undo-AzKeyVaultKeyRemoval {ps_target} -Name {key}")],
            )],
        );
    }
    fix
}

fn missing(action: &CustomerAction, c: &RemediationContext<'_>) -> String {
    let store = if c.managed_hsm { "managed HSM" } else { "key vault" };
    let (vault, key, app, tenant) = (c.vault_name, c.key_name, c.app_client_id, c.customer_tenant_id);
    match action {
        CustomerAction::InstallApplication => format!(
            "The ISV application {app} has no service principal in tenant {tenant}: install it or grant admin consent."
        ),
        CustomerAction::EnableApplication => {
            format!("The service principal of the ISV application {app} is disabled in tenant {tenant}.")
        }
        CustomerAction::GrantKeyAccess => format!(
            "The ISV application {app} cannot use key {key} in {store} {vault}: assign it the {} role (assignments take a few minutes to apply).",
            role(c)
        ),
        CustomerAction::CreateKey => format!("There is no key named {key} in {store} {vault}."),
        CustomerAction::KeyDisabled => format!("Key {key} in {store} {vault} is disabled."),
        CustomerAction::KeyExpired => format!("Key {key} in {store} {vault} has expired."),
        CustomerAction::KeyNotYetValid => {
            format!("Key {key} in {store} {vault} is not valid yet (its activation date is in the future).")
        }
        CustomerAction::UnsupportedKeyType { detail } => format!(
            "Key {key} in {store} {vault} cannot encrypt Azure Storage ({detail}); it must be RSA or RSA-HSM of 2048, 3072 or 4096 bits."
        ),
        CustomerAction::AllowKeyOperations { missing } => format!(
            "Key {key} in {store} {vault} does not permit the {} operation(s) Azure Storage needs.",
            missing.join(" and ")
        ),
        CustomerAction::EnablePurgeProtection => {
            format!("The {store} {vault} must have soft delete and purge protection enabled.")
        }
        CustomerAction::AllowNetworkAccess => format!(
            "The firewall of {store} {vault} refuses the ISV service: allow trusted Microsoft services to bypass it."
        ),
        CustomerAction::VaultNotFound => format!(
            "There is no {store} named {vault} (its name does not resolve): create it, or send the ISV the right vault URI."
        ),
        CustomerAction::ConsentToAccount { storage_account_id } => format!(
            "Key {key} in {store} {vault} has no tag consenting to protect the storage account {storage_account_id}: tag the key if you agree, and tell the ISV if you did not ask for this."
        ),
    }
}

fn role(c: &RemediationContext<'_>) -> &'static str {
    if c.managed_hsm { MANAGED_HSM_ROLE } else { KEY_VAULT_ROLE }
}

fn step(title: impl Into<String>, azure_cli: &[String], powershell: &[String]) -> RemediationStep {
    RemediationStep { title: title.into(), azure_cli: azure_cli.to_vec(), powershell: powershell.to_vec() }
}

fn sign_in(c: &RemediationContext<'_>) -> RemediationStep {
    let t = c.customer_tenant_id;
    step(
        format!("Sign in to your tenant {t}"),
        &[format!("az login --tenant {t}")],
        &[format!("Connect-AzAccount -Tenant {t}")],
    )
}

/// `--vault-name x` / `-VaultName x`, or the HSM forms.
fn target(c: &RemediationContext<'_>) -> (String, String) {
    if c.managed_hsm {
        (format!("--hsm-name {}", c.vault_name), format!("-HsmName {}", c.vault_name))
    } else {
        (format!("--vault-name {}", c.vault_name), format!("-VaultName {}", c.vault_name))
    }
}

/// `--version v` / `-Version v` when the message pins a version.
fn version_args(c: &RemediationContext<'_>) -> (String, String) {
    c.key_version.map_or_else(Default::default, |v| (format!(" --version {v}"), format!(" -Version {v}")))
}

fn steps(action: &CustomerAction, c: &RemediationContext<'_>) -> Vec<RemediationStep> {
    let (app, tenant, key) = (c.app_client_id, c.customer_tenant_id, c.key_name);
    let (cli_target, ps_target) = target(c);
    let (cli_version, ps_version) = version_args(c);
    match action {
        CustomerAction::InstallApplication => vec![step(
            format!("Create the service principal of the ISV application {app} (or open the admin-consent URL)"),
            &[format!("az ad sp create --id {app} --query id --out tsv")],
            &[format!("$servicePrincipal = New-AzADServicePrincipal -ApplicationId {app}")],
        )],
        CustomerAction::EnableApplication => vec![step(
            format!("Enable the service principal of the ISV application {app}"),
            &[format!("az ad sp update --id {app} --set accountEnabled=true")],
            &[
                format!("Connect-MgGraph -TenantId {tenant} -Scopes Application.ReadWrite.All"),
                format!("$servicePrincipal = Get-MgServicePrincipal -Filter \"appId eq '{app}'\""),
                "Update-MgServicePrincipal -ServicePrincipalId $servicePrincipal.Id -AccountEnabled:$true".to_owned(),
            ],
        )],
        CustomerAction::GrantKeyAccess => grant_key_access(c),
        CustomerAction::CreateKey => create_key(c, &format!("Create the key {key}")),
        CustomerAction::UnsupportedKeyType { .. } => {
            create_key(c, &format!("Create a new RSA version of the key {key}"))
        }
        CustomerAction::KeyDisabled => vec![step(
            format!("Enable the key {key}"),
            &[format!("az keyvault key set-attributes {cli_target} --name {key}{cli_version} --enabled true")],
            &[format!("Update-AzKeyVaultKey {ps_target} -Name {key}{ps_version} -Enable $true")],
        )],
        CustomerAction::KeyExpired => vec![step(
            format!("Extend the expiry date of the key {key} (or create a new version)"),
            &[format!(
                "az keyvault key set-attributes {cli_target} --name {key}{cli_version} --expires $(date -u -d '+1 year' +%Y-%m-%dT%H:%M:%SZ)"
            )],
            &[format!(
                "Update-AzKeyVaultKey {ps_target} -Name {key}{ps_version} -Expires (Get-Date).AddYears(1).ToUniversalTime()"
            )],
        )],
        CustomerAction::KeyNotYetValid => vec![step(
            format!("Make the key {key} valid from now"),
            &[format!(
                "az keyvault key set-attributes {cli_target} --name {key}{cli_version} --not-before $(date -u +%Y-%m-%dT%H:%M:%SZ)"
            )],
            &[format!(
                "Update-AzKeyVaultKey {ps_target} -Name {key}{ps_version} -NotBefore (Get-Date).ToUniversalTime()"
            )],
        )],
        CustomerAction::AllowKeyOperations { .. } => vec![step(
            format!("Allow the wrapKey and unwrapKey operations on the key {key}"),
            &[format!("az keyvault key set-attributes {cli_target} --name {key}{cli_version} --ops wrapKey unwrapKey")],
            &[format!("Update-AzKeyVaultKey {ps_target} -Name {key}{ps_version} -KeyOps wrapKey,unwrapKey")],
        )],
        CustomerAction::EnablePurgeProtection => enable_purge_protection(c),
        CustomerAction::VaultNotFound => vault_not_found(c),
        CustomerAction::ConsentToAccount { storage_account_id } => {
            let tag = consent_tag_name(storage_account_id);
            vec![step(
                format!(
                    "If you agree that key {key} protects {storage_account_id}, tag it so (this replaces the key version's tags: add any it has to the command)"
                ),
                &[format!(
                    "az keyvault key set-attributes {cli_target} --name {key}{cli_version} --tags {tag}={storage_account_id}"
                )],
                &[format!(
                    "Update-AzKeyVaultKey {ps_target} -Name {key}{ps_version} -Tag @{{'{tag}' = '{storage_account_id}'}}"
                )],
            )]
        }
        CustomerAction::AllowNetworkAccess => vec![step(
            format!("Let trusted Microsoft services through the firewall of {}", c.vault_name),
            &[format!("az keyvault update --name {} --bypass AzureServices", c.vault_name)],
            &[format!("Update-AzKeyVaultNetworkRuleSet -VaultName {} -Bypass AzureServices", c.vault_name)],
        )],
    }
}

/// Reference step 9 (and the access-policy alternative for vaults not using Azure RBAC).
fn grant_key_access(c: &RemediationContext<'_>) -> Vec<RemediationStep> {
    let (app, vault, key) = (c.app_client_id, c.vault_name, c.key_name);
    let cli_sp = format!("servicePrincipalId=$(az ad sp show --id {app} --query id --output tsv)");
    let ps_sp = format!("$servicePrincipal = Get-AzADServicePrincipal -ApplicationId {app}");
    if c.managed_hsm {
        return vec![step(
            format!("Assign {MANAGED_HSM_ROLE} on the key {key} to the ISV application's service principal"),
            &[
                cli_sp,
                format!(
                    "az keyvault role assignment create --hsm-name {vault} --role \"{MANAGED_HSM_ROLE}\" --scope /keys/{key} --assignee-object-id $servicePrincipalId --assignee-principal-type ServicePrincipal"
                ),
            ],
            &[
                ps_sp,
                format!(
                    "New-AzKeyVaultRoleAssignment -HsmName {vault} -RoleDefinitionName \"{MANAGED_HSM_ROLE}\" -Scope \"/keys/{key}\" -ObjectId $servicePrincipal.Id"
                ),
            ],
        )];
    }
    let (cli_scope, ps_scope) = match c.vault_resource_id {
        Some(id) => (format!("kvResourceId={id}"), format!("$kvResourceId = \"{id}\"")),
        None => (
            format!("kvResourceId=$(az keyvault show --name {vault} --query id --output tsv)"),
            format!("$kvResourceId = (Get-AzKeyVault -VaultName {vault}).ResourceId"),
        ),
    };
    vec![
        step(
            format!("Assign {KEY_VAULT_ROLE} on the key vault {vault} to the ISV application's service principal"),
            &[
                cli_sp.clone(),
                cli_scope,
                format!(
                    "az role assignment create --role \"{KEY_VAULT_ROLE}\" --scope $kvResourceId --assignee-object-id $servicePrincipalId --assignee-principal-type ServicePrincipal"
                ),
            ],
            &[
                ps_sp.clone(),
                ps_scope,
                format!(
                    "New-AzRoleAssignment -RoleDefinitionName \"{KEY_VAULT_ROLE}\" -Scope $kvResourceId -ObjectId $servicePrincipal.Id"
                ),
            ],
        ),
        step(
            format!("Only if {vault} uses access policies instead of Azure RBAC: grant get, wrapKey and unwrapKey"),
            &[
                cli_sp,
                format!(
                    "az keyvault set-policy --name {vault} --object-id $servicePrincipalId --key-permissions get wrapKey unwrapKey"
                ),
            ],
            &[
                ps_sp,
                format!(
                    "Set-AzKeyVaultAccessPolicy -VaultName {vault} -ObjectId $servicePrincipal.Id -PermissionsToKeys get,wrapKey,unwrapKey"
                ),
            ],
        ),
    ]
}

/// Reference steps 7–8.
fn create_key(c: &RemediationContext<'_>, title: &str) -> Vec<RemediationStep> {
    let (vault, key) = (c.vault_name, c.key_name);
    if c.managed_hsm {
        return vec![step(
            title,
            &[format!("az keyvault key create --hsm-name {vault} --name {key} --kty RSA-HSM --size 3072")],
            &[format!("Add-AzKeyVaultKey -HsmName {vault} -Name {key} -KeyType RSA -Size 3072")],
        )];
    }
    vec![
        step(
            format!("Let yourself create keys in {vault}: assign Key Vault Crypto Officer"),
            &[
                "currentUserObjectId=$(az ad signed-in-user show --query id --output tsv)".to_owned(),
                format!("kvResourceId=$(az keyvault show --name {vault} --query id --output tsv)"),
                "az role assignment create --role \"Key Vault Crypto Officer\" --scope $kvResourceId --assignee-object-id $currentUserObjectId".to_owned(),
            ],
            &[
                "$currentUserObjectId = (Get-AzADUser -SignedIn).Id".to_owned(),
                format!("$kvResourceId = (Get-AzKeyVault -VaultName {vault}).ResourceId"),
                "New-AzRoleAssignment -RoleDefinitionName \"Key Vault Crypto Officer\" -Scope $kvResourceId -ObjectId $currentUserObjectId".to_owned(),
            ],
        ),
        step(
            title,
            &[format!("az keyvault key create --name {key} --vault-name {vault} --kty RSA --size 3072")],
            &[format!("Add-AzKeyVaultKey -Name {key} -VaultName {vault} -Destination Software -KeyType RSA -Size 3072")],
        ),
    ]
}

/// Reference step 6: find the vault's real URI, or create the vault the message names (with purge protection, which
/// Storage requires, and Azure RBAC, which the role assignment step expects).
fn vault_not_found(c: &RemediationContext<'_>) -> Vec<RemediationStep> {
    let vault = c.vault_name;
    if c.managed_hsm {
        return vec![
            step(
                format!("Check the name and URI of your managed HSM (the request named {vault})"),
                &["az keyvault list --resource-type hsm --query \"[].{name:name, uri:properties.hsmUri}\" --output table".to_owned()],
                &["Get-AzKeyVaultManagedHsm | Select-Object Name, HsmUri".to_owned()],
            ),
            step(
                format!("Or create the managed HSM {vault} with purge protection"),
                &[format!(
                    "az keyvault create --hsm-name {vault} --resource-group <resource-group> --location <region> --administrators $(az ad signed-in-user show --query id --output tsv) --enable-purge-protection true"
                )],
                &[format!(
                    "New-AzKeyVaultManagedHsm -Name {vault} -ResourceGroupName <resource-group> -Location <region> -Administrator (Get-AzADUser -SignedIn).Id -EnablePurgeProtection"
                )],
            ),
        ];
    }
    vec![
        step(
            format!("Check the name and URI of your key vault (the request named {vault})"),
            &["az keyvault list --query \"[].{name:name, uri:properties.vaultUri}\" --output table".to_owned()],
            &["Get-AzKeyVault | ForEach-Object { Get-AzKeyVault -VaultName $_.VaultName } | Select-Object VaultName, VaultUri".to_owned()],
        ),
        step(
            format!("Or create the key vault {vault} with purge protection and Azure RBAC"),
            &[format!(
                "az keyvault create --name {vault} --resource-group <resource-group> --location <region> --enable-purge-protection true --enable-rbac-authorization true"
            )],
            &[format!(
                "New-AzKeyVault -Name {vault} -ResourceGroupName <resource-group> -Location <region> -EnablePurgeProtection -EnableRbacAuthorization"
            )],
        ),
    ]
}

/// Reference step 6: purge protection is irreversible, and soft delete is on by default for new vaults.
fn enable_purge_protection(c: &RemediationContext<'_>) -> Vec<RemediationStep> {
    let vault = c.vault_name;
    if c.managed_hsm {
        return vec![step(
            format!("Enable purge protection on the managed HSM {vault}"),
            &[format!("az keyvault update-hsm --hsm-name {vault} --enable-purge-protection true")],
            &[format!("Get-AzKeyVaultManagedHsm -Name {vault} | Update-AzKeyVaultManagedHsm -EnablePurgeProtection")],
        )];
    }
    vec![step(
        format!("Enable purge protection on the key vault {vault}"),
        &[format!("az keyvault update --name {vault} --enable-purge-protection true")],
        &[format!("Get-AzKeyVault -VaultName {vault} | Update-AzKeyVault -EnablePurgeProtection")],
    )]
}
