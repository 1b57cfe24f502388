//! `cmkctl`: the ops and producer CLI of the CMK onboarding pipeline (dead-letter triage and replay, enqueue, events).
//!
//! The binary is a thin `main`; everything lives here so tests and the benchmark can drive the same code. The contract,
//! the validator and the Service Bus client are the handler's own (`cmk_handler`), so the CLI can never disagree with
//! the handler about what a valid message is or how Service Bus is spoken to.

pub mod actions;
pub mod archive;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod connect;
pub mod console;
pub mod counts;
pub mod dead_letter;
pub mod diagnosis;
pub mod events;
pub mod exit;
pub mod journal;
pub mod messages;
pub mod output;
pub mod policy;
pub mod progress;
pub mod selection;
pub mod status;
pub mod walk;

pub use cli::Cli;
pub use exit::Exit;

/// Runs one parsed command line to its exit status. Errors are printed to stderr here, once.
pub async fn run(cli: Cli) -> Exit {
    match commands::dispatch(cli).await {
        Ok(exit) => exit,
        Err(error) => {
            eprintln!("error: {error}");
            Exit::Failed
        }
    }
}
