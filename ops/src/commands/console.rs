//! `cmkctl console`: starts the ops console, prints the URL to open (once, with its token), serves until Ctrl-C.

use crate::audit::operator;
use crate::cli::{ConnectionArgs, ConsoleArgs};
use crate::connect::Connection;
use crate::console::{ConsoleOptions, start};
use crate::diagnosis::DiagnoseFunction;
use crate::exit::Exit;

pub async fn run(connection: &Connection, args: &ConnectionArgs, console: &ConsoleArgs) -> Result<Exit, String> {
    let diagnose = match (&console.function_key, console.function_app.clone().or_else(|| args.emulator.clone())) {
        (Some(key), Some(app)) => Some(DiagnoseFunction::new(&app, key)?),
        (Some(_), None) => return Err("--function-key needs --function-app https://APP.azurewebsites.net".into()),
        (None, _) => None,
    };
    let options = ConsoleOptions {
        listen: console.listen,
        queue: args.queue.clone(),
        topic: args.topic.clone(),
        events_subscription: Some(console.events_subscription.clone()).filter(|s| s != "none"),
        diagnose,
        operator: operator(args.operator.as_deref()),
        audit: console.audit.clone(),
    };
    let started = start(connection.clone(), options).await?;
    // The only line on stdout: scripts and tests read the URL from it.
    println!("{}", started.url);
    eprintln!("cmkctl console on http://{} (loopback only); open the URL above. Ctrl-C stops it.", started.address);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(Exit::Ok),
        served = started.server => served.map(|()| Exit::Ok).map_err(|e| format!("the console stopped: {e}")),
    }
}
