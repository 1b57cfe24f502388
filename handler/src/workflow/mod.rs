//! The onboarding workflow: validate, then run each step as a reconciler (observe, compare, act on a difference),
//! and decide the message's fate when a step fails.
//!
//! Steps, in order (the article's steps in brackets, reference `cross-tenant-cmk.md` §1):
//! 1. validate the message (pure; nothing is called before it passes);
//! 2. optionally register the legacy preview feature and re-register `Microsoft.Storage` [P0a, P0b];
//! 3. the ISV identity chain: the CMK identity exists and the app trusts it [2, 3];
//! 4. customer preflight as the app in the customer tenant: key checks and a wrap/unwrap round trip [11], while the
//!    storage account is read; an attempt older than the onboarding recorded in the account's tags is superseded and
//!    stops there (`account_tags`);
//! 5. configure the storage account with one PATCH (encryption and tags) when it differs [12]; or, when the message
//!    has `create` and the account does not exist, create it with one PUT that carries the key, the identity and the
//!    tags, and follow the creation to its end (`new_account`, decision 29);
//! 6. verify the PATCH's answer (read the account back only when that answer does not prove it) [13], then publish
//!    `completed` (and `superseded` for the older onboarding it replaced).
//!
//! An offboarding message (`kind: offboarding`) runs `offboarding::run` instead: guard, one PATCH, verify, `offboarded`.
//!
//! Every step may run again after a crash at any point; two deliveries of one message converge on one result.

pub mod account_tags;
pub mod fan_out;
pub mod identity_chain;
pub mod key_checks;
pub mod key_watch;
pub mod new_account;
pub mod offboarding;
pub mod settle;
pub mod status;
pub mod storage;
pub mod watch;
pub mod watch_record;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use time::OffsetDateTime;
use tracing::Instrument;

use crate::azure::credentials::CustomerIdentity;
use crate::azure::{AzureClients, ClientConfig, RetryOptions, deadline, pacing};
use crate::config::{FicMode, IsvIdentity, Settings};
use crate::contract::{
    AccountRequest, DeliveredSessionId, KIND_OFFBOARDING, KIND_ONBOARDING, KIND_PROBE, ValidatedMessage,
    ValidatedOnboarding, ValidationPolicy, check_session, parse_message,
};
use crate::decide::{AttemptState, InvocationTimes, RetryPolicy, invocation_times};
use crate::delivery::IncomingMessage;
use crate::error::{CustomerAction, Error};
use crate::order::{ORDER_PROPERTY, OnboardingOrder};
use account_tags::{AccountRecord, OwnTags, Standing};
use identity_chain::IdentityChain;
use key_checks::KeyFacts;
use storage::{AppliedEncryption, DesiredEncryption};

/// Everything an invocation needs, built once at startup.
#[derive(Debug)]
pub struct App {
    pub settings: Settings,
    pub clients: AzureClients,
    pub policy: ValidationPolicy,
    pub retry_policy: RetryPolicy,
    /// How long an invocation may work and when it must answer, from `functionTimeout` and the retry budget.
    pub times: InvocationTimes,
    caches: Caches,
}

/// Per-process memory of what needs checking only once: ARM and Graph state that does not change per message.
#[derive(Debug, Default)]
struct Caches {
    /// Identity chains already verified, by UAMI resource id (lowercase) + app object id.
    identity_chains: Mutex<BTreeMap<String, IdentityChain>>,
    /// Held while one invocation looks a chain up, so the others that arrive with it (a burst of sessions right
    /// after a start) wait for its answer instead of each reading ARM and Graph. Waiting is bounded by the waiter's
    /// own step deadline (`bounded`).
    identity_chain_lookup: tokio::sync::Mutex<()>,
    /// Subscriptions where the preview feature and provider registration were confirmed.
    registered_subscriptions: Mutex<HashSet<String>>,
    /// When this process re-registered `Microsoft.Storage`, by subscription (lowercase).
    provider_registrations: Mutex<BTreeMap<String, OffsetDateTime>>,
}

/// How an invocation ended when the message can be completed (the host answers 2xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Completed {
        onboarding_id: String,
    },
    RetryScheduled {
        onboarding_id: String,
        at: OffsetDateTime,
        reason: String,
    },
    DeadLettered {
        onboarding_id: String,
        reason: String,
    },
    /// No marked copy could carry the reason (see `settle::dead_letter`): the `failed` event and a reason record went
    /// out, and the delivery must fail so Service Bus dead-letters the original itself (the host answers non-2xx).
    DeadLetteredNatively {
        onboarding_id: String,
        reason: String,
    },
    /// A newer onboarding configured the account: nothing changed, `superseded` published.
    Superseded {
        onboarding_id: String,
        by: String,
    },
}

/// What the steps of an attempt ended with.
#[derive(Debug)]
enum Outcome {
    /// The account is configured; `replaced` is the older onboarding that had configured it before.
    Applied { chain: Box<IdentityChain>, applied: AppliedEncryption, replaced: Option<AccountRecord> },
    /// A newer onboarding configured the account.
    Superseded { by: AccountRecord },
}

impl App {
    pub fn new(settings: Settings) -> Result<Self, String> {
        let config = ClientConfig {
            cloud: settings.cloud,
            test_proxy: settings.test_proxy_url.clone(),
            http_timeout: settings.http_timeout,
            retry: RetryOptions {
                base_delay: settings.retry_base_delay,
                max_delay: settings.retry_max_delay,
                max_attempts: 8,
                budget: settings.retry_budget,
            },
            service_bus_namespace: settings.service_bus_namespace.clone(),
            uami_client_id: settings.default_identity.uami_client_id.clone(),
        };
        let clients = AzureClients::new(&config)?;
        Ok(Self::with_clients(settings, clients))
    }

    /// For callers that build their own clients (the ops CLI).
    pub fn with_clients(settings: Settings, clients: AzureClients) -> Self {
        let policy = settings.validation_policy();
        let retry_policy = RetryPolicy::from_settings(&settings);
        let times = invocation_times(settings.function_timeout, settings.retry_budget);
        Self { settings, clients, policy, retry_policy, times, caches: Caches::default() }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.settings.max_message_bytes
    }

    /// When this process re-registered the storage provider in `subscription`, if it did.
    pub fn provider_registered_at(&self, subscription: &str) -> Option<OffsetDateTime> {
        let registrations = self.caches.provider_registrations.lock().unwrap_or_else(|p| p.into_inner());
        registrations.get(&subscription.to_ascii_lowercase()).copied()
    }
}

/// Processes one delivery. `Ok` means the delivery may be completed (done, retry scheduled, or dead-letter copy
/// sent); `Err` means even settling failed and the host must redeliver.
///
/// One deadline per invocation: the steps get [`InvocationTimes::work`] from now, every call, retry, poll and token
/// fetch within; an attempt that runs out of it fails as transient, so a delayed retry is scheduled. Settling gets
/// until [`InvocationTimes::answer`], well before the host's `functionTimeout`.
pub async fn process(app: &App, message: &IncomingMessage) -> Result<Settlement, Error> {
    let started = tokio::time::Instant::now();
    let at = |offset| started.checked_add(offset).unwrap_or(started + std::time::Duration::from_secs(86_400 * 365));
    let (work_until, answer_by) = (at(app.times.work), at(app.times.answer));
    let attempt = settle::attempt_state(&message.application_properties, OffsetDateTime::now_utc());
    let work = bounded(answer_by, "settle the message", async {
        let validated = match parse_message(&message.body, &app.policy) {
            Ok(validated) => validated,
            Err(invalid) => {
                tracing::warn!(code = invalid.code, field = %invalid.field, "rejected onboarding message: {invalid}");
                return settle::after_failure(app, message, None, Error::Invalid(invalid), &attempt, None).await;
            }
        };
        tracing::Span::current().record("onboarding_id", validated.onboarding_id());
        if let Err(outside) = check_session(delivered_session(message), validated.storage_account()) {
            tracing::warn!(code = outside.code, "message outside its account's session: {outside}");
            let outside = Error::Invalid(outside);
            return settle::after_failure(app, message, Some(&validated), outside, &attempt, None).await;
        }
        let onboarding = match &validated {
            ValidatedMessage::Onboarding(onboarding) => onboarding,
            ValidatedMessage::Probe(request) => {
                let steps =
                    Box::pin(watch::probe(app, request).instrument(tracing::info_span!("step", step = "probe")));
                return match bounded(work_until, "the probe", steps).await {
                    Ok(result) => {
                        settle::after_probe(app, message, &validated, request, result.as_ref(), &attempt).await
                    }
                    Err(error) => settle::after_failure(app, message, Some(&validated), error, &attempt, None).await,
                };
            }
            ValidatedMessage::Offboarding(offboarding) => {
                let steps = Box::pin(
                    offboarding::run(app, offboarding).instrument(tracing::info_span!("step", step = "offboard")),
                );
                return match bounded(work_until, "the offboarding", steps).await {
                    Ok(plan) => settle::after_offboarding(app, message, offboarding, &plan).await,
                    Err(error) => settle::after_failure(app, message, Some(&validated), error, &attempt, None).await,
                };
            }
        };
        let Some(order) = onboarding_order(message) else {
            let unknown = Error::Refused {
                code: "OnboardingOrderUnverifiable",
                message: "the delivery's EnqueuedTimeUtc or SequenceNumber is unknown (a body member hid it under the \
                          host's string trigger encoding; use \"dataType\": \"binary\"), so the onboarding's order \
                          cannot be told"
                    .to_owned(),
            };
            return settle::after_failure(app, message, Some(&validated), unknown, &attempt, None).await;
        };
        match bounded(work_until, "the onboarding steps", Box::pin(run_steps(app, onboarding, &attempt, order))).await {
            Ok(Outcome::Applied { chain, applied, replaced }) => {
                let done = settle::Done { chain: &chain, applied: &applied, replaced: replaced.as_ref(), order };
                settle::after_success(app, message, onboarding, &done, &attempt).await
            }
            Ok(Outcome::Superseded { by }) => settle::superseded(app, message, onboarding, order, &by).await,
            Err(error) => settle::after_failure(app, message, Some(&validated), error, &attempt, Some(order)).await,
        }
    });
    // A retry copy came when the broker's clock said its wait was over: a hold this process remembers past the
    // deadline defers it again only if a 429 renewed the hold after the copy was sent (decision 24). A copy that does
    // not say when it was sent counts as sent now.
    match attempt.attempt > 1 {
        true => {
            let age = attempt.copied_at.map_or(std::time::Duration::ZERO, |at| {
                std::time::Duration::try_from(OffsetDateTime::now_utc() - at).unwrap_or(std::time::Duration::ZERO)
            });
            let copied_at = tokio::time::Instant::now().checked_sub(age).unwrap_or(started);
            pacing::as_scheduled_copy(copied_at, work).await
        }
        false => work.await,
    }
}

/// One key-watch run (the timer trigger): list, and send one probe per onboarded account, within the invocation's
/// work time.
pub async fn watch_keys(
    app: &std::sync::Arc<App>,
    invocation_id: &str,
    timer: crate::delivery::TimerRun,
) -> Result<watch::RunSummary, Error> {
    let until = tokio::time::Instant::now() + app.times.work;
    bounded(until, "the key watch", Box::pin(watch::run(app, invocation_id, timer))).await
}

/// Runs `future` under the deadline `until` (callers box the step futures: nested, they are large enough in a debug
/// build to overflow a worker thread's 2 MiB stack when moved, which a burst of onboardings did); if it is still running then, it is dropped and the result is a
/// transient `InvocationTimeUp` (every step is a reconciler, so the next attempt picks up wherever this one stopped).
async fn bounded<T>(
    until: tokio::time::Instant,
    what: &'static str,
    future: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    deadline::within(until, async {
        deadline::run(future).await.unwrap_or_else(|| {
            Err(Error::Pending {
                code: "InvocationTimeUp",
                message: format!("{what} ran out of the invocation's time"),
            })
        })
    })
    .await
}

/// The order of the delivered message's onboarding: carried by a copy, or this delivery's own (`crate::order`).
fn onboarding_order(message: &IncomingMessage) -> Option<OnboardingOrder> {
    let carried = message.application_properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(ORDER_PROPERTY));
    OnboardingOrder::of_delivery(carried.map(|(_, v)| v), message.broker_order)
}

fn delivered_session(message: &IncomingMessage) -> DeliveredSessionId<'_> {
    match (&message.session_id, message.session_id_shadowed()) {
        (_, true) => DeliveredSessionId::ShadowedByBody,
        (Some(id), false) => DeliveredSessionId::Present(id),
        (None, false) => DeliveredSessionId::Absent,
    }
}

async fn run_steps(
    app: &App,
    onboarding: &ValidatedOnboarding,
    attempt: &AttemptState,
    order: OnboardingOrder,
) -> Result<Outcome, Error> {
    if app.settings.register_preview_feature {
        ensure_preview_registration(app, &onboarding.storage_account.subscription_id, attempt.provider_registered_at)
            .instrument(tracing::info_span!("step", step = "preview_registration"))
            .await?;
    }
    let chain = ensure_identity_chain(app, &onboarding.identity)
        .instrument(tracing::info_span!("step", step = "identity_chain"))
        .await?;
    // The storage account is read while the customer's side is checked: neither depends on the other, and the read
    // changes nothing, so the critical path is the longer of the two, not their sum. An attempt a newer onboarding
    // superseded stops first, whatever the state of its own key (a retry waiting on a customer who has moved on must
    // not wait out its deadline); otherwise a customer-side failure wins (it is what the producer must hear about),
    // and no write happens before the preflight passed.
    let account_id = onboarding.storage_account.arm_id();
    // While the subscription's write window is spent, the retry copy waits instead of reading the account and the
    // customer's key again only to find the same (decision 24).
    app.clients.arm.expect_write_turn(&account_id)?;
    let (preflight, current) = tokio::join!(
        customer_preflight(app, onboarding, &chain)
            .instrument(tracing::info_span!("step", step = "customer_preflight")),
        app.clients
            .arm
            .get_storage_account(&account_id)
            .instrument(tracing::info_span!("step", step = "read_storage_account")),
    );
    let standing = current
        .as_ref()
        .ok()
        .map(|account| account_tags::standing(account_tags::recorded(&account.raw), &onboarding.onboarding_id, order));
    let replaced = match standing {
        Some(Standing::Superseded { by }) => {
            tracing::info!(by = %by.onboarding_id, "a newer onboarding configured the account; superseded");
            return Ok(Outcome::Superseded { by });
        }
        Some(Standing::Current { replaces }) => replaces,
        None => None,
    };
    preflight?;
    let own =
        OwnTags { onboarding_id: &onboarding.onboarding_id, order, customer_tenant_id: &onboarding.customer_tenant_id };
    let current = match (current, &onboarding.create) {
        // The `create` option (decision 29): a missing account is created with the key from its first PUT.
        (Err(missing), Some(create)) if missing.reason_code() == STORAGE_ACCOUNT_NOT_FOUND => {
            let applied = create_storage(app, onboarding, &chain, create, &own)
                .instrument(tracing::info_span!("step", step = "create_storage"))
                .await?;
            return Ok(Outcome::Applied { chain: Box::new(chain), applied, replaced });
        }
        (current, _) => current?,
    };
    check_existing_account(onboarding, &current.raw)?;
    let applied = configure_storage(app, onboarding, &chain, current, &own)
        .instrument(tracing::info_span!("step", step = "configure_storage"))
        .await?;
    Ok(Outcome::Applied { chain: Box::new(chain), applied, replaced })
}

/// The reason code a missing storage account is classified with (`error::classify`).
const STORAGE_ACCOUNT_NOT_FOUND: &str = "StorageAccountNotFound";

/// An account that exists is onboarded as it is, but not while it is still being created (its creation, ours from an
/// earlier attempt or someone else's, ends first: transient), and, when the message asks to create it, only if it is
/// the account asked for: another location, SKU or kind means someone else's account by this name, never silently
/// taken for the one requested (permanent, nothing written).
fn check_existing_account(onboarding: &ValidatedOnboarding, account: &serde_json::Value) -> Result<(), Error> {
    let account_id = onboarding.storage_account.arm_id();
    if let Some(state) = new_account::still_provisioning(account) {
        return Err(Error::Pending {
            code: "StorageAccountProvisioning",
            message: format!("{account_id} is {state}; it is configured once its creation has finished"),
        });
    }
    let Some(create) = &onboarding.create else { return Ok(()) };
    let differ = new_account::differences(account, create);
    if differ.is_empty() {
        return Ok(());
    }
    Err(Error::Refused {
        code: "StorageAccountDiffers",
        message: format!(
            "{account_id} exists but is not the account this onboarding asks to create: {}",
            differ.join("; ")
        ),
    })
}

/// Creates the account with the customer's key from the first PUT and the onboarding's tags, waits for the
/// long-running operation within the invocation's deadline, and verifies the account it ends with. A wait the
/// deadline cuts is transient (`OperationStillRunning`): the next attempt finds the account and continues from there.
async fn create_storage(
    app: &App,
    onboarding: &ValidatedOnboarding,
    chain: &IdentityChain,
    create: &crate::contract::NewAccount,
    own: &OwnTags<'_>,
) -> Result<AppliedEncryption, Error> {
    let want = desired_encryption(onboarding, chain);
    let account_id = onboarding.storage_account.arm_id();
    let tags = account_tags::merged(&serde_json::Value::Null, own).map_err(|message| Error::IsvConfiguration {
        code: "StorageAccountTagLimit",
        message: format!("{account_id}: {message}"),
    })?;
    let body = new_account::create_body(create, &want, tags);
    let created = app.clients.arm.create_storage_account(&account_id, &body).await?;
    tracing::info!(location = %create.location, sku = %create.sku, kind = %create.kind, "created the storage account");
    if let Some(state) = new_account::still_provisioning(&created.raw) {
        return Err(Error::Pending {
            code: "StorageAccountProvisioning",
            message: format!("{account_id} is still {state} after its creation was reported done"),
        });
    }
    if !account_tags::applied(&created.raw, own) {
        return Err(Error::Verification(format!("{account_id} was created without the onboarding's tags")));
    }
    storage::verify(&created.raw, &want).map_err(Error::Verification)
}

const PREVIEW_FEATURE: &str = "FederatedClientIdentity";
const STORAGE_NAMESPACE: &str = "Microsoft.Storage";

/// Legacy preview registration [P0a, P0b]: register the feature once, poll it to `Registered`; then re-register the
/// provider once (the docs require it after approval) and poll it to `Registered`. Registering restarts a
/// registration in progress, so it is never repeated while one runs: an attempt that registered records it (in this
/// process, and on the message's retry copy as `cmk-provider-registered-at`), and later attempts only poll. Until
/// both are `Registered` the attempt is pending (transient). Confirmed once per subscription per process.
async fn ensure_preview_registration(
    app: &App,
    subscription: &str,
    registered_earlier: Option<OffsetDateTime>,
) -> Result<(), Error> {
    let key = subscription.to_ascii_lowercase();
    if app.caches.registered_subscriptions.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
        return Ok(());
    }
    let pending = |what: String| Error::Pending { code: "PreviewRegistrationPending", message: what };
    let arm = &app.clients.arm;
    let mut feature = arm.get_feature(subscription, STORAGE_NAMESPACE, PREVIEW_FEATURE).await?;
    if matches!(feature.properties.state.as_str(), "NotRegistered" | "Unregistered") {
        feature = arm.register_feature(subscription, STORAGE_NAMESPACE, PREVIEW_FEATURE).await?;
    }
    if feature.properties.state != "Registered" {
        let state = &feature.properties.state;
        return Err(pending(format!("feature {STORAGE_NAMESPACE}/{PREVIEW_FEATURE} is {state} in {subscription}")));
    }
    let mut provider = arm.get_provider(subscription, STORAGE_NAMESPACE).await?;
    let registered = registered_earlier.or_else(|| app.provider_registered_at(subscription));
    let needs_registering = match provider.registration_state.as_str() {
        "Registering" | "Unregistering" => false,
        "NotRegistered" | "Unregistered" => true,
        // Registered: picked up the feature only if re-registered after it was approved, which an earlier attempt did.
        _ => registered.is_none(),
    };
    if needs_registering {
        provider = arm.register_provider(subscription, STORAGE_NAMESPACE).await?;
        let now = OffsetDateTime::now_utc();
        app.caches.provider_registrations.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), now);
    }
    if provider.registration_state != "Registered" {
        let state = &provider.registration_state;
        return Err(pending(format!("provider {STORAGE_NAMESPACE} is {state} in {subscription}")));
    }
    app.caches.registered_subscriptions.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    Ok(())
}

async fn ensure_identity_chain(app: &App, identity: &IsvIdentity) -> Result<IdentityChain, Error> {
    let key = format!("{}|{}", identity.uami_resource_id.to_ascii_lowercase(), identity.app_object_id);
    let cached = || app.caches.identity_chains.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
    if let Some(chain) = cached() {
        return Ok(chain);
    }
    let _lookup = app.caches.identity_chain_lookup.lock().await;
    if let Some(chain) = cached() {
        return Ok(chain);
    }
    let uami = app.clients.arm.get_user_assigned_identity(&identity.uami_resource_id).await?;
    if let Some(configured) = &identity.uami_client_id
        && !configured.eq_ignore_ascii_case(&uami.client_id)
    {
        return Err(Error::IsvConfiguration {
            code: "ManagedIdentityMismatch",
            message: format!(
                "identity {} has client id {}, but the configuration says {configured}",
                identity.uami_resource_id, uami.client_id
            ),
        });
    }
    let want = identity_chain::required_credential(app.settings.cloud, &uami.tenant_id, &uami.principal_id);
    let existing = app.clients.graph.list_federated_credentials(&identity.app_object_id).await?;
    let credential_written_at = match identity_chain::matching_credential(&existing, &want) {
        Some(found) => identity_chain::written_at(found),
        None => {
            let name = app.settings.fic_name_for(identity);
            if app.settings.fic_mode == FicMode::Verify {
                return Err(identity_chain::missing_credential_error(&identity.app_object_id, &want, &name));
            }
            let now = OffsetDateTime::now_utc();
            let stamped = identity_chain::stamped(&want, now);
            app.clients.graph.upsert_federated_credential(&identity.app_object_id, &name, &stamped).await?;
            tracing::info!(name, app_object_id = %identity.app_object_id, "wrote the federated identity credential");
            Some(now)
        }
    };
    let chain = IdentityChain::new(uami, &identity.app_client_id, credential_written_at);
    app.caches.identity_chains.lock().unwrap_or_else(|p| p.into_inner()).insert(key, chain.clone());
    Ok(chain)
}

/// Wrap/unwrap algorithm for the round trip; Storage itself uses RSA-OAEP family algorithms.
const ROUND_TRIP_ALGORITHM: &str = "RSA-OAEP-256";

/// The customer preflight; a federated-credential mismatch right after the handler wrote the credential is reported
/// as propagation (transient), not as misconfiguration.
async fn customer_preflight(app: &App, onboarding: &ValidatedOnboarding, chain: &IdentityChain) -> Result<(), Error> {
    check_customer_key(app, onboarding, chain).await.map_err(|error| {
        identity_chain::while_propagating(error, chain.credential_written_at, OffsetDateTime::now_utc())
    })
}

async fn check_customer_key(app: &App, onboarding: &ValidatedOnboarding, chain: &IdentityChain) -> Result<(), Error> {
    let key = &onboarding.key;
    let tenant = &onboarding.customer_tenant_id;
    let account_id = onboarding.storage_account.arm_id();
    use_customer_key(app, tenant, &key.vault_uri, &key.name, key.version.as_deref(), chain, &account_id).await.map(drop)
}

/// The key checks, the owner's consent to `account_id` and a wrap/unwrap round trip as the app in the customer's
/// tenant; the key as read. Onboardings and the key watch's probes share it, so a consent that disappears is a lost
/// access like a disabled key.
async fn use_customer_key(
    app: &App,
    tenant: &str,
    vault_uri: &str,
    key_name: &str,
    version: Option<&str>,
    chain: &IdentityChain,
    account_id: &str,
) -> Result<crate::azure::keyvault::KeyBundle, Error> {
    let vault = &app.clients.key_vault;
    let caller =
        CustomerIdentity { tenant, app_client_id: &chain.app_client_id, uami_client_id: Some(&chain.uami_client_id) };
    let key = vault.get_key(&caller, vault_uri, key_name, version).await?;
    let facts = KeyFacts {
        kid: key.kid.clone(),
        kty: key.kty.clone(),
        modulus_bits: (!key.n.is_empty()).then(|| key.modulus_bits()),
        key_ops: key.key_ops.clone(),
        enabled: key.attributes.enabled.unwrap_or(true),
        not_before: key.attributes.nbf.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
        expires: key.attributes.exp.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
        recovery_level: key.attributes.recovery_level.clone(),
    };
    key_checks::check_key(&facts, OffsetDateTime::now_utc())?;
    // The confused-deputy defence: the message names the vault and tenant, so only the key's own tags can say that
    // its owner agreed to protect this account. Checked before any storage write.
    if app.settings.require_key_consent {
        key_checks::check_consent(&key.kid, &key.tags, account_id)?;
    }
    // Proves the role allows wrap and unwrap, exactly what Storage will do with the key.
    let probe: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
    let wrapped = vault.wrap_key(&caller, &key.kid, ROUND_TRIP_ALGORITHM, &probe).await?;
    let unwrapped = vault.unwrap_key(&caller, &key.kid, ROUND_TRIP_ALGORITHM, &wrapped).await?;
    if unwrapped != probe {
        return Err(Error::Verification(format!("wrap/unwrap round trip with {} returned other bytes", key.kid)));
    }
    Ok(key)
}

/// Brings the account (`current`, as just read) to the desired configuration with at most one PATCH. The PATCH
/// answers with the updated account (`StorageAccounts_Update` 200, the spec's example shows
/// `currentVersionedKeyIdentifier` in it), so that answer is verified; the account is read back only when the answer
/// does not prove the configuration.
async fn configure_storage(
    app: &App,
    onboarding: &ValidatedOnboarding,
    chain: &IdentityChain,
    current: crate::azure::arm::StorageAccount,
    own: &OwnTags<'_>,
) -> Result<AppliedEncryption, Error> {
    let want = desired_encryption(onboarding, chain);
    let account_id = onboarding.storage_account.arm_id();
    let arm = &app.clients.arm;
    let current = &current.raw;
    if let Some(current_vault) = storage::other_vault_in_use(current, &want)
        && !onboarding.replace_existing_key
    {
        return Err(ownership_conflict(app, onboarding, &current_vault));
    }
    let tags = if account_tags::applied(current, own) {
        None
    } else {
        let merged = account_tags::merged(current, own).map_err(|message| Error::IsvConfiguration {
            code: "StorageAccountTagLimit",
            message: format!("{account_id}: {message}"),
        })?;
        Some(merged)
    };
    let Some(patch) = storage::plan_update(current, &want, tags) else {
        tracing::info!("storage account already configured; nothing to change");
        return storage::verify(current, &want).map_err(Error::Verification);
    };
    let updated = arm.update_storage_account(&account_id, &patch).await?;
    let proven = |account: &serde_json::Value| {
        if !account_tags::applied(account, own) {
            return Err("the storage account does not show the onboarding's tags".to_owned());
        }
        storage::verify(account, &want)
    };
    match proven(&updated.raw) {
        Ok(applied) => Ok(applied),
        Err(unproven) => {
            tracing::info!(%unproven, "the PATCH answer does not prove the configuration; reading the account back");
            let read_back = arm.get_storage_account(&account_id).await?;
            proven(&read_back.raw).map_err(Error::Verification)
        }
    }
}

fn desired_encryption(onboarding: &ValidatedOnboarding, chain: &IdentityChain) -> DesiredEncryption {
    DesiredEncryption {
        vault_uri: onboarding.key.vault_uri.trim_end_matches('/').to_owned(),
        key_name: onboarding.key.name.clone(),
        key_version: onboarding.key.version.clone(),
        uami_id: chain.uami_id.clone(),
        app_client_id: chain.app_client_id.clone(),
    }
}

/// The account already uses a key in `current_vault`: permanent, naming both vaults (and the tenants, where known).
fn ownership_conflict(app: &App, onboarding: &ValidatedOnboarding, current_vault: &str) -> Error {
    let current_host = url::Url::parse(current_vault).ok().and_then(|u| u.host_str().map(str::to_owned));
    let current_tenant = current_host
        .and_then(|host| app.clients.key_vault.known_vault_tenant(&host))
        .map(|tenant| format!(" (tenant {tenant})"))
        .unwrap_or_default();
    Error::Refused {
        code: "StorageAccountUsesAnotherKey",
        message: format!(
            "{} is already encrypted with a key in {current_vault}{current_tenant}; this onboarding asks for {} \
             (tenant {}). It is not re-keyed unless the message sets replaceExistingKey: true",
            onboarding.storage_account.arm_id(),
            onboarding.key.vault_uri.trim_end_matches('/'),
            onboarding.customer_tenant_id
        ),
    }
}

/// One check of a diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub step: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<crate::error::Disposition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What blocks an onboarding message right now, without changing anything anywhere: validation, the identity chain
/// (read-only even in ensure mode), the customer preflight, and whether the storage account would be patched. Ops
/// run it before replaying a dead letter (`DiagnoseOnboarding`, admin-only). An offboarding is diagnosed against the
/// ownership guard, a probe against the account's record and key (`kind` says which).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// The message's kind: `onboarding`, `offboarding` or `probe` (absent when it did not validate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// True when every check passed: a replay should complete.
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onboarding_id: Option<String>,
    pub checks: Vec<Check>,
    /// Whether the storage account still differs from the requested configuration (true for an account the
    /// onboarding's `create` option would create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_needs_update: Option<bool>,
    /// The onboarding the account's tags record (the last one that configured it): a dead letter of an older
    /// onboarding is superseded by it (`cmkctl dlq diagnose` compares the orders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_onboarding: Option<RecordedOnboarding>,
    /// Whether the key's owner consented to this storage account (`given`, `missing`, or `notRequired` when
    /// `CMK_REQUIRE_KEY_CONSENT` is off); absent when the preflight stopped before the key's tags could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_consent: Option<&'static str>,
}

/// [`AccountRecord`] as the diagnosis reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedOnboarding {
    pub onboarding_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onboarding_order: Option<String>,
}

pub async fn diagnose(app: &App, body: &[u8]) -> Diagnosis {
    // The same time rules as an onboarding attempt: every check's calls end within the work time.
    let until = tokio::time::Instant::now() + app.times.work;
    match deadline::within(until, deadline::run(diagnose_checks(app, body))).await {
        Some(diagnosis) => diagnosis,
        None => Diagnosis {
            kind: None,
            ready: false,
            onboarding_id: None,
            checks: vec![Check {
                step: "time",
                ok: false,
                reason_code: Some("InvocationTimeUp".to_owned()),
                disposition: Some(crate::error::Disposition::Transient),
                message: Some("the checks ran out of the invocation's time".to_owned()),
            }],
            storage_needs_update: None,
            recorded_onboarding: None,
            key_consent: None,
        },
    }
}

async fn diagnose_checks(app: &App, body: &[u8]) -> Diagnosis {
    let mut checks = Vec::new();
    let onboarding = match parse_message(body, &app.policy) {
        Ok(ValidatedMessage::Onboarding(onboarding)) => onboarding,
        Ok(ValidatedMessage::Offboarding(request)) => return diagnose_offboarding(app, &request).await,
        Ok(ValidatedMessage::Probe(request)) => return diagnose_probe(app, &request).await,
        Err(invalid) => {
            checks.push(failed("validation", &Error::Invalid(invalid)));
            return Diagnosis { ready: false, onboarding_id: None, checks, ..Diagnosis::default() };
        }
    };
    checks.push(passed("validation"));
    let onboarding_id = Some(onboarding.onboarding_id.clone());
    let chain = match read_identity_chain(app, &onboarding.identity).await {
        Ok(chain) => chain,
        Err(error) => {
            checks.push(failed("identity_chain", &error));
            return Diagnosis { ready: false, onboarding_id, checks, ..Diagnosis::default() };
        }
    };
    checks.push(passed("identity_chain"));
    let preflight = customer_preflight(app, &onboarding, &chain).await;
    let key_consent = match &preflight {
        Ok(()) if app.settings.require_key_consent => Some("given"),
        Ok(()) => Some("notRequired"),
        Err(error) if matches!(error.customer_action(), Some(CustomerAction::ConsentToAccount { .. })) => {
            Some("missing")
        }
        Err(_) => None,
    };
    checks.push(match &preflight {
        Ok(()) => passed("customer_preflight"),
        Err(error) => failed("customer_preflight", error),
    });
    let want = desired_encryption(&onboarding, &chain);
    let (storage_needs_update, recorded_onboarding) =
        match app.clients.arm.get_storage_account(&onboarding.storage_account.arm_id()).await {
            Ok(account) => {
                checks.push(match check_existing_account(&onboarding, &account.raw) {
                    Ok(()) => passed("storage_account"),
                    Err(error) => failed("storage_account", &error),
                });
                let recorded = recorded_onboarding(&account.raw);
                (Some(storage::plan_update(&account.raw, &want, None).is_some()), recorded)
            }
            // The create option: a missing account is what the onboarding creates (decision 29).
            Err(missing) if onboarding.create.is_some() && missing.reason_code() == STORAGE_ACCOUNT_NOT_FOUND => {
                checks.push(passed("storage_account"));
                (Some(true), None)
            }
            Err(error) => {
                checks.push(failed("storage_account", &error));
                (None, None)
            }
        };
    Diagnosis {
        kind: Some(KIND_ONBOARDING),
        ready: checks.iter().all(|c| c.ok),
        onboarding_id,
        checks,
        storage_needs_update,
        recorded_onboarding,
        key_consent,
    }
}

fn passed(step: &'static str) -> Check {
    Check { step, ok: true, reason_code: None, disposition: None, message: None }
}

fn failed(step: &'static str, error: &Error) -> Check {
    Check {
        step,
        ok: false,
        reason_code: Some(error.reason_code().to_owned()),
        disposition: Some(error.disposition()),
        message: Some(error.to_string()),
    }
}

fn recorded_onboarding(account: &serde_json::Value) -> Option<RecordedOnboarding> {
    account_tags::recorded(account).map(|record| RecordedOnboarding {
        onboarding_id: record.onboarding_id,
        onboarding_order: record.order.map(|o| o.to_string()),
    })
}

/// An offboarding: the account as it is now against the ownership guard, without the PATCH (`offboarding::guard`).
async fn diagnose_offboarding(app: &App, request: &AccountRequest) -> Diagnosis {
    let mut diagnosis = Diagnosis {
        kind: Some(KIND_OFFBOARDING),
        onboarding_id: Some(request.onboarding_id.clone()),
        checks: vec![passed("validation")],
        ..Diagnosis::default()
    };
    match app.clients.arm.get_storage_account(&request.storage_account.arm_id()).await {
        Ok(account) => {
            diagnosis.checks.push(passed("storage_account"));
            diagnosis.recorded_onboarding = recorded_onboarding(&account.raw);
            match offboarding::guard(&account.raw, request) {
                Ok(plan) => {
                    diagnosis.checks.push(passed("ownership"));
                    diagnosis.storage_needs_update = Some(plan.patch.is_some());
                }
                Err(error) => diagnosis.checks.push(failed("ownership", &error)),
            }
        }
        Err(error) => diagnosis.checks.push(failed("storage_account", &error)),
    }
    diagnosis.ready = diagnosis.checks.iter().all(|c| c.ok);
    diagnosis
}

/// A key-watch probe: whether the account still records its onboarding (otherwise a replay does nothing), and the
/// probe's own key checks as the app against the key the account uses, read-only. The next timer run probes the
/// account anyway, so a probe dead letter can simply be purged.
async fn diagnose_probe(app: &App, request: &AccountRequest) -> Diagnosis {
    let mut diagnosis = Diagnosis {
        kind: Some(KIND_PROBE),
        onboarding_id: Some(request.onboarding_id.clone()),
        checks: vec![passed("validation")],
        ..Diagnosis::default()
    };
    let account_id = request.storage_account.arm_id();
    let account = match app.clients.arm.get_storage_account(&account_id).await {
        Ok(account) => account,
        Err(error) => {
            diagnosis.checks.push(failed("storage_account", &error));
            return diagnosis;
        }
    };
    diagnosis.checks.push(passed("storage_account"));
    diagnosis.recorded_onboarding = recorded_onboarding(&account.raw);
    // The probe's own rule (`watch::probe`): the recorded onboarding, and its tenant when recorded.
    let record = account_tags::recorded(&account.raw);
    let watched = record.as_ref().is_some_and(|r| {
        r.onboarding_id == request.onboarding_id
            && r.customer_tenant_id.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(&request.customer_tenant_id))
    });
    if !watched {
        let gone = Error::Refused {
            code: "NotThisOnboardingsAccount",
            message: format!(
                "{account_id} does not record onboarding {} for tenant {}: a replayed probe would do nothing",
                request.onboarding_id, request.customer_tenant_id
            ),
        };
        diagnosis.checks.push(failed("watched", &gone));
        return diagnosis;
    }
    diagnosis.checks.push(passed("watched"));
    let kv = account.encryption().and_then(|e| e.key_vault_properties).unwrap_or_default();
    let chain = match read_identity_chain(app, &request.identity).await {
        Ok(chain) => chain,
        Err(error) => {
            diagnosis.checks.push(failed("identity_chain", &error));
            return diagnosis;
        }
    };
    diagnosis.checks.push(passed("identity_chain"));
    if let (Some(vault), Some(key)) = (kv.key_vault_uri.as_deref(), kv.key_name.as_deref()) {
        let version = kv.key_version.as_deref().filter(|v| !v.is_empty());
        let tenant = &request.customer_tenant_id;
        diagnosis.checks.push(match use_customer_key(app, tenant, vault, key, version, &chain, &account_id).await {
            Ok(_) => passed("customer_key"),
            Err(error) => failed("customer_key", &error),
        });
    }
    diagnosis.ready = diagnosis.checks.iter().all(|c| c.ok);
    diagnosis
}

/// The identity chain without side effects: a missing credential is reported, never created.
async fn read_identity_chain(app: &App, identity: &IsvIdentity) -> Result<IdentityChain, Error> {
    let uami = app.clients.arm.get_user_assigned_identity(&identity.uami_resource_id).await?;
    let want = identity_chain::required_credential(app.settings.cloud, &uami.tenant_id, &uami.principal_id);
    let existing = app.clients.graph.list_federated_credentials(&identity.app_object_id).await?;
    let Some(found) = identity_chain::matching_credential(&existing, &want) else {
        let name = app.settings.fic_name_for(identity);
        return Err(identity_chain::missing_credential_error(&identity.app_object_id, &want, &name));
    };
    let credential_written_at = identity_chain::written_at(found);
    Ok(IdentityChain::new(uami, &identity.app_client_id, credential_written_at))
}
