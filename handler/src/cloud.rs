//! Endpoints, token scopes, DNS suffixes and federation audiences of each supported Azure cloud.
//!
//! Values: reference `cross-tenant-cmk.md` §3.5 (from Azure CLI's `cloud.py` and the Entra federation docs).

use std::fmt;
use std::str::FromStr;

/// The Azure cloud the function app runs in; the customer's vault must be in the same cloud (cross-cloud federation
/// is not supported by Entra).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cloud {
    #[default]
    Public,
    UsGovernment,
    China,
}

impl FromStr for Cloud {
    type Err = String;

    /// Accepts the Azure CLI cloud names (`AzureCloud`, `AzureUSGovernment`, `AzureChinaCloud`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "azurecloud" | "azurepubliccloud" | "public" => Ok(Self::Public),
            "azureusgovernment" | "azureusgovernmentcloud" | "usgovernment" => Ok(Self::UsGovernment),
            "azurechinacloud" | "china" => Ok(Self::China),
            _ => Err(format!("unknown Azure cloud {s:?}: expected AzureCloud, AzureUSGovernment or AzureChinaCloud")),
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "AzureCloud",
            Self::UsGovernment => "AzureUSGovernment",
            Self::China => "AzureChinaCloud",
        })
    }
}

impl Cloud {
    pub fn arm_host(self) -> &'static str {
        match self {
            Self::Public => "management.azure.com",
            Self::UsGovernment => "management.usgovcloudapi.net",
            Self::China => "management.chinacloudapi.cn",
        }
    }

    pub fn login_host(self) -> &'static str {
        match self {
            Self::Public => "login.microsoftonline.com",
            Self::UsGovernment => "login.microsoftonline.us",
            Self::China => "login.chinacloudapi.cn",
        }
    }

    pub fn graph_host(self) -> &'static str {
        match self {
            Self::Public => "graph.microsoft.com",
            Self::UsGovernment => "graph.microsoft.us",
            Self::China => "microsoftgraph.chinacloudapi.cn",
        }
    }

    pub fn key_vault_suffix(self) -> &'static str {
        match self {
            Self::Public => "vault.azure.net",
            Self::UsGovernment => "vault.usgovcloudapi.net",
            Self::China => "vault.azure.cn",
        }
    }

    pub fn managed_hsm_suffix(self) -> &'static str {
        match self {
            Self::Public => "managedhsm.azure.net",
            Self::UsGovernment => "managedhsm.usgovcloudapi.net",
            Self::China => "managedhsm.azure.cn",
        }
    }

    pub fn service_bus_suffix(self) -> &'static str {
        match self {
            Self::Public => "servicebus.windows.net",
            Self::UsGovernment => "servicebus.usgovcloudapi.net",
            Self::China => "servicebus.chinacloudapi.cn",
        }
    }

    /// `https://management.azure.com` (no trailing slash).
    pub fn arm_endpoint(self) -> String {
        format!("https://{}", self.arm_host())
    }

    pub fn graph_endpoint(self) -> String {
        format!("https://{}", self.graph_host())
    }

    pub fn arm_scope(self) -> String {
        format!("https://{}/.default", self.arm_host())
    }

    pub fn graph_scope(self) -> String {
        format!("https://{}/.default", self.graph_host())
    }

    /// Key Vault's token scope: the suffix is the resource (`https://vault.azure.net/.default`).
    pub fn key_vault_scope(self) -> String {
        format!("https://{}/.default", self.key_vault_suffix())
    }

    pub fn managed_hsm_scope(self) -> String {
        format!("https://{}/.default", self.managed_hsm_suffix())
    }

    /// Service Bus uses one audience in every cloud.
    pub fn service_bus_scope(self) -> String {
        "https://servicebus.azure.net/.default".to_owned()
    }

    /// Audience of the managed-identity token presented as a federated client assertion.
    pub fn token_exchange_audience(self) -> &'static str {
        match self {
            Self::Public => "api://AzureADTokenExchange",
            Self::UsGovernment => "api://AzureADTokenExchangeUSGov",
            Self::China => "api://AzureADTokenExchangeChina",
        }
    }

    /// The federated identity credential issuer for managed identities of `tenant`.
    pub fn fic_issuer(self, tenant: &str) -> String {
        format!("https://{}/{tenant}/v2.0", self.login_host())
    }

    /// Where a customer's administrator grants tenant-wide consent (which creates the service principal).
    pub fn admin_consent_url(self, customer_tenant: &str, app_client_id: &str) -> String {
        format!("https://{}/{customer_tenant}/adminconsent?client_id={app_client_id}", self.login_host())
    }

    /// The transport's allow-list: exactly the ARM, login and Graph hosts, or one DNS label in front of the Key
    /// Vault, Managed HSM or Service Bus suffix.
    pub fn allowed_host(self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if host == self.arm_host() || host == self.login_host() || host == self.graph_host() {
            return true;
        }
        [self.key_vault_suffix(), self.managed_hsm_suffix(), self.service_bus_suffix()]
            .iter()
            .any(|suffix| single_label_under(&host, suffix))
    }
}

/// True when `host` is `{label}.{suffix}` with one non-empty DNS label.
fn single_label_under(host: &str, suffix: &str) -> bool {
    host.strip_suffix(suffix)
        .and_then(|rest| rest.strip_suffix('.'))
        .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

/// True for this machine: `localhost`, 127.0.0.0/8 and `::1` (bracketed or not, as URLs write IPv6 hosts). The only
/// destinations the test seam and the App Service managed-identity endpoint may use over plain `http://`.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_accepts_only_cloud_endpoints() {
        let cloud = Cloud::Public;
        for ok in [
            "management.azure.com",
            "login.microsoftonline.com",
            "graph.microsoft.com",
            "kv1.vault.azure.net",
            "h.managedhsm.azure.net",
            "ns.servicebus.windows.net",
            "KV1.Vault.Azure.Net",
        ] {
            assert!(cloud.allowed_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "x.vault.azure.net.evil.com",
            "a.b.vault.azure.net",
            "vault.azure.net",
            ".vault.azure.net",
            "169.254.169.254",
            "management.azure.com.evil",
            "kv.vault.usgovcloudapi.net",
        ] {
            assert!(!cloud.allowed_host(bad), "{bad}");
        }
    }

    #[test]
    fn names_round_trip() {
        for cloud in [Cloud::Public, Cloud::UsGovernment, Cloud::China] {
            assert_eq!(cloud.to_string().parse::<Cloud>(), Ok(cloud));
        }
        assert!("Mars".parse::<Cloud>().is_err());
    }

    #[test]
    fn loopback_hosts_are_this_machine_only() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "[::1]", "::1"] {
            assert!(super::is_loopback_host(host), "{host}");
        }
        for host in ["localhost.example.com", "10.0.0.1", "169.254.169.254", "[::2]", "", "0.0.0.0"] {
            assert!(!super::is_loopback_host(host), "{host}");
        }
    }
}
