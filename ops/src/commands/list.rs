//! `dlq list`: dead letters with what failed and why, or counts per reason.

use time::OffsetDateTime;

use crate::cli::{ConnectionArgs, GroupBy, ListArgs, OutputFormat};
use crate::connect::Connection;
use crate::dead_letter::{DeadLetter, Filter, by_reason};
use crate::exit::Exit;
use crate::output::{clip, or_dash, print};
use crate::selection::{self, Bounds};

pub async fn list(
    connection: &Connection,
    args: &ConnectionArgs,
    list: &ListArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let filter = Filter::new(list.filter.clone());
    let bounds = Bounds { scan_limit: list.scan_limit, ..Bounds::default() };
    let (selected, report) = selection::read(&connection.client, &args.queue, &filter, bounds).await?;
    if report.truncated {
        eprintln!("stopped after visiting {} dead letters (--scan-limit): more may be left", report.seen);
    }
    let letters: Vec<DeadLetter> = selected.into_iter().map(|(_, letter)| letter).collect();
    if let Some(path) = &list.save {
        let file = selection::SelectionFile {
            dead_letter_queue: crate::walk::dead_letter_queue(&args.queue),
            listed_at: OffsetDateTime::now_utc(),
            filter: list.filter.clone(),
            messages: letters.iter().map(selection::Identity::of).collect(),
        };
        file.write(path)?;
        eprintln!("selection of {} saved to {}", letters.len(), path.display());
    }
    match list.group_by {
        None => {
            let rows = letters.iter().map(row).collect();
            print(format, &letters, HEADERS, rows);
        }
        Some(GroupBy::Reason) => {
            let groups = by_reason(&letters);
            let rows = groups
                .iter()
                .map(|g| {
                    vec![
                        g.reason.clone(),
                        g.count.to_string(),
                        or_dash(g.oldest.map(rfc3339).as_deref()),
                        or_dash(g.newest.map(rfc3339).as_deref()),
                        clip(&g.onboarding_ids.join(","), 60),
                    ]
                })
                .collect();
            print(format, &groups, &["REASON", "COUNT", "OLDEST", "NEWEST", "ONBOARDING IDS"], rows);
        }
    }
    Ok(Exit::Ok)
}

const HEADERS: &[&str] = &[
    "SEQ",
    "ONBOARDING ID",
    "TENANT",
    "STORAGE ACCOUNT",
    "ENQUEUED",
    "DELIVERIES",
    "DLQ REASON",
    "DLQ DESCRIPTION",
    "HANDLER REASON",
    "HANDLER DESCRIPTION",
];

fn row(letter: &DeadLetter) -> Vec<String> {
    // The account's name is what people recognise; the full id is in `--output json` and `dlq show`.
    let account = letter.storage_account_id.as_deref().map(|id| id.rsplit('/').next().unwrap_or(id));
    vec![
        letter.sequence_number.to_string(),
        match letter.reason_record_for {
            Some(explained) => format!("(reason for {explained})"),
            None => or_dash(letter.onboarding_id.as_deref()),
        },
        or_dash(letter.customer_tenant_id.as_deref()),
        or_dash(account),
        or_dash(letter.enqueued_time.map(rfc3339).as_deref()),
        letter.delivery_count.map_or("-".to_owned(), |c| c.to_string()),
        or_dash(letter.dead_letter_reason.as_deref()),
        clip(letter.dead_letter_description.as_deref().unwrap_or("-"), 40),
        or_dash(letter.handler_reason.as_deref()),
        clip(letter.handler_description.as_deref().unwrap_or("-"), 60),
    ]
}

pub(super) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
