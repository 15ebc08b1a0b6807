//! How a job talks to whoever runs it: typed [`Event`]s to a [`Sink`], "may I stop X?" through
//! [`Confirm`], and [`Cancel`] for "stop now" (a signal in the CLI, a closed page in a service).
//! The library never prints, never reads stdin and never installs signal handlers.

use std::sync::Arc;

use serde::Serialize;
use vlmctl_lifecycle::containers::{ConflictInfo, Launch, PullStep};
use vlmctl_lifecycle::gates::GateResult;
use vlmctl_lifecycle::hosts::LinkNotice;
use vlmctl_lifecycle::journal::Restored;
use vlmctl_weights::{FetchOutcome, FetchProgress};

use crate::human_bytes;
use crate::smoke::Smoke;

/// What a job did or found, in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Another command holds the deployment; this one waits (`wait = true`).
    WaitingForLock {
        /// The deployment.
        deployment: String,
        /// Who holds it.
        holder: String,
    },
    /// The gates are about to run.
    GatesStarted {
        /// The deployment.
        deployment: String,
        /// Its image.
        image: String,
        /// Its port.
        port: u16,
    },
    /// Every gate's result (after a fetch, the weights gate as it is now).
    Gates {
        /// In a fixed order.
        results: Vec<GateResult>,
    },
    /// The weights are missing and are fetched from the hub.
    Fetching {
        /// Lock entry.
        model: String,
    },
    /// One file is in place and verified.
    Fetched {
        /// The file, as the lock names it.
        file: String,
        /// Its size.
        size: u64,
        /// How it got there.
        outcome: FetchOutcome,
    },
    /// A step of an image pull.
    Pulling {
        /// The image.
        image: String,
        /// The daemon's step.
        step: PullStep,
    },
    /// The pull is over (`pulled`: false when the image was there already).
    Pulled {
        /// The image.
        image: String,
        /// Whether anything was pulled.
        pulled: bool,
    },
    /// A file was pushed to the engine's host and verified there.
    PushedToHost {
        /// Its name in the models directory.
        file: String,
        /// Its size.
        bytes: u64,
        /// Pieces an earlier, cut-off push had left (not sent again).
        kept: u64,
        /// Pieces sent now.
        sent: u64,
    },
    /// A file on the engine's host is the locked one (checked there, before any push).
    VerifiedOnHost {
        /// Its name in the models directory.
        file: String,
        /// Trusted by the stamp the host wrote when it last hashed it, unchanged since (not
        /// hashed again); false: hashed there now.
        stamped: bool,
    },
    /// A staging folder a killed push left on the host, for a file no lock here names, was
    /// removed.
    StagingRemoved {
        /// Its name in the models directory (`.vlmctl-push-<sha256>...`).
        folder: String,
        /// The bytes it held.
        bytes: u64,
    },
    /// A staging folder for a file no lock here names was left alone: another push is writing
    /// it now.
    StagingInUse {
        /// Its name in the models directory.
        folder: String,
        /// The bytes in it so far.
        bytes: u64,
    },
    /// A container that holds what the deployment needs.
    ConflictFound {
        /// What it is.
        conflict: ConflictInfo,
    },
    /// A conflict left running: not confirmed.
    NotStopping {
        /// Its name.
        name: String,
    },
    /// `--stop NAME` named no running conflict.
    StopIgnored {
        /// The name given.
        name: String,
    },
    /// Something the user should know that does not stop the job.
    Warning {
        /// What.
        message: String,
    },
    /// About to stop these (journal written).
    Stopping {
        /// Names.
        names: Vec<String>,
        /// The journal.
        journal: std::path::PathBuf,
    },
    /// A cancel came while this conflict was stopping: the run waits for that stop to end
    /// (dockerd finishes it), then starts the container again.
    InterruptedDuringStop {
        /// The container.
        name: String,
        /// Its stop timeout: the longest the wait takes.
        stop_timeout_s: u64,
    },
    /// Stopped.
    Stopped {
        /// Names.
        names: Vec<String>,
    },
    /// The deployment's running container serves files that were damaged, repaired or replaced
    /// since it started: it is replaced so that the server maps the verified files.
    WeightsChangedUnderServer {
        /// The deployment.
        deployment: String,
        /// What changed, in words.
        why: String,
    },
    /// The GPU probe of the deployment is loading the model (a one-shot container at the
    /// verbosity that logs the devices and offloaded layers, reachable by no one, removed after
    /// the load): the deployment itself then runs at the quiet verbosity (3).
    Probing {
        /// The deployment.
        deployment: String,
        /// Seconds it may take (`health.timeout_s`).
        timeout_s: u64,
    },
    /// The GPU probe loaded the model and was removed; its log is the evidence.
    Probed {
        /// The deployment.
        deployment: String,
        /// Seconds the load took.
        load_s: f64,
    },
    /// The container was created and started, or found running unchanged.
    Launched {
        /// The deployment.
        deployment: String,
        /// What happened.
        launch: Launch,
    },
    /// `/health` answered 200.
    Ready {
        /// Seconds from start.
        startup_s: f64,
    },
    /// The smoke request answered.
    SmokeDone {
        /// What it showed.
        smoke: Smoke,
    },
    /// `tune`: a variant is about to be launched.
    VariantStarting {
        /// The deployment relaunched with it.
        deployment: String,
        /// Its name.
        name: String,
        /// What it changes in the spec (`Variant::describe`).
        settings: String,
        /// 0-based.
        index: usize,
        /// How many.
        total: usize,
    },
    /// `tune`: a variant was measured, or failed.
    VariantDone {
        /// Its name.
        name: String,
        /// How it did.
        outcome: crate::tune::Outcome,
    },
    /// `tune`: the deployment's original container is being put back.
    RestoringOriginal {
        /// The deployment.
        deployment: String,
        /// The original's id (`None`: there was none; only the variant is removed).
        container: Option<String>,
    },
    /// A failed run's work was undone.
    Undone {
        /// What the undo did.
        restored: Restored,
    },
    /// A spec's `[model]` is not pinned in the lock: it is resolved against the hub now.
    /// Text: `pinning NEED; asking ENDPOINT`.
    Pinning {
        /// What is pinned and why ([`crate::pin::PinNeed`]'s text).
        need: String,
        /// The hub asked.
        endpoint: String,
    },
    /// The lock has the entry now (or already had it). Text: `pinned NAME in LOCK: REPO@COMMIT`.
    Pinned {
        /// The entry and what happened to the lock.
        pinned: crate::pin::Pinned,
    },
    /// `weights update`: a branch or tag is resolved again.
    /// Text: `resolving REPO@REVISION on ENDPOINT`.
    Resolving {
        /// The repository.
        repo: String,
        /// The branch or tag.
        revision: String,
        /// The hub asked.
        endpoint: String,
    },
    /// `weights verify`: the files are being checked.
    /// Text: `verifying N file(s), SIZE, on up to T thread(s)`.
    Verifying {
        /// How many files.
        files: usize,
        /// Their bytes.
        bytes: u64,
        /// Threads at most.
        threads: usize,
    },
    /// `weights adopt`: a file given is being checked against the lock.
    /// Text: `verifying PATH (SIZE)`.
    Adopting {
        /// The file given.
        path: std::path::PathBuf,
        /// Its locked size.
        bytes: u64,
    },
    /// `weights push`: files go to one folder of the host. Text: `N file(s) to HOST:DIR`.
    PushingTo {
        /// How many files.
        files: usize,
        /// The host's name.
        host: String,
        /// The folder there.
        dir: std::path::PathBuf,
    },
    /// An SSH forward to another host ended under the job, was opened again, or is lost. It
    /// comes from the engine's `Sessions` pool, not from the job: the front-end that holds the
    /// pool's channel puts it among the events of what runs. Text: the notice's own line.
    Link {
        /// What happened to the forward.
        notice: LinkNotice,
    },
}

/// One line of text per event (a conflict, a few): what the terminal and the service's pages
/// show. Front-ends add bars, spinners or server-sent events around it; an event added later
/// shows everywhere without another edit.
impl std::fmt::Display for Event {
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per variant: a table of the lines, read top to bottom"
    )]
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use vlmctl_lifecycle::gates::GateStatus;
        let names = |n: &[String]| n.join(", ");
        match self {
            Self::WaitingForLock { deployment, holder } => {
                write!(f, "waiting for {holder} to finish with {deployment} ...")
            }
            Self::GatesStarted {
                deployment,
                image,
                port,
            } => write!(f, "gates for {deployment} ({image} on port {port})"),
            Self::Gates { results } => {
                let failed: Vec<&str> = results
                    .iter()
                    .filter(|g| g.status == GateStatus::Fail)
                    .map(|g| g.name.as_str())
                    .collect();
                if failed.is_empty() {
                    write!(f, "gates: {} passed", results.len())
                } else {
                    write!(f, "gates failed: {}", failed.join(", "))
                }
            }
            Self::Fetching { model } => write!(f, "fetching {model} from the hub"),
            Self::Fetched {
                file,
                size,
                outcome,
            } => write!(f, "{file}: {}", fetched(outcome, *size)),
            Self::Pulling { image, step } => {
                write!(f, "pulling {image}: ")?;
                if let Some(l) = &step.layer {
                    write!(f, "{l} ")?;
                }
                write!(f, "{}", step.status)?;
                if let Some((done, total)) = step.bytes {
                    write!(f, " {}/{}", human_bytes(done), human_bytes(total))?;
                }
                Ok(())
            }
            Self::Pulled { image, pulled } => {
                if *pulled {
                    write!(f, "pulled {image}")
                } else {
                    write!(f, "{image} is here already")
                }
            }
            Self::PushedToHost {
                file,
                bytes,
                kept,
                sent,
            } => {
                write!(
                    f,
                    "pushed {file} ({}) to the host, verified there",
                    human_bytes(*bytes)
                )?;
                if *kept > 0 {
                    write!(
                        f,
                        "; resumed: {kept} piece(s) were already there, {sent} sent"
                    )?;
                }
                Ok(())
            }
            Self::VerifiedOnHost { file, stamped } => write!(
                f,
                "{file}: on the host, verified there {}",
                how_verified(*stamped)
            ),
            Self::StagingRemoved { folder, bytes } => write!(
                f,
                "removed {folder} from the host ({}): a cut-off push's pieces of a file no lock \
                 here names",
                human_bytes(*bytes)
            ),
            Self::StagingInUse { folder, bytes } => write!(
                f,
                "left {folder} on the host ({} so far): another push is writing it",
                human_bytes(*bytes)
            ),
            Self::ConflictFound { conflict: c } => {
                let lines: Vec<&str> = c.logs.lines().collect();
                let tail = &lines[lines.len().saturating_sub(5)..];
                write!(
                    f,
                    "conflict: {} [{}] {} image {} restart {}{}\n  command: {}\n  last log \
                     lines:\n    {}",
                    c.name,
                    c.state,
                    c.status,
                    c.image,
                    c.restart_policy,
                    c.gpu_mib
                        .map(|m| format!(", {m} MiB GPU"))
                        .unwrap_or_default(),
                    c.command,
                    tail.join("\n    ")
                )
            }
            Self::NotStopping { name } => write!(
                f,
                "not stopping {name} (not confirmed: answer the prompt, or pass --stop {name})"
            ),
            Self::StopIgnored { name } => {
                write!(f, "--stop {name}: no such running conflict; ignored")
            }
            Self::Warning { message } => write!(f, "warning: {message}"),
            Self::Stopping { names: n, journal } => {
                write!(f, "stopping {} (journal: {})", names(n), journal.display())
            }
            Self::InterruptedDuringStop {
                name,
                stop_timeout_s,
            } => write!(
                f,
                "interrupted: waiting for the stop of {name} (up to {stop_timeout_s} s), then \
                 restoring it"
            ),
            Self::Stopped { names: n } => write!(f, "stopped {}", names(n)),
            Self::WeightsChangedUnderServer { deployment, why } => write!(
                f,
                "the weights under the running {deployment} changed since it started ({why}): \
                 it still maps the earlier bytes, so it is replaced to serve the verified files"
            ),
            Self::Launched { deployment, launch } => match launch {
                Launch::Unchanged { .. } => write!(
                    f,
                    "{deployment} is already running this spec: nothing to do"
                ),
                Launch::Started { replaced, .. } => write!(
                    f,
                    "{} {deployment}; waiting for /health",
                    if *replaced { "replaced" } else { "started" }
                ),
            },
            Self::Probing {
                deployment,
                timeout_s,
            } => write!(
                f,
                "probing the GPU for {deployment}: loading the model once in a container no one \
                 can reach (up to {timeout_s} s), to read where llama-server puts it"
            ),
            Self::Probed { deployment, load_s } => write!(
                f,
                "GPU probe of {deployment} loaded the model in {load_s:.1} s and was removed"
            ),
            Self::Ready { startup_s } => write!(f, "ready after {startup_s:.1} s"),
            Self::SmokeDone { smoke } => write!(
                f,
                "smoke request answered by {} in {:.0} ms{}",
                smoke.model,
                smoke.wall_ms,
                if smoke.vision { " (with an image)" } else { "" }
            ),
            Self::VariantStarting {
                deployment,
                name,
                settings,
                index,
                total,
            } => write!(
                f,
                "variant {}/{total}: {name} ({settings}): relaunching {deployment}",
                index + 1
            ),
            Self::VariantDone { name, outcome } => match outcome {
                crate::tune::Outcome::Measured(m) => write!(
                    f,
                    "variant {name}: p50 {:.1} ms ({}), {} ok, {} errors{}",
                    m.p50_ms,
                    m.config,
                    m.ok,
                    m.errors,
                    m.memory_mib
                        .map(|v| format!(", {v} MiB"))
                        .unwrap_or_default()
                ),
                crate::tune::Outcome::Failed { why, .. } => {
                    write!(f, "variant {name}: FAILED: {why}")
                }
            },
            Self::RestoringOriginal {
                deployment,
                container,
            } => match container {
                Some(id) => write!(
                    f,
                    "putting {deployment} back (container {})",
                    id.get(..12).unwrap_or(id)
                ),
                None => write!(
                    f,
                    "removing the last variant ({deployment} had no container)"
                ),
            },
            Self::Undone { restored } => {
                write!(f, "undone: the earlier state is back")?;
                let back: Vec<&String> =
                    restored.started.iter().chain(&restored.put_back).collect();
                if !back.is_empty() {
                    let back: Vec<&str> = back.iter().map(|s| s.as_str()).collect();
                    write!(f, " ({})", back.join(", "))?;
                }
                Ok(())
            }
            Self::Pinning { need, endpoint } => write!(f, "pinning {need}; asking {endpoint}"),
            Self::Pinned { pinned } => {
                let what = match &pinned.change {
                    crate::pin::Change::Added => "pinned",
                    crate::pin::Change::Updated { .. } => "re-pinned",
                    crate::pin::Change::Unchanged => "already pinned",
                };
                let e = &pinned.entry;
                write!(
                    f,
                    "{what} {} in {}: {}@{}",
                    e.name,
                    pinned.lock.display(),
                    e.repo,
                    e.revision
                )
            }
            Self::Resolving {
                repo,
                revision,
                endpoint,
            } => write!(f, "resolving {repo}@{revision} on {endpoint}"),
            Self::Verifying {
                files,
                bytes,
                threads,
            } => write!(
                f,
                "verifying {files} file(s), {}, on up to {threads} thread(s)",
                human_bytes(*bytes)
            ),
            Self::Adopting { path, bytes } => {
                write!(f, "verifying {} ({})", path.display(), human_bytes(*bytes))
            }
            Self::PushingTo { files, host, dir } => {
                write!(f, "{files} file(s) to {host}:{}", dir.display())
            }
            Self::Link { notice } => write!(f, "{notice}"),
        }
    }
}

/// What a fetch did to one file, in words.
#[must_use]
pub fn fetched(outcome: &FetchOutcome, size: u64) -> String {
    match outcome {
        FetchOutcome::AlreadyPresent => "already present, verified".to_owned(),
        FetchOutcome::FromCache => format!("verified from the hub cache ({})", human_bytes(size)),
        FetchOutcome::Downloaded { resumed_from: 0 } => {
            format!("downloaded and verified ({})", human_bytes(size))
        }
        FetchOutcome::Downloaded { resumed_from } => format!(
            "downloaded and verified ({}, resumed after {})",
            human_bytes(size),
            human_bytes(*resumed_from)
        ),
        FetchOutcome::Adopted { linked: true } => "adopted (hard link), verified".to_owned(),
        FetchOutcome::Adopted { linked: false } => "adopted (copied), verified".to_owned(),
    }
}

/// `(stamp: ...)` or `(hashed there)`: how a file on another host was found to be the locked one.
#[must_use]
pub fn how_verified(stamped: bool) -> &'static str {
    if stamped {
        "(stamp: unchanged since the host hashed it, not hashed again)"
    } else {
        "(hashed there)"
    }
}

/// Where a job's events go.
pub trait Sink {
    /// One event.
    fn event(&mut self, event: Event);

    /// A progress receiver for one file's download; the hub client calls it from its own tasks,
    /// so it is shared and thread-safe. The default shows nothing.
    fn download(&mut self, _file: &str) -> Arc<dyn FetchProgress> {
        Arc::new(Quiet)
    }
}

/// A closure is a sink.
impl<F: FnMut(Event)> Sink for F {
    fn event(&mut self, event: Event) {
        self(event);
    }
}

/// A sink that keeps everything: for tests, and for callers that look afterwards.
impl Sink for Vec<Event> {
    fn event(&mut self, event: Event) {
        self.push(event);
    }
}

struct Quiet;

impl FetchProgress for Quiet {
    fn start(&self, _file: &str, _total: u64, _resumed: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self, _file: &str) {}
}

/// "May I stop this container?", asked once per conflict the spec names (unless `yes`). The
/// answer may take its time (a person at a prompt, a page in a browser): the job waits for it
/// without holding its thread, and a [`Cancel`] meanwhile ends the job with nothing changed.
pub trait Confirm {
    /// The answer.
    fn stop<'a>(&'a mut self, conflict: &'a ConflictInfo) -> Answer<'a>;
}

/// An answer to come.
pub type Answer<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + 'a>>;

/// Never confirms: for runs without anyone to ask.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOne;

impl Confirm for NoOne {
    fn stop<'a>(&'a mut self, _conflict: &'a ConflictInfo) -> Answer<'a> {
        Box::pin(std::future::ready(false))
    }
}

/// Asks a job to stop, with the reason. A job looks at it between its steps, while it waits,
/// and during the Docker calls whose outcome the journal already covers (a stop marked as
/// issued, which the undo waits out); never during a launch, whose outcome it must know. Then it
/// undoes what it did.
#[derive(Debug, Clone)]
pub struct Cancel(Arc<tokio::sync::watch::Sender<Option<String>>>);

impl Default for Cancel {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl Cancel {
    /// A token nobody has cancelled yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for the stop; the first reason wins.
    pub fn cancel(&self, why: &str) {
        self.0.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(why.to_owned());
                true
            } else {
                false
            }
        });
    }

    /// The reason, if a stop was asked for.
    #[must_use]
    pub fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Waits until a stop is asked for; returns the reason.
    pub async fn cancelled(&self) -> String {
        let mut rx = self.0.subscribe();
        let why = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        match why {
            Some(why) => why,
            // The sender lives in `self`: it cannot be dropped while we wait.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_wakes_a_waiter_with_the_first_reason() {
        let c = Cancel::new();
        assert_eq!(c.reason(), None);
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.cancelled().await })
        };
        c.cancel("SIGTERM");
        c.cancel("SIGINT");
        assert_eq!(waiter.await.unwrap(), "SIGTERM");
        assert_eq!(c.reason().as_deref(), Some("SIGTERM"));
        assert_eq!(c.cancelled().await, "SIGTERM", "already cancelled: at once");
    }
}
