//! `status`: what the app's `OnboardingStatus` function answers for one account (docs/integrating.md), as JSON or as
//! a few lines for people.

use serde_json::Value;

use crate::cli::{ConnectionArgs, OutputFormat, StatusArgs};
use crate::exit::Exit;

pub async fn status(connection: &ConnectionArgs, args: &StatusArgs, format: OutputFormat) -> Result<Exit, String> {
    let base = args
        .function_app
        .clone()
        .or_else(|| connection.emulator.clone())
        .ok_or("no Function App: pass --function-app https://APP.azurewebsites.net (or CMK_FUNCTION_APP_URL)")?;
    let answer =
        crate::status::account_status(&base, &args.function_key, &args.storage_account, args.onboarding_id.as_deref())
            .await?;
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default()),
        OutputFormat::Table => {
            for (label, value) in lines(&answer) {
                println!("{label:<12} {value}");
            }
        }
    }
    Ok(Exit::Ok)
}

/// `label  value` lines: the status, the onboarding, the key, the watch.
fn lines(answer: &Value) -> Vec<(&'static str, String)> {
    let text = |value: &Value| value.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    let onboarding = &answer["onboarding"];
    let encryption = &answer["encryption"];
    let watch = &answer["watch"];
    let mut lines = vec![
        ("account", text(&answer["storageAccountId"])),
        ("status", text(&answer["status"])),
        (
            "onboarding",
            format!("{} (tenant {})", text(&onboarding["onboardingId"]), text(&onboarding["customerTenantId"])),
        ),
    ];
    if let Some(asked) = answer.get("requestedOnboarding") {
        lines.push(("asked", format!("{}: {}", text(&asked["onboardingId"]), text(&asked["standing"]))));
    }
    let key = encryption["currentVersionedKeyIdentifier"].as_str().or(encryption["keySource"].as_str());
    lines.push(("key", key.unwrap_or("-").to_owned()));
    lines.push(("rotated", text(&encryption["lastKeyRotationTimestamp"])));
    if watch.is_object() {
        lines.push(("key access", format!("{} since {}", text(&watch["keyAccess"]), text(&watch["stateSince"]))));
        let event = &watch["lastEvent"];
        if event.is_object() {
            lines.push((
                "last event",
                format!("{} {} at {}", text(&event["type"]), text(&event["id"]), text(&event["time"])),
            ));
        }
    } else {
        lines.push(("key access", "not probed yet".to_owned()));
    }
    lines
}
