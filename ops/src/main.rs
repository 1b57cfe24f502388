//! Entry point of `cmkctl`: parse the command line, run it, exit with its status.

use clap::Parser;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let cli = cmkctl::Cli::parse();
    cmkctl::run(cli).await.into()
}
