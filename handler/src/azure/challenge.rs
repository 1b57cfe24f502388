//! Key Vault's bearer challenge: which tenant a vault belongs to and which resource its tokens are for (pure).
//!
//! An unauthenticated request to a vault answers 401 with
//! `WWW-Authenticate: Bearer authorization="https://login.windows.net/{tenant}", resource="https://vault.azure.net"`
//! (or `authorization_uri=` / `scope=`). The Azure SDKs read the tenant from the first path segment of the authority
//! and check that the resource's host is a suffix of the vault's host (reference `cross-tenant-cmk.md` §2.3;
//! azure-sdk-for-go `sdk/security/keyvault/internal/challenge_policy.go`). We do the same before any token is
//! fetched, so a token for one tenant is never sent to a vault of another.

use url::Url;

/// What a vault's challenge says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercase GUID of the vault's tenant.
    pub tenant: String,
    /// The token audience the vault asks for, e.g. `https://vault.azure.net`.
    pub resource: String,
}

/// Parses a `WWW-Authenticate` value for `vault_host`; `Err` says why it is not a usable challenge.
pub fn parse(header: &str, vault_host: &str) -> Result<Challenge, String> {
    let rest = header
        .trim()
        .strip_prefix("Bearer")
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| format!("not a Bearer challenge: {header:?}"))?;
    let parameters = parameters(rest);
    let get = |names: &[&str]| {
        parameters.iter().find(|(name, _)| names.iter().any(|n| name.eq_ignore_ascii_case(n))).map(|(_, v)| v.as_str())
    };
    let authority = get(&["authorization", "authorization_uri"]).ok_or("the challenge names no authorization")?;
    let authority = Url::parse(authority).map_err(|e| format!("authorization {authority:?} is not a URL: {e}"))?;
    let first_segment = authority.path_segments().and_then(|mut s| s.next()).unwrap_or_default();
    let tenant = crate::contract::normalize_guid(first_segment)
        .ok_or_else(|| format!("authorization {authority} does not name a tenant id"))?;
    let resource = get(&["resource"])
        .map(str::to_owned)
        .or_else(|| get(&["scope"]).map(|scope| scope.trim_end_matches("/.default").to_owned()))
        .ok_or("the challenge names no resource or scope")?;
    let resource_host = Url::parse(&resource)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .ok_or_else(|| format!("resource {resource:?} is not a URL"))?;
    let vault_host = vault_host.to_ascii_lowercase();
    if !vault_host.ends_with(&format!(".{resource_host}")) {
        return Err(format!("resource {resource} is not the audience of {vault_host}"));
    }
    Ok(Challenge { tenant, resource: resource.trim_end_matches('/').to_owned() })
}

/// `name="value", name=value, …` after the scheme.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim_start_matches([' ', ',']);
    while let Some((name, after)) = rest.split_once('=') {
        let name = name.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, remainder)) => (value, remainder),
                None => (quoted, ""),
            },
            None => after.split_once(',').map_or((after, ""), |(value, remainder)| (value, remainder)),
        };
        out.push((name, value.trim().to_owned()));
        rest = remainder.trim_start_matches([' ', ',']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    #[test]
    fn reads_the_tenant_and_resource_of_both_spellings() {
        let classic = format!(
            "Bearer authorization=\"https://login.windows.net/{TENANT}\", resource=\"https://vault.azure.net\""
        );
        let challenge = parse(&classic, "contoso-kv.vault.azure.net").unwrap();
        assert_eq!(challenge, Challenge { tenant: TENANT.into(), resource: "https://vault.azure.net".into() });

        let scoped = format!(
            "Bearer authorization_uri=\"https://login.microsoftonline.com/{}/\", scope=\"https://managedhsm.azure.net/.default\"",
            TENANT.to_ascii_uppercase()
        );
        let challenge = parse(&scoped, "hsm1.managedhsm.azure.net").unwrap();
        assert_eq!(challenge.tenant, TENANT);
        assert_eq!(challenge.resource, "https://managedhsm.azure.net");
    }

    #[test]
    fn refuses_what_is_not_a_usable_challenge() {
        let for_vault = |header: &str| parse(header, "contoso-kv.vault.azure.net");
        assert!(for_vault("Basic realm=\"x\"").is_err());
        assert!(for_vault("Bearer resource=\"https://vault.azure.net\"").is_err(), "no authority");
        assert!(
            for_vault(
                "Bearer authorization=\"https://login.windows.net/common\", resource=\"https://vault.azure.net\""
            )
            .is_err(),
            "no tenant id"
        );
        assert!(
            for_vault(&format!(
                "Bearer authorization=\"https://login.windows.net/{TENANT}\", resource=\"https://evil.example\""
            ))
            .is_err(),
            "a resource that is not the vault's audience"
        );
        assert!(
            for_vault(&format!("Bearer authorization=\"https://login.windows.net/{TENANT}\"")).is_err(),
            "no resource"
        );
    }
}
