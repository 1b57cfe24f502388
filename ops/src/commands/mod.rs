//! One module per subcommand; this one routes a parsed command line to it.

mod act;
mod console;
mod diagnose;
mod enqueue;
mod events;
mod list;
mod probe;
mod show;
mod status;

use crate::cli::{Cli, Command, DlqCommand, EventsCommand};
use crate::connect::connect;
use crate::exit::Exit;

pub use crate::actions::Action;

pub async fn dispatch(cli: Cli) -> Result<Exit, String> {
    let format = cli.output;
    let args = &cli.connection;
    match cli.command {
        Command::Validate(validate) => enqueue::validate(&validate, format),
        Command::Enqueue(enqueue) => enqueue::enqueue(args, &enqueue, format).await,
        Command::Events { command: EventsCommand::Tail(tail) } => {
            events::tail(&connect(args)?, args, &tail, format).await
        }
        Command::Probe(probe) => probe::probe(args, &probe, format).await,
        Command::Status(status) => status::status(args, &status, format).await,
        Command::Console(console) => console::run(&connect(args)?, args, &console).await,
        Command::Dlq { command } => {
            let connection = connect(args)?;
            match command {
                DlqCommand::List(list) => list::list(&connection, args, &list, format).await,
                DlqCommand::Show(show) => show::show(&connection, args, &show, format).await,
                DlqCommand::Diagnose(diagnose) => diagnose::diagnose(&connection, args, &diagnose, format).await,
                DlqCommand::Replay(replay) => {
                    let action = Action::Replay { rate: replay.rate, concurrency: replay.concurrency.into() };
                    let guard = act::SupersessionGuard::from_args(args, &replay)?;
                    act::run(&connection, args, action, false, &replay.action, guard.as_ref(), format).await
                }
                DlqCommand::Purge(purge) => {
                    let action = Action::Purge { archive: purge.archive.clone() };
                    let by_default = purge.archive.is_none() && !purge.no_archive;
                    act::run(&connection, args, action, by_default, &purge.action, None, format).await
                }
            }
        }
    }
}
