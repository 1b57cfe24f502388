//! The command line: subcommands, options, environment variables and the examples `--help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

const EXAMPLES: &str = "\
Examples:
  # What failed, grouped by the handler's reason
  cmkctl --namespace isv-cmk dlq list --group-by reason
  # One message in full
  cmkctl --namespace isv-cmk dlq show 4711
  # What still blocks the customer's onboardings (calls the app's admin-only diagnose function)
  cmkctl --namespace isv-cmk dlq diagnose --tenant 44444444-4444-4444-4444-444444444444 \\
      --function-app https://isv-cmk.azurewebsites.net --function-key \"$MASTER_KEY\"
  # Replay what failed on a missing service principal, dry run first, then for real with an audit file
  cmkctl --namespace isv-cmk dlq replay --reason ServicePrincipalMissing --dry-run
  cmkctl --namespace isv-cmk dlq replay --reason ServicePrincipalMissing --rate 20 --audit replay.jsonl
  # Producers: check a message, then send it
  cmkctl validate --settings local.settings.json onboarding.json
  cmkctl --namespace isv-cmk enqueue --settings local.settings.json onboarding.json
  # Follow the events
  cmkctl --namespace isv-cmk events tail
  # The ops console in your browser (loopback only; open the URL it prints)
  cmkctl --namespace isv-cmk console --function-app https://isv-cmk.azurewebsites.net --function-key \"$MASTER_KEY\"

Authentication: Entra ID by default (Azure CLI login, then managed identity, then workload identity; --auth picks
one), or a SAS connection string (--connection-string or CMK_SERVICEBUS_CONNECTION_STRING).
Exit status: 0 done, 1 error, 2 usage, 3 invalid message or still blocked, 4 not confirmed.";

/// Ops and producer CLI for the cross-tenant CMK onboarding pipeline.
#[derive(Debug, Parser)]
#[command(name = "cmkctl", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Output format of results.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// Azure CLI, then managed identity, then workload identity: the first that yields a token.
    Auto,
    /// `az login`.
    Cli,
    ManagedIdentity,
    WorkloadIdentity,
}

/// Where Service Bus is and how to authenticate.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection (all commands)")]
pub struct ConnectionArgs {
    /// Service Bus namespace: a name (`isv-cmk`) or its FQDN. Not needed with a connection string.
    #[arg(long, env = "CMK_SERVICEBUS_NAMESPACE", global = true)]
    pub namespace: Option<String>,
    /// SAS connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`); replaces Entra auth.
    #[arg(long, env = "CMK_SERVICEBUS_CONNECTION_STRING", hide_env_values = true, global = true)]
    pub connection_string: Option<String>,
    /// Which Entra credential to use.
    #[arg(long, value_enum, default_value_t = AuthMethod::Auto, global = true)]
    pub auth: AuthMethod,
    /// Azure cloud: AzureCloud, AzureUSGovernment or AzureChinaCloud.
    #[arg(long, env = "CMK_AZURE_CLOUD", default_value = "AzureCloud", global = true)]
    pub cloud: String,
    /// The onboarding queue (its dead-letter queue is what `dlq` works on).
    #[arg(long, env = "CMK_ONBOARDING_QUEUE", default_value = "onboarding", global = true)]
    pub queue: String,
    /// The events topic.
    #[arg(long, env = "CMK_EVENTS_TOPIC", default_value = "onboarding-events", global = true)]
    pub topic: String,
    /// Testbed only: send every Azure-bound request to this loopback emulator (like the handler's CMK_TEST_PROXY_URL).
    #[arg(long, env = "CMKCTL_EMULATOR", global = true)]
    pub emulator: Option<Url>,
    /// Who is acting, for audit records (default: $USER, plus the credential's identity).
    #[arg(long, env = "CMKCTL_OPERATOR", global = true)]
    pub operator: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work on the onboarding queue's dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Validate an onboarding message locally (the handler's own validator), then send it to the queue.
    Enqueue(EnqueueArgs),
    /// Validate an onboarding message locally, send nothing.
    Validate(ValidateArgs),
    /// Onboarding events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// An account's state from Azure, through the app's status function (what upstream systems see).
    Status(StatusArgs),
    /// Ask the key watch to probe one onboarded account now (a `kind: probe` message in the account's session).
    Probe(ProbeArgs),
    /// The ops console: a local web page (loopback only, your own credential) with the counts, the dead letters by
    /// reason, one message with its diagnosis, replay and purge with progress, and the recent events.
    Console(ConsoleArgs),
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Loopback address and port to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8377")]
    pub listen: std::net::SocketAddr,
    /// The events subscription the console follows (and consumes); `none` for no events panel.
    #[arg(long, default_value = OPS_SUBSCRIPTION)]
    pub events_subscription: String,
    /// The Function App's base URL, for the diagnosis (default with --emulator: the emulated host).
    #[arg(long, env = "CMK_FUNCTION_APP_URL")]
    pub function_app: Option<Url>,
    /// A key with admin level (the host master key) for the diagnosis; without it the console shows no diagnosis.
    #[arg(long, env = "CMK_FUNCTION_KEY", hide_env_values = true)]
    pub function_key: Option<String>,
    /// The audit trail of the console's replays and purges (default: `audit.jsonl` in the state directory).
    #[arg(long, env = "CMKCTL_AUDIT")]
    pub audit: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead-lettered onboarding messages, with the handler's failure reason.
    List(ListArgs),
    /// One dead-lettered message in full: body, system and application properties.
    Show(ShowArgs),
    /// For each selected message, what blocks it now (validation and read-only customer preflight in the app).
    Diagnose(DiagnoseArgs),
    /// Resubmit selected messages to their queue (fresh MessageId, counters reset), then remove the dead letters.
    Replay(ReplayArgs),
    /// Delete selected dead letters.
    Purge(PurgeArgs),
}

/// Which dead letters a command applies to. Criteria combine with AND; repeated values of one criterion with OR.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterArgs {
    /// Failure reason (the handler's `cmk-dead-letter-reason`, else Service Bus' DeadLetterReason); repeatable.
    #[arg(long)]
    pub reason: Vec<String>,
    /// Enqueued at or after: RFC 3339, or an age such as `30m`, `6h`, `7d`.
    #[arg(long, value_parser = parse_time)]
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// Enqueued before: RFC 3339, or an age such as `30m`, `6h`, `7d`.
    #[arg(long, value_parser = parse_time)]
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Onboarding id; repeatable.
    #[arg(long)]
    pub onboarding_id: Vec<String>,
    /// Customer tenant id; repeatable.
    #[arg(long)]
    pub tenant: Vec<String>,
    /// Sequence number in the dead-letter queue; repeatable.
    #[arg(long)]
    pub sequence: Vec<i64>,
}

impl FilterArgs {
    pub fn is_empty(&self) -> bool {
        self.reason.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.onboarding_id.is_empty()
            && self.tenant.is_empty()
            && self.sequence.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    Reason,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Summarise instead of listing.
    #[arg(long, value_enum)]
    pub group_by: Option<GroupBy>,
    /// Also write what was listed to FILE, for `dlq replay|purge --selection FILE` to act on exactly that.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Visit at most this many dead letters (a hard bound on the walk and on the locks it holds).
    #[arg(long, default_value_t = crate::selection::DEFAULT_SCAN_LIMIT)]
    pub scan_limit: usize,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Sequence number (from `dlq list`).
    pub sequence: i64,
}

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// The Function App's base URL (default with --emulator: the emulated host).
    #[arg(long, env = "CMK_FUNCTION_APP_URL")]
    pub function_app: Option<Url>,
    /// A key with admin level (the host master key): `az functionapp keys list -g RG -n APP --query masterKey`.
    #[arg(long, env = "CMK_FUNCTION_KEY", hide_env_values = true)]
    pub function_key: String,
    /// Diagnose at most this many messages.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show what would be done; change nothing but the delivery count (see docs/cmkctl.md).
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: write the selection to FILE, for a later `--selection FILE --yes`.
    #[arg(long, value_name = "FILE", requires = "dry_run")]
    pub save: Option<PathBuf>,
    /// Act on exactly the dead letters a listing saved (`dlq list --save`, `--dry-run --save`): same sequence number
    /// and MessageId. What is gone, changed or new since is reported, not acted on.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["reason", "since", "until", "onboarding_id", "tenant", "sequence"])]
    pub selection: Option<PathBuf>,
    /// Act only if the selection has exactly N dead letters (the count a listing showed); else do nothing (exit 4).
    #[arg(long, value_name = "N")]
    pub expect: Option<usize>,
    /// Act on at most this many messages.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Visit at most this many dead letters (a hard bound on the walk and on the locks it holds).
    #[arg(long, default_value_t = crate::selection::DEFAULT_SCAN_LIMIT)]
    pub scan_limit: usize,
    /// Do not ask for confirmation (bind it with --expect N or --selection FILE).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The audit trail (JSON lines, appended): intent before acting, outcome per message, end. Default:
    /// `audit.jsonl` in the state directory ($CMKCTL_STATE_DIR, else $XDG_STATE_HOME/cmkctl, else
    /// ~/.local/state/cmkctl).
    #[arg(long, env = "CMKCTL_AUDIT")]
    pub audit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub action: ActionArgs,
    /// Messages per second at most (0: no limit).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Messages in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Replay dead letters that a newer onboarding of the same account superseded, too (the handler will supersede
    /// them again: nothing changes). Without it they are skipped.
    #[arg(long)]
    pub force: bool,
    /// The Function App's base URL, to ask which dead letters are superseded (default with --emulator: the emulated
    /// host).
    #[arg(long, env = "CMK_FUNCTION_APP_URL")]
    pub function_app: Option<Url>,
    /// A key with admin level (the host master key) for that question; without it supersession is not checked
    /// before the replay (the handler still supersedes a replayed older onboarding itself).
    #[arg(long, env = "CMK_FUNCTION_KEY", hide_env_values = true)]
    pub function_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub action: ActionArgs,
    /// Where to archive what is deleted (bodies and properties, JSON lines). Default:
    /// `purged/{run id}.jsonl` in the state directory.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// Delete without keeping a copy.
    #[arg(long, conflicts_with = "archive")]
    pub no_archive: bool,
}

/// Where the message comes from and what policy validates it.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The message: a JSON file, or `-` for stdin.
    pub file: PathBuf,
    /// The Function App's settings (`local.settings.json`, `az functionapp config appsettings list` output, or a
    /// flat JSON object); environment variables fill what it lacks.
    #[arg(long, env = "CMKCTL_SETTINGS")]
    pub settings: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    pub message: ValidateArgs,
    /// MessageId. Default: `{onboardingId}.{content hash}`, so duplicate detection drops a repeated send of the same
    /// content but never a correction; an id of your own that you reuse for other content swallows the correction.
    #[arg(long)]
    pub message_id: Option<String>,
    /// CorrelationId (default: the onboarding id).
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// SessionId (default, and the only value accepted: the storage account's name, lowercase).
    #[arg(long)]
    pub session_id: Option<String>,
    /// The send journal that tells a send Service Bus would drop as a duplicate. Default: `sent.jsonl` in the state
    /// directory.
    #[arg(long, value_name = "FILE", env = "CMKCTL_JOURNAL")]
    pub journal: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The storage account's resource id.
    #[arg(long)]
    pub storage_account: String,
    /// The onboarding to ask about (is it the one the account records?).
    #[arg(long)]
    pub onboarding_id: Option<String>,
    /// The Function App's base URL (default with --emulator: the emulated host).
    #[arg(long, env = "CMK_FUNCTION_APP_URL")]
    pub function_app: Option<Url>,
    /// A function key of `OnboardingStatus` (or a host key).
    #[arg(long, env = "CMK_STATUS_FUNCTION_KEY", hide_env_values = true)]
    pub function_key: String,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The storage account's resource id.
    #[arg(long)]
    pub storage_account: String,
    /// The onboarding the account records (its `cmk-onboarding-id` tag); with --tenant, no lookup is made.
    #[arg(long, requires = "tenant")]
    pub onboarding_id: Option<String>,
    /// The customer tenant the account records (its `cmk-customer-tenant` tag).
    #[arg(long, requires = "onboarding_id")]
    pub tenant: Option<String>,
    /// The Function App's base URL, to look the onboarding and tenant up with the status function (default with
    /// --emulator: the emulated host).
    #[arg(long, env = "CMK_FUNCTION_APP_URL")]
    pub function_app: Option<Url>,
    /// A function key of `OnboardingStatus` (or a host key) for that lookup.
    #[arg(long, env = "CMK_STATUS_FUNCTION_KEY", hide_env_values = true)]
    pub function_key: Option<String>,
    /// The Function App's settings, to validate the probe as the handler will (as for `enqueue`).
    #[arg(long, env = "CMKCTL_SETTINGS")]
    pub settings: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Follow the events topic through a subscription. Receiving consumes: use a subscription of your own.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The subscription to receive from (default: `ops`, which infra deploys for cmkctl).
    #[arg(long, default_value = OPS_SUBSCRIPTION)]
    pub subscription: String,
    /// Stop after this many events.
    #[arg(long)]
    pub max: Option<usize>,
    /// Stop after this many seconds without an event shown (default: follow forever).
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    /// Show only events of this type: short (`key_access_lost`) or full (`com.cmkonboard.onboarding.….v1`). Repeat
    /// for several. Events not shown are held locked and released when the tail ends (docs/cmkctl.md).
    #[arg(long = "type", value_name = "TYPE")]
    pub event_types: Vec<String>,
    /// Show only events of this onboarding (repeatable).
    #[arg(long)]
    pub onboarding_id: Vec<String>,
    /// Show only events of this customer tenant (repeatable).
    #[arg(long)]
    pub tenant: Vec<String>,
    /// Show only events about this storage account: its name or resource id (repeatable).
    #[arg(long)]
    pub storage_account: Vec<String>,
    /// With filters: stop once this many events not shown are held (they are released then).
    #[arg(long, default_value_t = 1_000)]
    pub hold_limit: usize,
}

/// The events subscription infra deploys for `cmkctl` (`infra/modules/servicebus.bicep`; a test checks it exists).
pub const OPS_SUBSCRIPTION: &str = "ops";

/// RFC 3339, or an age (`90s`, `30m`, `6h`, `7d`) before now.
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(at);
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: i64 = number.parse().map_err(|_| format!("{text:?} is neither RFC 3339 nor an age like 6h"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit of an age is s, m, h or d")),
    };
    Ok(OffsetDateTime::now_utc() - time::Duration::seconds(number.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn times_are_rfc3339_or_ages() {
        assert_eq!(parse_time("2026-11-29T10:00:00Z").unwrap(), time::macros::datetime!(2026-11-29 10:00 UTC));
        let six_hours_ago = parse_time("6h").unwrap();
        let expected = OffsetDateTime::now_utc() - time::Duration::hours(6);
        assert!((six_hours_ago - expected).abs() < time::Duration::seconds(5));
        assert!(parse_time("6 weeks").is_err());
    }
}
