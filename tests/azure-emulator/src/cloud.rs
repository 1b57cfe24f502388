//! Host names and token audiences of each Azure cloud, as the emulator recognises them.

/// One of the clouds the handler supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cloud {
    #[default]
    Public,
    UsGovernment,
    China,
}

/// Which emulated service a host name belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    Arm,
    Login,
    Graph,
    /// Key Vault or Managed HSM; the vault name is the first DNS label.
    KeyVault {
        vault: String,
        managed_hsm: bool,
    },
    /// Service Bus; the namespace name is the first DNS label.
    ServiceBus {
        namespace: String,
    },
}

impl Cloud {
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "AzureCloud" | "AzurePublicCloud" | "public" => Ok(Self::Public),
            "AzureUSGovernment" | "usgov" => Ok(Self::UsGovernment),
            "AzureChinaCloud" | "china" => Ok(Self::China),
            other => Err(format!("unknown cloud {other:?}")),
        }
    }

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

    pub fn vault_suffix(self) -> &'static str {
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

    pub fn servicebus_suffix(self) -> &'static str {
        match self {
            Self::Public => "servicebus.windows.net",
            Self::UsGovernment => "servicebus.usgovcloudapi.net",
            Self::China => "servicebus.chinacloudapi.cn",
        }
    }

    /// Audience of managed-identity tokens meant for the federated exchange.
    pub fn token_exchange_audience(self) -> &'static str {
        match self {
            Self::Public => "api://AzureADTokenExchange",
            Self::UsGovernment => "api://AzureADTokenExchangeUSGov",
            Self::China => "api://AzureADTokenExchangeChina",
        }
    }

    /// Classifies a host name across *all* clouds (a request may target another cloud than the scenario's).
    pub fn service_for_host(host: &str) -> Option<(Cloud, Service)> {
        let host = host.to_ascii_lowercase();
        for cloud in [Self::Public, Self::UsGovernment, Self::China] {
            if host == cloud.arm_host() {
                return Some((cloud, Service::Arm));
            }
            if host == cloud.login_host() {
                return Some((cloud, Service::Login));
            }
            if host == cloud.graph_host() {
                return Some((cloud, Service::Graph));
            }
            let first_label = |suffix: &str| {
                host.strip_suffix(suffix)
                    .and_then(|rest| rest.strip_suffix('.'))
                    .filter(|label| !label.is_empty() && !label.contains('.'))
                    .map(str::to_owned)
            };
            if let Some(vault) = first_label(cloud.vault_suffix()) {
                return Some((cloud, Service::KeyVault { vault, managed_hsm: false }));
            }
            if let Some(vault) = first_label(cloud.managed_hsm_suffix()) {
                return Some((cloud, Service::KeyVault { vault, managed_hsm: true }));
            }
            if let Some(namespace) = first_label(cloud.servicebus_suffix()) {
                return Some((cloud, Service::ServiceBus { namespace }));
            }
        }
        None
    }
}
