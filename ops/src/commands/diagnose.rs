//! `dlq diagnose`: what blocks each selected dead letter now, from the app's admin-only `DiagnoseOnboarding` function
//! (validation plus the read-only customer preflight, which needs the CMK identity only the app can use).

use futures::StreamExt;

use crate::cli::{ConnectionArgs, DiagnoseArgs, OutputFormat};
use crate::connect::Connection;
use crate::dead_letter::Filter;
use crate::diagnosis::{DiagnoseFunction, Diagnosed, first_failing};
use crate::exit::Exit;
use crate::output::{clip, or_dash, print};
use crate::selection::{self, Bounds};

/// Diagnoses in flight at once: each one costs the app a preflight against the customer's tenant.
const CONCURRENCY: usize = 4;

pub async fn diagnose(
    connection: &Connection,
    args: &ConnectionArgs,
    diagnose: &DiagnoseArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let base = diagnose
        .function_app
        .clone()
        .or_else(|| args.emulator.clone())
        .ok_or("no Function App: pass --function-app https://APP.azurewebsites.net (or CMK_FUNCTION_APP_URL)")?;
    let function = DiagnoseFunction::new(&base, &diagnose.function_key)?;
    let filter = Filter::new(diagnose.filter.clone());
    let bounds = Bounds { limit: diagnose.limit, ..Bounds::default() };
    let (selected, _) = selection::read(&connection.client, &args.queue, &filter, bounds).await?;
    let results: Vec<Result<Diagnosed, String>> = futures::stream::iter(selected.iter())
        .map(|(message, letter)| function.diagnose(&message.body, letter))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let diagnosed = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let rows = diagnosed
        .iter()
        .map(|d| {
            let failing = first_failing(&d.diagnosis);
            vec![
                d.sequence_number.to_string(),
                or_dash(d.kind.as_deref()),
                or_dash(d.onboarding_id.as_deref()),
                d.dead_letter_reason.clone(),
                if d.ready { "yes" } else { "no" }.to_owned(),
                or_dash(d.blocked_by.as_deref()),
                or_dash(failing.and_then(|c| c["disposition"].as_str())),
                clip(failing.and_then(|c| c["message"].as_str()).unwrap_or("-"), 80),
            ]
        })
        .collect();
    print(
        format,
        &diagnosed,
        &["SEQ", "KIND", "ONBOARDING ID", "FAILED WITH", "READY", "BLOCKED BY", "DISPOSITION", "MESSAGE"],
        rows,
    );
    Ok(if diagnosed.iter().all(|d| d.ready) { Exit::Ok } else { Exit::Rejected })
}
