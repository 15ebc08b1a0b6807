//! The history handle ([`vlmctl_deploy::history::History`]) as the CLI constructs it: from
//! `--store` (`VLMCTL_STORE`) and `--no-record`, under the selected host's name, scrubbed by
//! [`crate::redact`], its one warning on stderr. The rule "a write that fails is one warning,
//! never the command's outcome" is the handle's; this module only adapts [`Output`] and
//! [`Failure`] to it.

use std::path::{Path, PathBuf};

use vlmctl_bench::run::Results;
use vlmctl_deploy::events::Event;
use vlmctl_deploy::history::History;
use vlmctl_store::{JobKind, NewRun, Source, State};

use crate::cli::{RecordArgs, StoreArgs};
use crate::{Failure, Output, redact};

/// `--store` (`VLMCTL_STORE`), else `<state>/history.sqlite`.
pub(crate) fn store_path(args: &StoreArgs, state: &Path) -> PathBuf {
    args.store
        .clone()
        .unwrap_or_else(|| vlmctl_store::default_path(state))
}

/// The one line a job's outcome is recorded with: what it did, or the error's first line.
pub(crate) fn first_line(f: &Failure) -> String {
    format!("{:#}", f.error)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The history handle of one command (`state`: the base state dir, where the history is):
/// records nothing under `--no-record`; a database that cannot be opened is the warning.
pub(crate) fn open(args: &RecordArgs, state: &Path, host: String, out: &mut Output) -> History {
    if args.no_record {
        return History::off();
    }
    History::open(
        &store_path(&args.store, state),
        Source::Cli,
        host,
        redact::secrets().clone(),
        &mut warnings(out),
    )
}

/// Where the history's warning goes: stderr, as every event's line.
pub(crate) fn warnings(out: &mut Output) -> impl FnMut(Event) + '_ {
    move |e: Event| out.progress(&e.to_string())
}

/// [`History`] for a command that renders to [`Output`] and fails with a [`Failure`].
pub(crate) struct Recorder {
    history: History,
}

impl Recorder {
    /// [`open`].
    pub(crate) fn open(args: &RecordArgs, state: &Path, host: String, out: &mut Output) -> Self {
        Self {
            history: open(args, state, host, out),
        }
    }

    /// A run that is over, recorded at once with its results (`tune`'s variants); its id.
    pub(crate) fn record_finished(
        &mut self,
        run: NewRun,
        results: &Results,
        out: &mut Output,
    ) -> Option<i64> {
        self.history
            .record_finished(run, results, &mut warnings(out))
    }

    /// A job that is starting on this host.
    pub(crate) fn begin_job(
        &mut self,
        kind: JobKind,
        deployment: Option<&str>,
        spec_sha256: Option<String>,
        out: &mut Output,
    ) -> Option<i64> {
        self.history
            .begin_job(kind, deployment, spec_sha256, None, &mut warnings(out))
    }

    /// A job's outcome: `done` with what it did, `interrupted` when a signal stopped it (exit
    /// code 130), else `failed` with the error's first line; the spec and lock hashes when the
    /// job learned them.
    pub(crate) fn finish_job(
        &mut self,
        id: Option<i64>,
        outcome: Result<&str, &Failure>,
        hashes: Option<(&str, &str)>,
        out: &mut Output,
    ) {
        let (state, detail) = match outcome {
            Ok(detail) => (State::Done, detail.to_owned()),
            Err(f) if f.code == crate::exit_codes::INTERRUPTED => {
                (State::Interrupted, first_line(f))
            }
            Err(f) => (State::Failed, first_line(f)),
        };
        self.history
            .finish_job(id, state, &detail, hashes, &mut warnings(out));
    }
}
