//! Propagation delays: a service principal, a role assignment or a federated credential created, changed or removed
//! during a run is visible to its writer at once (Graph, the control surface's state dump) but reaches the services
//! that read replicas (token issuance, authorization) only after a delay, measured on the emulator's clock.
//!
//! [`Pending`] keeps, per changed object, what the replicas still show and until when; everything else reads the
//! latest value. The defaults of [`Delays`] come from Microsoft's documentation (see each constant).

use std::time::Duration;

use time::OffsetDateTime;

use crate::scenario::Propagation;

/// Azure RBAC: "When you assign roles or remove role assignments, it can take up to 10 minutes for changes to take
/// effect." (learn.microsoft.com/azure/role-based-access-control/troubleshooting, "Symptom - Role assignment changes
/// are not being detected"; older revisions of the page said 30 minutes).
pub const ROLE_ASSIGNMENT_SECONDS: u64 = 600;

/// Entra workload identity federation: "It takes time for the federated identity credential to be propagated
/// throughout a region after being initially configured. A token request made several minutes after configuring the
/// federated identity credential may fail … AADSTS70021" (learn.microsoft.com/entra/workload-id/
/// workload-identity-federation-considerations, "Time for federated credential changes to propagate"; the AKS
/// workload-identity pages say "it might lead to failure for a couple of minutes"). Several minutes: 5.
pub const FEDERATED_CREDENTIAL_SECONDS: u64 = 300;

/// Entra replicates directory writes asynchronously, so "a newly created object [may] return a Not Found"
/// (devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra, 2026). Microsoft gives no
/// figure for a service principal created by admin consent to reach token issuance; 2 minutes is our choice (listed
/// under "Known differences").
pub const SERVICE_PRINCIPAL_SECONDS: u64 = 120;

/// The delays in force, from the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delays {
    pub service_principal: Duration,
    pub role_assignment: Duration,
    pub federated_credential: Duration,
}

impl From<&Propagation> for Delays {
    fn from(propagation: &Propagation) -> Self {
        Self {
            service_principal: Duration::from_secs(propagation.service_principal_seconds),
            role_assignment: Duration::from_secs(propagation.role_assignment_seconds),
            federated_credential: Duration::from_secs(propagation.federated_credential_seconds),
        }
    }
}

impl Default for Delays {
    fn default() -> Self {
        Self::from(&Propagation::default())
    }
}

/// Changes that readers of replicas do not see yet, keyed by object.
#[derive(Debug, Clone)]
pub struct Pending<K, T> {
    changes: Vec<Change<K, T>>,
}

#[derive(Debug, Clone)]
struct Change<K, T> {
    key: K,
    /// What replicas show until `effective_at` (`None`: the object does not exist for them).
    before: Option<T>,
    effective_at: OffsetDateTime,
}

impl<K, T> Default for Pending<K, T> {
    fn default() -> Self {
        Self { changes: Vec::new() }
    }
}

impl<K: PartialEq + Clone, T: Clone> Pending<K, T> {
    /// Records a change to `key` made at `now`, *before* the writer applies it: `latest` is the value the writer saw
    /// until now. Replicas keep showing what they showed at `now` until `now + delay`; a change during a window
    /// restarts it. A zero delay records nothing.
    pub fn record(&mut self, key: K, latest: Option<&T>, now: OffsetDateTime, delay: Duration) {
        let seen = self.view(&key, latest, now).cloned();
        self.changes.retain(|change| change.key != key && change.effective_at > now);
        if delay.is_zero() {
            return;
        }
        let effective_at = now + time::Duration::try_from(delay).unwrap_or(time::Duration::MAX);
        self.changes.push(Change { key, before: seen, effective_at });
    }

    /// What a replica shows of `key` at `now`, given the writer's `latest` value.
    pub fn view<'a>(&'a self, key: &K, latest: Option<&'a T>, now: OffsetDateTime) -> Option<&'a T> {
        match self.in_window(key, now) {
            Some(change) => change.before.as_ref(),
            None => latest,
        }
    }

    /// When the change to `key` reaches the replicas, if it has not yet.
    pub fn effective_at(&self, key: &K, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.in_window(key, now).map(|change| change.effective_at)
    }

    /// Everything a replica shows at `now` of one collection: the writer's `latest` objects as replicas see them,
    /// plus objects of the collection (keys for which `in_collection` holds) whose removal has not propagated yet.
    pub fn effective<'a>(
        &'a self,
        latest: &'a [T],
        key_of: impl Fn(&T) -> K,
        in_collection: impl Fn(&K) -> bool,
        now: OffsetDateTime,
    ) -> Vec<&'a T> {
        let mut seen: Vec<&T> = latest.iter().filter_map(|item| self.view(&key_of(item), Some(item), now)).collect();
        let lingering = self.changes.iter().filter(|change| now < change.effective_at && in_collection(&change.key));
        let lingering = lingering.filter_map(|change| {
            let removed = !latest.iter().any(|item| key_of(item) == change.key);
            change.before.as_ref().filter(|_| removed)
        });
        seen.extend(lingering);
        seen
    }

    fn in_window(&self, key: &K, now: OffsetDateTime) -> Option<&Change<K, T>> {
        self.changes.iter().find(|change| &change.key == key && now < change.effective_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    #[test]
    fn an_addition_appears_after_the_delay() {
        let mut pending: Pending<&str, u32> = Pending::default();
        pending.record("a", None, at(100), Duration::from_secs(60));
        let latest = [7];
        assert_eq!(pending.view(&"a", Some(&latest[0]), at(159)), None);
        assert_eq!(pending.view(&"a", Some(&latest[0]), at(160)), Some(&7));
        assert!(pending.effective(&latest, |_| "a", |_| true, at(159)).is_empty());
        assert_eq!(pending.effective(&latest, |_| "a", |_| true, at(160)), vec![&7]);
        assert_eq!(pending.effective_at(&"a", at(120)), Some(at(160)));
    }

    #[test]
    fn a_removal_lingers_until_the_delay() {
        let mut pending: Pending<&str, u32> = Pending::default();
        pending.record("a", Some(&7), at(100), Duration::from_secs(60));
        let latest: [u32; 0] = [];
        assert_eq!(pending.effective(&latest, |_| "a", |_| true, at(159)), vec![&7]);
        assert!(pending.effective(&latest, |_| "a", |_| true, at(160)).is_empty());
        assert!(pending.effective(&latest, |_| "a", |key| *key != "a", at(159)).is_empty(), "another collection");
    }

    #[test]
    fn a_change_in_the_window_restarts_it_and_zero_records_nothing() {
        let mut pending: Pending<&str, u32> = Pending::default();
        pending.record("a", None, at(100), Duration::from_secs(60));
        pending.record("a", Some(&1), at(130), Duration::from_secs(60));
        assert_eq!(pending.view(&"a", Some(&2), at(170)), None, "replicas still saw nothing at 130");
        assert_eq!(pending.view(&"a", Some(&2), at(190)), Some(&2));
        let mut instant: Pending<&str, u32> = Pending::default();
        instant.record("a", None, at(100), Duration::ZERO);
        assert_eq!(instant.view(&"a", Some(&3), at(100)), Some(&3));
    }
}
