//! Exit statuses: scripts branch on these, so they are part of the interface (documented in `docs/cmkctl.md`).

/// What a run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done (or, for a dry run, would be).
    Ok,
    /// An error: connection, authorization, or at least one message that could not be replayed or purged.
    Failed,
    /// Bad command line (clap uses the same status).
    Usage,
    /// `validate`/`enqueue`: the message is invalid; `dlq diagnose`: at least one message is still blocked.
    Rejected,
    /// The operator declined the confirmation, or none could be asked for (no terminal and no `--yes`), or the
    /// selection did not have the `--expect`ed size.
    Aborted,
    /// `enqueue`: not sent, because Service Bus would drop it as a duplicate of an earlier send.
    Duplicate,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::Rejected => 3,
            Self::Aborted => 4,
            Self::Duplicate => 5,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}
