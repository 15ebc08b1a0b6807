//! How a failed command is reported: the error chain, a blank line, `hint: ...`, and an exit code
//! from [`crate::exit_codes`].

use std::fmt::Write as _;

use crate::exit_codes;

/// A command's failure, ready to render.
#[derive(Debug)]
pub struct Failure {
    /// The error, with its causes.
    pub error: anyhow::Error,
    /// What to do next, if we know.
    pub hint: Option<String>,
    /// Exit code.
    pub code: u8,
}

impl Failure {
    /// A failure with an optional hint and an exit code from [`crate::exit_codes`].
    pub fn new(error: impl Into<anyhow::Error>, hint: Option<String>, code: u8) -> Self {
        Self {
            error: error.into(),
            hint,
            code,
        }
    }

    /// Several failures of one command over many items (files, journals) as one: `message`, the
    /// first hint among them, and the highest of their exit codes. `None` when there were none.
    #[must_use]
    pub fn of_many(failed: Vec<Self>, message: String) -> Option<Self> {
        let code = failed.iter().map(|f| f.code).max()?;
        Some(Self::new(
            anyhow::anyhow!(message),
            failed.into_iter().find_map(|f| f.hint),
            code,
        ))
    }

    /// `error: <message>` with `caused by:` lines, then the hint, as printed on stderr.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = format!("error: {}", self.error);
        for cause in self.error.chain().skip(1) {
            let _ = write!(out, "\n  caused by: {cause}");
        }
        if let Some(hint) = &self.hint {
            let _ = write!(out, "\n\nhint: {hint}");
        }
        out
    }
}

impl From<vlmctl_weights::WeightsError> for Failure {
    fn from(e: vlmctl_weights::WeightsError) -> Self {
        let code = weights_code(&e);
        let hint = Some(e.hint());
        Self::new(e, hint, code)
    }
}

fn weights_code(e: &vlmctl_weights::WeightsError) -> u8 {
    use vlmctl_weights::WeightsError as E;
    match e {
        E::LockRead { .. } | E::Io { .. } => exit_codes::ENVIRONMENT,
        E::LockInvalid { .. }
        | E::UnknownModel { .. }
        | E::NotLfs { .. }
        | E::BadRepoPath { .. }
        | E::BadPinArgument { .. } => exit_codes::INVALID_INPUT,
        E::UpstreamChanged { .. }
        | E::DigestMismatch { .. }
        | E::BadContent { .. }
        | E::ExistingFileBad { .. }
        | E::AdoptRejected { .. } => exit_codes::VERIFY_FAILED,
        E::HubUnreachable { .. }
        | E::HubStatus { .. }
        | E::HubProtocol { .. }
        | E::Transfer { .. } => exit_codes::HUB,
    }
}

impl From<vlmctl_lifecycle::LifecycleError> for Failure {
    fn from(e: vlmctl_lifecycle::LifecycleError) -> Self {
        let code = lifecycle_code(&e);
        let hint = Some(e.hint());
        Self::new(e, hint, code)
    }
}

fn lifecycle_code(e: &vlmctl_lifecycle::LifecycleError) -> u8 {
    use vlmctl_lifecycle::LifecycleError as E;
    match e {
        _ if e.daemon_gone() => exit_codes::ENVIRONMENT,
        E::SpecRead { .. }
        | E::DaemonUnreachable { .. }
        | E::Journal { .. }
        | E::State { .. }
        | E::Pull { .. }
        | E::SshStart { .. }
        | E::SshFailed { .. }
        | E::HostLost { .. } => exit_codes::ENVIRONMENT,
        E::RemoteFile { .. } => exit_codes::VERIFY_FAILED,
        E::Busy { .. } => exit_codes::BUSY,
        E::SpecInvalid { .. }
        | E::NameTaken { .. }
        | E::HostInvalid { .. }
        | E::HostUnknown { .. } => exit_codes::INVALID_INPUT,
        E::RegistryInspect { .. } => exit_codes::GATE_FAILED,
        E::Docker { .. }
        | E::NoGpuRuntime { .. }
        | E::PortTaken { .. }
        | E::ExitedDuringLoad { .. }
        | E::NotReady { .. } => exit_codes::SERVER,
    }
}

impl From<vlmctl_bench::BenchError> for Failure {
    fn from(e: vlmctl_bench::BenchError) -> Self {
        let code = bench_code(&e);
        let hint = Some(e.hint());
        Self::new(e, hint, code)
    }
}

fn bench_code(e: &vlmctl_bench::BenchError) -> u8 {
    use vlmctl_bench::BenchError as E;
    match e {
        // A target that does not answer is a problem of where the bench runs, as an
        // unreachable Docker daemon is: nothing was measured.
        E::Read { .. } | E::Unreachable { .. } => exit_codes::ENVIRONMENT,
        E::PlanInvalid { .. }
        | E::PlanFile { .. }
        | E::ImageMismatch { .. }
        | E::BadResults { .. }
        | E::ImplausibleResults { .. }
        | E::SweepNeedsSlo { .. }
        | E::ApiKeyMissing { .. } => exit_codes::INVALID_INPUT,
    }
}

impl From<vlmctl_serve::ServeError> for Failure {
    fn from(e: vlmctl_serve::ServeError) -> Self {
        use vlmctl_serve::ServeError as E;
        let code = match &e {
            E::ExposedWithoutKey { .. } | E::WeakKey { .. } => exit_codes::INVALID_INPUT,
            E::Bind { .. } | E::Store(_) | E::Task(_) => exit_codes::ENVIRONMENT,
        };
        let hint = e.hint();
        Self::new(e, hint, code)
    }
}

impl From<vlmctl_deploy::DeployError> for Failure {
    fn from(e: vlmctl_deploy::DeployError) -> Self {
        let code = deploy_code(&e);
        let hint = e.hint();
        Self::new(e, hint, code)
    }
}

fn deploy_code(e: &vlmctl_deploy::DeployError) -> u8 {
    use vlmctl_deploy::DeployError as E;
    match e {
        E::Weights(w) => weights_code(w),
        E::Client(c) if c.is_environment() => exit_codes::ENVIRONMENT,
        E::Lifecycle(l) => lifecycle_code(l),
        E::Bench(b) => bench_code(b),
        // A deployment that is not there is the plan's fault; one that is stopped, the host's.
        E::TargetDeployment(u) if u.problem.is_plan_error() => exit_codes::INVALID_INPUT,
        E::TargetDeployment(_)
        | E::ModelsDir { .. }
        | E::Record { .. }
        | E::TuneFileRead { .. }
        | E::TuneJournal { .. }
        | E::TuneJournalRead { .. }
        | E::ResultsNotWritten { .. } => exit_codes::ENVIRONMENT,
        E::ApiKeyMissing { .. }
        | E::ApiKeyTooShort { .. }
        | E::Client(_)
        | E::NotADeploymentName { .. }
        | E::NotPinned { .. }
        | E::LockedChange { .. }
        | E::ModelNotInLock { .. }
        | E::BenchPlanAsSpec { .. }
        | E::DefaultNotDeployed { .. }
        | E::NotOurs { .. }
        | E::TuneFileInvalid { .. }
        | E::ParkedByTune { .. }
        | E::LockHasNoFiles { .. }
        | E::LockedRefusal { .. } => exit_codes::INVALID_INPUT,
        E::PushToLocal | E::PushFolder { .. } => exit_codes::USAGE,
        E::PushUnverified { .. } => exit_codes::VERIFY_FAILED,
        // A "no" at the stop prompt is Gate 1 answered no (the runbook's "leave it and cancel"):
        // a gate failed, nothing was changed.
        E::GateFailed { .. } | E::Declined { .. } => exit_codes::GATE_FAILED,
        E::SmokeFailed { .. }
        | E::ThinkingLeaked { .. }
        | E::MemoryCeiling { .. }
        | E::MemoryUnmeasured { .. }
        | E::NotOnGpu(_)
        | E::CudaFailedAtLoad { .. }
        | E::ImageIgnored { .. } => exit_codes::SERVER,
        E::Interrupted { .. } | E::PushInterrupted { .. } => exit_codes::INTERRUPTED,
        // A restored service not proven alive outranks the run's own failure: production is
        // down, and the run's cause is in the message.
        E::ConflictCheckFailed { .. } => exit_codes::CONFLICT_NOT_ALIVE,
        E::Undone { undone, .. } if undone.failed_checks().next().is_some() => {
            exit_codes::CONFLICT_NOT_ALIVE
        }
        // The daemon went away: what is still to undo is said, and the exit code is the
        // unreachable-daemon one.
        E::UndoFailed { undo_error, .. } if undo_error.daemon_gone() => exit_codes::ENVIRONMENT,
        E::Undone { cause, .. } | E::UndoFailed { cause, .. } => deploy_code(cause),
        E::WeightsBadUnderServer { source, .. } => deploy_code(source),
        // A bench target's host unreachable (ssh, Docker): as for --host.
        E::RestoreIncomplete { source, .. } | E::TargetHost { source, .. } => {
            lifecycle_code(source)
        }
    }
}

impl From<vlmctl_store::StoreError> for Failure {
    fn from(e: vlmctl_store::StoreError) -> Self {
        use vlmctl_store::StoreError as E;
        let code = match &e {
            // An id that is not there is the command line's fault, as a name missing from the
            // lock is.
            E::NotFound { .. } => exit_codes::INVALID_INPUT,
            E::Open { .. }
            | E::Folder { .. }
            | E::Migrate { .. }
            | E::TooNew { .. }
            | E::NotOurs { .. }
            | E::ReadOnlyOld { .. }
            | E::ReadOnly { .. }
            | E::Sql { .. }
            | E::Corrupt { .. } => exit_codes::ENVIRONMENT,
            E::NotRunning { .. } => exit_codes::FAILURE,
        };
        let hint = e.hint();
        Self::new(e, hint, code)
    }
}
/// The error line of a command where `failed` of `total` items (`noun`s) could not be `done`
/// (each was named as it failed): the others are said to be done only when there are others.
pub fn some_failed(failed: usize, total: usize, noun: &str, done: &str) -> String {
    match (failed, total.saturating_sub(failed)) {
        (1, 0) => format!("the {noun} could not be {done} (named above)"),
        (n, 0) => format!("none of the {n} {noun}s could be {done} (each is named above)"),
        (n, 1) => format!(
            "{n} of {total} {noun}s could not be {done} (each is named above); the other one was"
        ),
        (n, m) => format!(
            "{n} of {total} {noun}s could not be {done} (each is named above); the other {m} were"
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_restored_conflict_not_alive_is_12_also_after_a_failed_run_and_a_no_is_7() {
        use vlmctl_deploy::DeployError as E;
        use vlmctl_lifecycle::journal::{CheckOutcome, Restored};
        let dead = CheckOutcome {
            name: "chatterbox".into(),
            what: "running".into(),
            passed: false,
            why: Some("not running (exited, exit code 1)".into()),
            took_ms: 1,
        };
        let code = |e: E| super::Failure::from(e).code;
        let failed = E::ConflictCheckFailed {
            failed: vec![dead.clone()],
            done: "removed x".into(),
            journal: "j".into(),
        };
        assert_eq!(code(failed), crate::exit_codes::CONFLICT_NOT_ALIVE);
        let smoke = || E::SmokeFailed {
            url: "u".into(),
            why: "w".into(),
        };
        let undone = |checks: Vec<CheckOutcome>| E::Undone {
            cause: Box::new(smoke()),
            undone: Box::new(Restored {
                started: vec!["chatterbox".into()],
                checks,
                ..Restored::default()
            }),
        };
        let e = undone(vec![dead.clone()]);
        assert!(
            e.to_string()
                .contains("NOT proven alive after restore: chatterbox: not running"),
            "{e}"
        );
        assert_eq!(code(e), crate::exit_codes::CONFLICT_NOT_ALIVE);
        let alive = CheckOutcome {
            passed: true,
            why: None,
            ..dead
        };
        assert_eq!(code(undone(vec![alive])), crate::exit_codes::SERVER);
        assert_eq!(
            code(E::Declined { name: "n".into() }),
            crate::exit_codes::GATE_FAILED
        );
    }

    #[test]
    fn the_others_are_mentioned_only_when_there_are_others() {
        use super::some_failed;
        assert_eq!(
            some_failed(1, 1, "journal", "restored"),
            "the journal could not be restored (named above)"
        );
        assert!(!some_failed(2, 2, "journal", "restored").contains("other"));
        assert!(some_failed(1, 2, "journal", "restored").ends_with("the other one was"));
        assert!(some_failed(1, 3, "file", "imported").ends_with("the other 2 were"));
        assert_eq!(
            some_failed(1, 1, "file", "imported"),
            "the file could not be imported (named above)"
        );
    }
}
