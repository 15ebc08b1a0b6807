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
        use vlmctl_weights::WeightsError as E;
        let code = match &e {
            E::LockRead { .. } | E::Io { .. } => exit_codes::ENVIRONMENT,
            E::LockInvalid { .. } | E::UnknownModel { .. } => exit_codes::INVALID_INPUT,
            E::UpstreamChanged { .. }
            | E::DigestMismatch { .. }
            | E::BadContent { .. }
            | E::ExistingFileBad { .. }
            | E::AdoptRejected { .. } => exit_codes::VERIFY_FAILED,
            E::HubUnreachable { .. }
            | E::HubStatus { .. }
            | E::HubProtocol { .. }
            | E::Transfer { .. } => exit_codes::HUB,
        };
        let hint = Some(e.hint());
        Self::new(e, hint, code)
    }
}

impl From<vlmctl_lifecycle::LifecycleError> for Failure {
    fn from(e: vlmctl_lifecycle::LifecycleError) -> Self {
        use vlmctl_lifecycle::LifecycleError as E;
        let code = match &e {
            _ if e.daemon_gone() => exit_codes::ENVIRONMENT,
            E::SpecRead { .. }
            | E::DaemonUnreachable { .. }
            | E::Journal { .. }
            | E::State { .. }
            | E::Pull { .. } => exit_codes::ENVIRONMENT,
            E::Busy { .. } => exit_codes::BUSY,
            E::SpecInvalid { .. } | E::NameTaken { .. } => exit_codes::INVALID_INPUT,
            E::RegistryInspect { .. } => exit_codes::GATE_FAILED,
            E::Docker { .. }
            | E::NoGpuRuntime { .. }
            | E::PortTaken { .. }
            | E::ExitedDuringLoad { .. }
            | E::NotReady { .. }
            | E::SmokeFailed { .. }
            | E::ThinkingLeaked { .. } => exit_codes::SERVER,
        };
        let hint = Some(e.hint());
        Self::new(e, hint, code)
    }
}

impl From<vlmctl_bench::BenchError> for Failure {
    fn from(e: vlmctl_bench::BenchError) -> Self {
        use vlmctl_bench::BenchError as E;
        let code = match &e {
            E::Read { .. } => exit_codes::ENVIRONMENT,
            E::PlanInvalid { .. } | E::ImageMismatch { .. } | E::BadResults { .. } => {
                exit_codes::INVALID_INPUT
            }
        };
        let hint = Some(e.hint());
        Self::new(e, hint, code)
    }
}
