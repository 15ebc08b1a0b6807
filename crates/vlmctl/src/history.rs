//! Recording into the history (`vlmctl-store`) beside a bench run or a job. The history is a
//! record of the work, not part of it: a database that cannot be opened or written costs one
//! warning on stderr, never the command's outcome or its exit code.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use vlmctl_bench::run::Results;
use vlmctl_deploy::targets::Placed;
use vlmctl_store::{JobKind, NewJob, NewRun, Source, State, Store, StoreError};

use crate::cli::{RecordArgs, StoreArgs};
use crate::{Failure, Output, redact};

/// `--store` (`VLMCTL_STORE`), else `<state>/history.sqlite`.
pub(crate) fn store_path(args: &StoreArgs, state: &Path) -> PathBuf {
    args.store
        .clone()
        .unwrap_or_else(|| vlmctl_store::default_path(state))
}

/// `warning: not recorded in the history: <error chain>` and the error's hint.
fn warning(e: &StoreError) -> String {
    let mut text = format!(
        "warning: not recorded in the history: {}",
        vlmctl_base::chain::one_line(e)
    );
    if let Some(h) = e.hint() {
        let _ = write!(text, "\nhint: {h}");
    }
    text
}

/// The one line a job's outcome is recorded with: what it did, or the error's first line.
pub(crate) fn first_line(f: &Failure) -> String {
    format!("{:#}", f.error)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The history as one command writes to it. After the first error it records nothing more
/// (one warning per command, not one per write).
pub(crate) struct Recorder {
    store: Option<Store>,
}

impl Recorder {
    /// Opens the database unless `--no-record`; a failure to open is the warning.
    pub(crate) fn open(args: &RecordArgs, state: &Path, out: &mut Output) -> Self {
        if args.no_record {
            return Self { store: None };
        }
        let path = store_path(&args.store, state);
        match Store::open(&path) {
            Ok(store) => Self { store: Some(store) },
            Err(e) => {
                out.progress(&warning(&e));
                Self { store: None }
            }
        }
    }

    /// Whether anything is recorded.
    pub(crate) fn on(&self) -> bool {
        self.store.is_some()
    }

    /// Runs `write` on the open store; an error is the warning and closes the store.
    fn write<T>(
        &mut self,
        out: &mut Output,
        write: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Option<T> {
        let store = self.store.as_mut()?;
        match write(store) {
            Ok(v) => Some(v),
            Err(e) => {
                out.progress(&warning(&e));
                self.store = None;
                None
            }
        }
    }

    /// A bench run that is starting: its plan as the targets' hosts see it, and which
    /// deployment each target measures on which host (`state`: the state dir the hosts'
    /// folders are under).
    pub(crate) fn begin_run(
        &mut self,
        plan_path: &Path,
        placed: &Placed,
        state: &Path,
        out: &mut Output,
    ) -> Option<i64> {
        if !self.on() {
            return None;
        }
        let run = NewRun {
            source: Source::Cli,
            host: vlmctl_deploy::history::host_name(),
            plan: plan_path.display().to_string(),
            plan_json: serde_json::to_value(&placed.seen.plan).unwrap_or_default(),
            targets: placed.links(state),
            state: State::Running,
        };
        self.write(out, |s| s.begin_run(&run))
    }

    /// A run that is over, recorded at once with its results (`tune`'s variants); its id.
    pub(crate) fn record_finished(
        &mut self,
        run: &NewRun,
        results: &Results,
        out: &mut Output,
    ) -> Option<i64> {
        let id = self.write(out, |s| s.begin_run(run))?;
        self.write(out, |s| s.finish_run(id, results))?;
        Some(id)
    }

    /// The run's results, once written to disk.
    pub(crate) fn finish_run(&mut self, id: Option<i64>, results: &Results, out: &mut Output) {
        if let Some(id) = id {
            self.write(out, |s| s.finish_run(id, results));
        }
    }

    /// The run ended in an error.
    pub(crate) fn fail_run(&mut self, id: Option<i64>, error: &str, out: &mut Output) {
        if let Some(id) = id {
            self.write(out, |s| s.fail_run(id, &redact::scrub(error)));
        }
    }

    /// This process's unfinished runs and jobs stopped by a signal: `interrupted`, with why.
    pub(crate) fn interrupted(&mut self, why: &str, out: &mut Output) {
        self.write(out, |s| s.interrupt_own(&redact::scrub(why)));
    }

    /// A job that is starting on this host.
    pub(crate) fn begin_job(
        &mut self,
        kind: JobKind,
        deployment: Option<&str>,
        spec_sha256: Option<String>,
        out: &mut Output,
    ) -> Option<i64> {
        let job = NewJob {
            kind,
            host: vlmctl_deploy::history::host_name(),
            deployment: deployment.map(str::to_owned),
            spec_sha256,
            lock_sha256: None,
        };
        self.write(out, |s| s.begin_job(&job))
    }

    /// A job's outcome: `done` with what it did, `interrupted` when a signal stopped it, else
    /// `failed` with the error's first line; the spec and lock hashes when the job learned them.
    pub(crate) fn finish_job(
        &mut self,
        id: Option<i64>,
        outcome: Result<&str, &Failure>,
        hashes: Option<(&str, &str)>,
        out: &mut Output,
    ) {
        let Some(id) = id else { return };
        let (state, detail) = match outcome {
            Ok(detail) => (State::Done, detail.to_owned()),
            Err(f) if f.code == crate::exit_codes::INTERRUPTED => {
                (State::Interrupted, first_line(f))
            }
            Err(f) => (State::Failed, first_line(f)),
        };
        // What reaches a terminal is scrubbed of secrets (a mirror's password in its URL, an
        // API key); what is kept in a file must be as well.
        self.write(out, |s| {
            s.finish_job(id, state, &redact::scrub(&detail), hashes)
        });
    }
}
