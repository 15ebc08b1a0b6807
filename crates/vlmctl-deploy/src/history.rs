//! The history (`vlmctl-store`) as a job writes to it: [`History`], the handle a front-end
//! constructs (the CLI from `--store`/`--no-record`, the service from its own connection) and
//! hands to the job. The history is a record of the work, not part of it: a write that fails is
//! one [`Event::Warning`], never the job's outcome. Beside it: which deployment each of a plan's
//! targets measured on which host ([`crate::targets::Placed::links`]), and the names hosts are
//! recorded under.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vlmctl_bench::plan::Target;
use vlmctl_bench::run::Results;
use vlmctl_lifecycle::containers::Managed;
use vlmctl_lifecycle::hosts::Host;
use vlmctl_store::{JobKind, NewJob, NewRun, Source, State, Store, StoreError, TargetLink};

use crate::events::{Event, Sink};

/// The history as one front-end's jobs write to it. After the first failed write it records
/// nothing more (one warning per command, not one per write). Every text it stores (an error,
/// why a run stopped) goes through the front-end's scrubber first.
pub struct History {
    store: Option<Arc<Mutex<Store>>>,
    source: Source,
    host: String,
    secrets: vlmctl_base::redact::Secrets,
    spill: Option<PathBuf>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("on", &self.store.is_some())
            .field("source", &self.source)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// `not recorded in the history: <error chain>` and the error's hint, as the text of a
/// [`Event::Warning`].
fn not_recorded(e: &StoreError) -> String {
    let mut text = format!("not recorded in the history: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    if let Some(h) = e.hint() {
        let _ = write!(text, "\nhint: {h}");
    }
    text
}

impl History {
    /// Records nothing (`--no-record`).
    #[must_use]
    pub fn off() -> Self {
        Self {
            store: None,
            source: Source::Cli,
            host: String::new(),
            secrets: vlmctl_base::redact::Secrets::new(),
            spill: None,
        }
    }

    /// Opens the database at `path`; a failure to open is the warning (sent to `sink`) and a
    /// handle that records nothing. `host`: what runs and jobs are recorded under
    /// ([`name_of`]); `secrets`: the front-end's secrets, which every stored text is scrubbed of.
    pub fn open(
        path: &Path,
        source: Source,
        host: String,
        secrets: vlmctl_base::redact::Secrets,
        sink: &mut dyn Sink,
    ) -> Self {
        match Store::open(path) {
            Ok(store) => Self::shared(Arc::new(Mutex::new(store)), source, host, secrets),
            Err(e) => {
                sink.event(Event::Warning {
                    message: not_recorded(&e),
                });
                Self {
                    source,
                    host,
                    secrets,
                    ..Self::off()
                }
            }
        }
    }

    /// A handle on a connection the front-end holds (the service's one writer).
    #[must_use]
    pub fn shared(
        store: Arc<Mutex<Store>>,
        source: Source,
        host: String,
        secrets: vlmctl_base::redact::Secrets,
    ) -> Self {
        Self {
            store: Some(store),
            source,
            host,
            secrets,
            spill: None,
        }
    }

    /// Results whose run cannot be recorded as finished go to `dir/run-<id>.json` instead
    /// (`vlmctl runs import` loads them), for a front-end that writes no results files itself.
    #[must_use]
    pub fn spill_to(mut self, dir: PathBuf) -> Self {
        self.spill = Some(dir);
        self
    }

    /// Whether anything is recorded.
    #[must_use]
    pub fn on(&self) -> bool {
        self.store.is_some()
    }

    /// The name runs and jobs are recorded under.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs `write` on the open store; an error is the one warning and closes the handle.
    fn write<T>(
        &mut self,
        sink: &mut dyn Sink,
        write: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, Option<String>> {
        let store = self.store.as_ref().ok_or(None)?;
        // A panic while holding the lock leaves the connection as SQLite left it, which is
        // consistent: keep using it.
        let done = write(
            &mut store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        done.map_err(|e| {
            let message = not_recorded(&e);
            sink.event(Event::Warning {
                message: message.clone(),
            });
            self.store = None;
            Some(message)
        })
    }

    /// A bench run that is starting: `run` as the front-end describes it (its host and source
    /// filled in here).
    pub fn begin_run(&mut self, mut run: NewRun, sink: &mut dyn Sink) -> Option<i64> {
        run.source = self.source;
        run.host.clone_from(&self.host);
        self.write(sink, |s| s.begin_run(&run)).ok()
    }

    /// A run recorded `queued` earlier (the service's queue) starts now.
    pub fn start_run(&mut self, id: Option<i64>, sink: &mut dyn Sink) {
        if let Some(id) = id {
            let _ = self.write(sink, |s| s.start_run(id));
        }
    }

    /// A run that is over, recorded at once with its results (`tune`'s variants); its id.
    pub fn record_finished(
        &mut self,
        run: NewRun,
        results: &Results,
        sink: &mut dyn Sink,
    ) -> Option<i64> {
        let id = self.begin_run(run, sink)?;
        self.write(sink, |s| s.finish_run(id, results)).ok()?;
        Some(id)
    }

    /// The run's results. `Err` with the warning's text when they could not be recorded
    /// (and, with [`Self::spill_to`], where they were saved instead).
    pub fn finish_run(
        &mut self,
        id: Option<i64>,
        results: &Results,
        sink: &mut dyn Sink,
    ) -> Result<(), String> {
        let Some(id) = id else { return Ok(()) };
        match self.write(sink, |s| s.finish_run(id, results)) {
            Ok(()) | Err(None) => Ok(()),
            Err(Some(why)) => Err(match &self.spill {
                None => why,
                Some(dir) => {
                    let path = dir.join(format!("run-{id}.json"));
                    let kept = serde_json::to_vec_pretty(results).unwrap_or_default();
                    match crate::write_atomically(&path, &kept) {
                        Ok(()) => format!(
                            "{why}; the results are in {} (`vlmctl runs import` loads them)",
                            path.display()
                        ),
                        Err(w) => format!(
                            "{why}; and they could not be saved to {}: {w}",
                            path.display()
                        ),
                    }
                }
            }),
        }
    }

    /// The run ended in an error.
    pub fn fail_run(&mut self, id: Option<i64>, error: &str, sink: &mut dyn Sink) {
        if let Some(id) = id {
            let error = self.secrets.scrub(error).into_owned();
            let _ = self.write(sink, |s| s.fail_run(id, &error));
        }
    }

    /// This process's unfinished runs and jobs, stopped: `interrupted`, with why.
    pub fn interrupted(&mut self, why: &str, sink: &mut dyn Sink) {
        let why = self.secrets.scrub(why).into_owned();
        let _ = self.write(sink, |s| s.interrupt_own(&why));
    }

    /// A job that is starting on this handle's host.
    pub fn begin_job(
        &mut self,
        kind: JobKind,
        deployment: Option<&str>,
        spec_sha256: Option<String>,
        lock_sha256: Option<String>,
        sink: &mut dyn Sink,
    ) -> Option<i64> {
        let job = NewJob {
            kind,
            host: self.host.clone(),
            deployment: deployment.map(str::to_owned),
            spec_sha256,
            lock_sha256,
        };
        self.write(sink, |s| s.begin_job(&job)).ok()
    }

    /// A job's outcome: `done` with what it did, `interrupted` (stopped by a signal or the
    /// service's shutdown) or `failed` with why; the spec and lock hashes when the job learned
    /// them. The detail is scrubbed: what is kept in a file must be as clean as a terminal.
    pub fn finish_job(
        &mut self,
        id: Option<i64>,
        state: State,
        detail: &str,
        hashes: Option<(&str, &str)>,
        sink: &mut dyn Sink,
    ) {
        let Some(id) = id else { return };
        let detail = self.secrets.scrub(detail).into_owned();
        let _ = self.write(sink, |s| s.finish_job(id, state, &detail, hashes));
    }
}

/// The name runs and jobs of `engine`'s host are recorded under ([`name_of`]).
#[must_use]
pub fn host_name(engine: &vlmctl_lifecycle::Engine) -> String {
    name_of(engine.host())
}

/// The name a host's runs, jobs and bench targets are recorded under: another host's own
/// (`beast`, or its `ssh://` URL), this machine's host name for this machine (the runbooks'
/// `panda`), `local` when it cannot be read.
#[must_use]
pub fn name_of(host: &Host) -> String {
    match host {
        Host::Ssh { name, .. } => name.clone(),
        Host::Local => {
            vlmctl_lifecycle::hosts::machine_name().unwrap_or_else(|| "local".to_owned())
        }
    }
}

/// Pure: is a server listening on `endpoint` the one `url` reaches? Loopback names are one
/// address; a server bound to every address (`0.0.0.0`) answers on loopback too.
#[must_use]
pub fn serves(endpoint: &(String, u16), url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(port) = u.port_or_known_default() else {
        return false;
    };
    let loopback = |h: &str| matches!(h, "127.0.0.1" | "localhost" | "::1" | "[::1]");
    let host = u.host_str().unwrap_or_default();
    port == endpoint.1
        && (host == endpoint.0
            || (loopback(host) && (loopback(&endpoint.0) || endpoint.0 == "0.0.0.0")))
}

/// Pure: each target linked to the running managed container that serves its URL, if any,
/// on `host` (the host `managed` were listed on; `state` is its state folder).
#[must_use]
pub fn link(targets: &[Target], managed: &[Managed], state: &Path, host: &str) -> Vec<TargetLink> {
    targets
        .iter()
        .map(|t| {
            let m = managed.iter().find(|m| {
                m.state == "running" && m.endpoint.as_ref().is_some_and(|e| serves(e, &t.url))
            });
            link_one(t, m, state, host)
        })
        .collect()
}

/// Pure: one target linked to `m`, the managed container that serves it on `host` (`state`:
/// that host's state folder, where its provision records are).
#[must_use]
pub fn link_one(t: &Target, m: Option<&Managed>, state: &Path, host: &str) -> TargetLink {
    TargetLink {
        target: t.name.clone(),
        url: t.url.clone(),
        host: Some(host.to_owned()),
        deployment: m.map(|m| m.name.clone()),
        spec_sha256: m.and_then(|m| m.spec_sha256.clone()),
        lock_sha256: m.and_then(|m| m.lock_sha256.clone()),
        model: m.and_then(|m| recorded_model(state, &m.name)),
    }
}

/// The lock entry's name from the deployment's provision record, when there is one.
fn recorded_model(state: &Path, deployment: &str) -> Option<String> {
    let text = std::fs::read(crate::record::path(state, deployment)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v.get("model")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_served_by_the_endpoint_on_its_port_loopback_names_alike() {
        let e = |h: &str, p| (h.to_owned(), p);
        assert!(serves(&e("127.0.0.1", 18435), "http://127.0.0.1:18435"));
        assert!(serves(&e("127.0.0.1", 18435), "http://localhost:18435/"));
        assert!(serves(&e("0.0.0.0", 18435), "http://127.0.0.1:18435"));
        assert!(!serves(&e("127.0.0.1", 18436), "http://127.0.0.1:18435"));
        assert!(!serves(&e("10.0.0.2", 18435), "http://127.0.0.1:18435"));
        assert!(serves(&e("127.0.0.1", 80), "http://127.0.0.1"));
        assert!(!serves(&e("127.0.0.1", 80), "not a url"));
    }
}
