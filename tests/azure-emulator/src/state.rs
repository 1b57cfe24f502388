//! Everything the emulator knows, shared by all services: the world built from the scenario, the Service Bus
//! broker, the request log, fault rules, the token minter and the clock.

use std::sync::Mutex;

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::propagation::Delays;
use crate::rbac::{Rbac, Realm};
use crate::scenario::{Change, Scenario};
use crate::{arm, cloud, entra, faults, host, keyvault, limits, reqlog, servicebus};

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
    /// Latency, request limits and the time scale (`/_emulator/limits`).
    pub limits: limits::Limits,
    pub tokens: entra::TokenMinter,
    pub host: host::HostState,
    /// The secret the managed-identity endpoint expects in `X-IDENTITY-HEADER` (App Service's `IDENTITY_HEADER`).
    pub identity_header: String,
}

/// The Entra, ARM, Key Vault and authorization side of the emulated world. Each part owns its own rules.
#[derive(Debug, Default)]
pub struct World {
    pub cloud: cloud::Cloud,
    pub directory: entra::Directory,
    pub arm: arm::ArmState,
    pub vaults: keyvault::Vaults,
    /// Role definitions and assignments for ARM, Key Vault and Service Bus.
    pub rbac: Rbac,
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
            limits: limits::Limits::default(),
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

    /// Moves emulated time forward (never back) and wakes the Service Bus receivers waiting on it, as
    /// `POST /_emulator/clock/advance` does.
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.clock.advance(by);
        self.bus.clock_advanced();
    }

    /// How many messages of queue or subscription `entity` in namespace `ns` a delivery has locked right now. A clock
    /// jump past their lock's expiry would hand them to a second delivery while the first still runs.
    pub fn locked_messages(&self, ns: &str, entity: &str) -> usize {
        let path = servicebus::EntityPath::parse(entity);
        let snapshot = self.bus.snapshot();
        let namespace = &snapshot["namespaces"][ns.to_ascii_lowercase()];
        let receiver = match &path.subscription {
            Some(subscription) => &namespace["topics"][&path.entity]["subscriptions"][subscription],
            None => &namespace["queues"][&path.entity],
        };
        receiver["locked"].as_array().map_or(0, Vec::len)
    }

    /// Applies run-time changes in order, at the emulator's current time; stops at the first one that does not apply.
    pub fn apply(&self, changes: &[Change]) -> Result<(), String> {
        let now = self.clock.now();
        let mut world = self.world.lock().expect("world lock poisoned");
        for change in changes {
            world.apply(change, now)?;
        }
        crate::arm::daily_key_check(&mut world, now);
        Ok(())
    }
}

impl World {
    pub fn from_scenario(scenario: &Scenario) -> Result<Self, String> {
        let cloud = cloud::Cloud::from_name(scenario.cloud.as_deref().unwrap_or("AzureCloud"))?;
        let delays = Delays::from(&scenario.propagation);
        let vaults = keyvault::Vaults::from_scenario(scenario, cloud)?;
        let mut rbac = Rbac::new(&scenario.role_definitions, delays.role_assignment)?;
        for assignment in &scenario.role_assignments {
            rbac.load(Realm::Arm, assignment).map_err(|e| format!("roleAssignments: {e}"))?;
        }
        for vault in &scenario.vaults {
            let realm = vaults.realm_of(&vault.name)?;
            for assignment in &vault.role_assignments {
                rbac.load(realm.clone(), assignment).map_err(|e| format!("vault {:?}: {e}", vault.name))?;
            }
        }
        Ok(Self {
            cloud,
            directory: entra::Directory::from_scenario(scenario, delays)?,
            arm: arm::ArmState::from_scenario(scenario)?,
            vaults,
            rbac,
        })
    }

    /// Applies one change made at `now` (propagating changes take effect later).
    pub fn apply(&mut self, change: &Change, now: OffsetDateTime) -> Result<(), String> {
        match change {
            Change::AddServicePrincipal { .. }
            | Change::RemoveServicePrincipal { .. }
            | Change::AddFederatedCredential { .. } => self.directory.apply(change, now),
            Change::GrantRole { vault, assignment } => {
                let realm = self.realm(vault.as_deref())?;
                self.rbac.grant(realm, assignment, now)
            }
            Change::RevokeRole { vault, principal_id, role, scope } => {
                let realm = self.realm(vault.as_deref())?;
                self.rbac.revoke(&realm, principal_id, role, scope.as_deref(), now)
            }
            Change::SetKeyEnabled { .. }
            | Change::SetKeyExpiry { .. }
            | Change::AddKey { .. }
            | Change::RotateKey { .. }
            | Change::DeleteKey { .. }
            | Change::RecoverKey { .. }
            | Change::SetKeyTags { .. }
            | Change::SetPurgeProtection { .. } => self.vaults.apply(change, now),
            Change::SetStorageAccountTags { account, tags } => self.arm.set_storage_account_tags(account, tags),
            Change::RunStorageKeyCheck { account } => self.arm.bring_key_check_due(account, now),
        }
    }

    /// The RBAC realm of a change: the named vault's local scopes, or ARM's.
    fn realm(&self, vault: Option<&str>) -> Result<Realm, String> {
        match vault {
            Some(name) => self.vaults.realm_of(name),
            None => Ok(Realm::Arm),
        }
    }
}
