//! The fault soak at scale: 1,000 onboardings through the real handler under the emulated host, with the CI soak's
//! faults (`cmk_testbed::soak`): a fifth of the requests to every emulated host fail, the handler is killed at random
//! and message locks expire. Not run in CI. Run: `cargo bench -p handler --bench soak [-- ONBOARDINGS]` (the figures
//! go in the README).

use std::path::Path;
use std::time::Duration;

use cmk_testbed::soak::{self, Soak};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let onboardings = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000);
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    let soak = Soak::standard(onboardings, Duration::from_secs(1800));
    let figures = soak::run(Path::new(env!("CARGO_BIN_EXE_handler")), &soak).await;
    println!("{figures}");
}
