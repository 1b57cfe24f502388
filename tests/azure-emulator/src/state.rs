//! Everything the emulator knows, shared by all services: the world built from the scenario, the Service Bus
//! broker, the request log, fault rules, the token minter and the clock.

use std::sync::Mutex;

use crate::clock::Clock;
use crate::scenario::{Change, Scenario};
use crate::{arm, cloud, entra, faults, host, keyvault, reqlog, servicebus};

/// State shared by every request handler and background task.
#[derive(Debug)]
pub struct Shared {
    /// The emulator's own base URL (`http://127.0.0.1:PORT`).
    pub base_url: String,
    pub clock: Clock,
    pub world: Mutex<World>,
    pub bus: servicebus::Bus,
    pub log: reqlog::RequestLog,
    pub faults: faults::Faults,
    pub tokens: entra::TokenMinter,
    pub host: host::HostState,
    /// The secret the managed-identity endpoint expects in `X-IDENTITY-HEADER` (App Service's `IDENTITY_HEADER`).
    pub identity_header: String,
}

/// The Entra, ARM and Key Vault side of the emulated world. Each part owns its own rules.
#[derive(Debug, Default)]
pub struct World {
    pub cloud: cloud::Cloud,
    pub directory: entra::Directory,
    pub arm: arm::ArmState,
    pub vaults: keyvault::Vaults,
}

impl Shared {
    pub fn new(base_url: String) -> Self {
        let clock = Clock::default();
        Self {
            base_url,
            bus: servicebus::Bus::new(clock.clone()),
            tokens: entra::TokenMinter::new(clock.clone()),
            clock,
            world: Mutex::new(World::default()),
            log: reqlog::RequestLog::default(),
            faults: faults::Faults::default(),
            host: host::HostState::default(),
            identity_header: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Replaces the whole world with `scenario`.
    pub fn load(&self, scenario: &Scenario) -> Result<(), String> {
        let world = World::from_scenario(scenario)?;
        self.bus.load(&scenario.service_bus, world.cloud)?;
        *self.world.lock().expect("world lock poisoned") = world;
        Ok(())
    }

    /// Applies run-time changes in order; stops at the first one that does not apply.
    pub fn apply(&self, changes: &[Change]) -> Result<(), String> {
        let mut world = self.world.lock().expect("world lock poisoned");
        for change in changes {
            world.apply(change)?;
        }
        Ok(())
    }
}

impl World {
    pub fn from_scenario(scenario: &Scenario) -> Result<Self, String> {
        let cloud = cloud::Cloud::from_name(scenario.cloud.as_deref().unwrap_or("AzureCloud"))?;
        Ok(Self {
            cloud,
            directory: entra::Directory::from_scenario(scenario)?,
            arm: arm::ArmState::from_scenario(scenario)?,
            vaults: keyvault::Vaults::from_scenario(scenario, cloud)?,
        })
    }

    pub fn apply(&mut self, change: &Change) -> Result<(), String> {
        match change {
            Change::AddServicePrincipal { .. }
            | Change::RemoveServicePrincipal { .. }
            | Change::AddFederatedCredential { .. } => self.directory.apply(change),
            Change::GrantRole { .. }
            | Change::RevokeRole { .. }
            | Change::SetKeyEnabled { .. }
            | Change::AddKey { .. }
            | Change::SetPurgeProtection { .. } => self.vaults.apply(change),
            Change::SetArmDenials { .. } => self.arm.apply(change),
        }
    }
}
