//! `dlq replay` and `dlq purge` on the command line: select (and lock), show, confirm, then hand the locked selection
//! to [`crate::actions::execute`]. What is confirmed is what is acted on: the messages stay locked from the listing to
//! the action, or the run is bound to an earlier listing by `--selection FILE` / `--expect N`.

use std::io::IsTerminal;
use std::time::Duration;

use crate::actions::{self, Action, Actor};
use crate::audit::{AuditLog, operator, state_dir};
use futures::StreamExt;

use crate::cli::{ActionArgs, ConnectionArgs, OutputFormat, ReplayArgs};
use crate::connect::Connection;
use crate::dead_letter::{DeadLetter, Filter};
use crate::diagnosis::{DiagnoseFunction, Diagnosed};
use crate::exit::Exit;
use crate::output::{clip, or_dash, print, table};
use crate::progress::Progress;
use crate::selection::{self, Bounds, Expected, Locked, SelectionFile};

/// How long the prompt waits for an answer (the locks are renewed meanwhile): the run never hangs on a terminal.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(600);
/// Rows of the selection shown before the prompt.
const SHOWN: usize = 50;

/// `archive_by_default`: a purge without `--archive`/`--no-archive` archives to the state directory.
pub async fn run(
    connection: &Connection,
    args: &ConnectionArgs,
    mut action: Action,
    archive_by_default: bool,
    options: &ActionArgs,
    guard: Option<&SupersessionGuard>,
    format: OutputFormat,
) -> Result<Exit, String> {
    let (filter_args, expected) = match &options.selection {
        Some(path) => {
            let saved = SelectionFile::read(path)?;
            let here = crate::walk::dead_letter_queue(&args.queue);
            if !saved.dead_letter_queue.eq_ignore_ascii_case(&here) {
                return Err(format!("{} lists {}, not {here}", path.display(), saved.dead_letter_queue));
            }
            (saved.filter, Expected::Exactly(saved.messages))
        }
        None => (options.filter.clone(), Expected::Matching),
    };
    let filter = Filter::new(filter_args.clone());
    // Interrupted runs are reported before anything else happens.
    let audit = if options.dry_run { None } else { Some(open_audit(options)?) };
    if let (Action::Purge { archive }, Some(audit)) = (&mut action, &audit)
        && archive.is_none()
        && archive_by_default
    {
        *archive = Some(default_archive(audit));
    }

    let bounds = Bounds { limit: options.limit, scan_limit: options.scan_limit };
    let mut progress = Progress::new("reading", None);
    let locked =
        selection::lock(&connection.client, &args.queue, &filter, &expected, bounds, |_| progress.advance(true)).await;
    progress.finish();
    let mut locked = locked?;
    report_differences(&locked);
    if let Some(guard) = guard
        && let Err(error) = guard.skip_superseded(&mut locked).await
    {
        release(locked).await?;
        return Err(error);
    }

    if locked.chosen.is_empty() {
        eprintln!("no dead letter to {}", action.name());
        release(locked).await?;
        return Ok(Exit::Ok);
    }
    if options.dry_run {
        show(format, &locked.chosen, &mut std::io::stdout());
        if let Some(path) = &options.save {
            let file = SelectionFile {
                dead_letter_queue: locked.locks.entity().to_owned(),
                listed_at: time::OffsetDateTime::now_utc(),
                filter: filter_args,
                messages: locked.chosen.iter().map(selection::Identity::of).collect(),
            };
            file.write(path)?;
            eprintln!("selection of {} saved to {}", locked.chosen.len(), path.display());
        }
        release(locked).await?;
        return Ok(Exit::Ok);
    }
    if let Some(expected) = options.expect.filter(|n| *n != locked.chosen.len()) {
        show(OutputFormat::Table, &locked.chosen, &mut std::io::stderr());
        eprintln!(
            "expected {expected} dead letter(s), the selection has {}: nothing done (list again, then confirm that)",
            locked.chosen.len()
        );
        release(locked).await?;
        return Ok(Exit::Aborted);
    }
    if !options.yes && !confirm(&action, &locked, &args.queue).await {
        release(locked).await?;
        return Ok(Exit::Aborted);
    }

    let actor = Actor {
        connection: connection.clone(),
        queue: args.queue.clone(),
        operator: operator(args.operator.as_deref()),
        audit: audit.expect("opened for a real run"),
    };
    let total = locked.chosen.len();
    let bar = std::sync::Mutex::new(Progress::new(action.name(), Some(total)));
    let summary = actions::execute(locked, action, &actor, move |p| {
        if p.done > 0 {
            bar.lock().unwrap_or_else(|e| e.into_inner()).advance_to(p.done, p.failed);
        }
    })
    .await?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }

    let rows: Vec<Vec<String>> = summary
        .outcomes
        .iter()
        .map(|r| {
            vec![
                r.sequence_number.to_string(),
                or_dash(r.onboarding_id.as_deref()),
                r.outcome.to_owned(),
                clip(r.error.as_deref().or(r.replay_message_id.as_deref()).unwrap_or("-"), 80),
            ]
        })
        .collect();
    print(format, &summary, &["SEQ", "ONBOARDING ID", "OUTCOME", "REPLAY MESSAGE ID / ERROR"], rows);
    eprint!(
        "{}",
        table(
            &["ACTION", "SELECTED", "SUCCEEDED", "FAILED", "SECONDS", "AUDIT"],
            &[vec![
                summary.action.to_owned(),
                summary.selected.to_string(),
                summary.succeeded.to_string(),
                summary.failed.to_string(),
                format!("{:.2}", summary.elapsed_seconds),
                summary.audit_file.display().to_string(),
            ]]
        )
    );
    if let Some(archive) = &summary.archive {
        eprintln!("purged messages archived to {}", archive.display());
    }
    Ok(if summary.failed == 0 { Exit::Ok } else { Exit::Failed })
}

/// Opens the audit trail and reports what earlier runs left unfinished.
pub fn open_audit(options: &ActionArgs) -> Result<AuditLog, String> {
    let path = options.audit.clone().unwrap_or_else(|| state_dir().join("audit.jsonl"));
    let (audit, unfinished) = AuditLog::open(&path)?;
    for run in unfinished {
        eprintln!("warning: {run} (audit trail {})", path.display());
    }
    Ok(audit)
}

/// The default archive of a purge run.
pub fn default_archive(audit: &AuditLog) -> std::path::PathBuf {
    state_dir().join("purged").join(format!("{}.jsonl", audit.run))
}

/// Before a replay: which selected dead letters a newer onboarding of their account superseded (asked of the app's
/// diagnose function, which reads the account's tags). Those are taken out of the selection (they stay locked until
/// the run releases its locks) unless `--force`: replayed, the handler would supersede them again and change nothing.
#[derive(Debug)]
pub struct SupersessionGuard {
    function: DiagnoseFunction,
    force: bool,
}

/// Supersession checks in flight at once (each one costs the app a read of the account and a customer preflight).
const GUARD_CONCURRENCY: usize = 4;

impl SupersessionGuard {
    /// `None` (with a note) when no function key was given: the selection is replayed as it is.
    pub fn from_args(args: &ConnectionArgs, replay: &ReplayArgs) -> Result<Option<Self>, String> {
        let Some(key) = &replay.function_key else {
            eprintln!(
                "note: without --function-key, dead letters a newer onboarding superseded are not told apart; replayed, \
                 the handler supersedes them (nothing changes)"
            );
            return Ok(None);
        };
        let base =
            replay.function_app.clone().or_else(|| args.emulator.clone()).ok_or(
                "no Function App: pass --function-app https://APP.azurewebsites.net (or CMK_FUNCTION_APP_URL)",
            )?;
        Ok(Some(Self { function: DiagnoseFunction::new(&base, key)?, force: replay.force }))
    }

    async fn skip_superseded(&self, locked: &mut Locked) -> Result<(), String> {
        let messages = &locked.messages;
        let checks: Vec<Result<Diagnosed, String>> = futures::stream::iter(locked.chosen.iter())
            .map(|letter| async move {
                let body = messages.get(&letter.sequence_number).map(|m| m.body.as_slice()).unwrap_or_default();
                self.function.diagnose(body, letter).await
            })
            .buffered(GUARD_CONCURRENCY)
            .collect()
            .await;
        let mut superseded = Vec::new();
        for check in checks {
            let diagnosed = check?;
            if let Some(newer) = diagnosed.superseded_by {
                superseded.push((diagnosed.sequence_number, diagnosed.onboarding_id, newer));
            }
        }
        for (sequence_number, onboarding_id, newer) in &superseded {
            let onboarding = onboarding_id.as_deref().unwrap_or("-");
            if self.force {
                eprintln!("seq {sequence_number} ({onboarding}): superseded by {newer}; replayed anyway (--force)");
            } else {
                eprintln!(
                    "seq {sequence_number} ({onboarding}): superseded by {newer}; not replayed (--force replays it)"
                );
            }
        }
        if !self.force {
            let skip: Vec<i64> = superseded.iter().map(|(sequence_number, _, _)| *sequence_number).collect();
            locked.chosen.retain(|letter| !skip.contains(&letter.sequence_number));
            locked.messages.retain(|sequence_number, _| !skip.contains(sequence_number));
        }
        Ok(())
    }
}

async fn release(locked: Locked) -> Result<(), String> {
    locked.locks.release().await.map_err(|e| format!("could not unlock every dead letter: {e}"))
}

/// Differences between what was expected and what the walk found: reported, never acted on.
fn report_differences(locked: &Locked) {
    let report = &locked.report;
    let list =
        |ids: &[selection::Identity]| ids.iter().map(|i| i.sequence_number.to_string()).collect::<Vec<_>>().join(", ");
    if !report.missing.is_empty() {
        eprintln!("not acted on, gone since the listing (or locked by another run): {}", list(&report.missing));
    }
    if !report.changed.is_empty() {
        eprintln!("not acted on, a different message than listed: {}", list(&report.changed));
    }
    if !report.unexpected.is_empty() {
        eprintln!("not acted on, new since the listing: {}", list(&report.unexpected));
    }
    if report.truncated {
        eprintln!(
            "stopped after visiting {} dead letters (--scan-limit): more may be left; run again for the rest",
            report.seen
        );
    }
}

/// The selection as a table (or JSON) on `out`.
fn show(format: OutputFormat, letters: &[DeadLetter], out: &mut dyn std::io::Write) {
    let text = match format {
        OutputFormat::Json => serde_json::to_string_pretty(letters).unwrap_or_default() + "\n",
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = letters
                .iter()
                .map(|l| {
                    vec![
                        l.sequence_number.to_string(),
                        or_dash(l.onboarding_id.as_deref()),
                        l.reason().to_owned(),
                        or_dash(l.message_id.as_deref()),
                    ]
                })
                .collect();
            table(&["SEQ", "ONBOARDING ID", "REASON", "MESSAGE ID"], &rows)
        }
    };
    let _ = out.write_all(text.as_bytes());
}

/// Shows the locked selection and asks on the terminal; the locks are renewed while the operator reads. Without a
/// terminal (a script) nothing happens unless `--yes` was given.
async fn confirm(action: &Action, locked: &Locked, queue: &str) -> bool {
    let count = locked.chosen.len();
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "refusing to {} {count} dead letter(s) without confirmation: no terminal; pass --yes (with --expect {count} \
             or --selection FILE to bind it)",
            action.name()
        );
        return false;
    }
    let mut stderr = std::io::stderr();
    show(OutputFormat::Table, &locked.chosen[..count.min(SHOWN)], &mut stderr);
    if count > SHOWN {
        eprintln!("… and {} more (`dlq list --save FILE` lists them all)", count - SHOWN);
    }
    eprint!("{} exactly these {count} dead letter(s) from {queue}/$DeadLetterQueue? [y/N] ", action.name());
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    match tokio::time::timeout(CONFIRM_TIMEOUT, answer).await {
        Ok(Ok(Ok(line))) => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        _ => {
            eprintln!("\nno answer: nothing done");
            false
        }
    }
}
