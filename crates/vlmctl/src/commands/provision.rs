//! `vlmctl provision` and `vlmctl relaunch`: the library's job, rendered. Events become progress
//! lines, download bars and a pull spinner on stderr; conflicts are confirmed at a terminal
//! prompt; SIGINT, SIGTERM, SIGHUP and SIGQUIT cancel the job, which then undoes what it did.

use std::io::{BufRead as _, IsTerminal as _};
use std::sync::Arc;

use indicatif::ProgressBar;
use vlmctl_deploy::events::{Answer, Cancel, Confirm, Event, Sink};
use vlmctl_deploy::offload::GpuProof;
use vlmctl_deploy::provision::{self, Ctx, Options, Provisioned};
use vlmctl_lifecycle::containers::{ConflictInfo, Launch};
use vlmctl_weights::FetchProgress;

use vlmctl_store::JobKind;

use crate::cli::ProvisionArgs;
use crate::failure::Failure;
use crate::history::Recorder;
use crate::render::{self, Bar};
use crate::{Output, exit_codes};

/// `vlmctl provision` (and `relaunch`, which never stops anything).
pub async fn provision(
    args: &ProvisionArgs,
    relaunch: bool,
    out: &mut Output,
) -> Result<u8, Failure> {
    let d = &args.deploy;
    if args.dry_run {
        let plan = super::plan(d.spec.as_deref(), &d.lock.lock, &d.dirs)?;
        if let Some(need) = &plan.unpinned {
            let then = if d.pin.locked {
                "with --locked (VLMCTL_LOCKED), provision refuses to change the lock (exit 3)"
            } else {
                "provision will pin it before it starts (commit, sizes, sha256 from the hub)"
            };
            out.progress(&format!("not pinned yet: {need}\n{then}"));
        }
        out.stdout(&plan.spec.docker_run_line(&plan.mount));
        return Ok(exit_codes::SUCCESS);
    }
    let state = super::state_dir(&d.state);
    // The deployment is known before anything changes (pinning writes the lock): the job is
    // recorded from here on, its hashes once the plan has them.
    let spec = vlmctl_deploy::plan::load_spec(d.spec.as_deref())?;
    let mut rec = Recorder::open(&args.record, &super::base_state_dir(&d.state), out);
    let kind = if relaunch {
        JobKind::Relaunch
    } else {
        JobKind::Provision
    };
    let job = rec.begin_job(kind, Some(&spec.name), Some(spec.sha256()), out);
    let mut hashes = None;
    let done = provision_job(args, relaunch, &state, &mut hashes, out).await;
    rec.finish_job(
        job,
        done.as_deref(),
        hashes
            .as_ref()
            .map(|(s, l): &(String, String)| (s.as_str(), l.as_str())),
        out,
    );
    done.map(|_| exit_codes::SUCCESS)
}

/// The job itself; `hashes` gets the spec's and the lock entry's once the plan is known.
/// Returns what it did, in one line.
async fn provision_job(
    args: &ProvisionArgs,
    relaunch: bool,
    state: &std::path::Path,
    hashes: &mut Option<(String, String)>,
    out: &mut Output,
) -> Result<String, Failure> {
    let d = &args.deploy;
    let plan = match d.pinned_plan(out).await {
        Ok(p) => p,
        Err(f) => return Err(with_other_gates(d, f, out).await),
    };
    *hashes = Some((plan.spec.sha256(), plan.mount.lock_sha256.clone()));
    let hub = super::hub_client(&d.hub)?;
    let cancel = Cancel::new();
    // Listening from the start: a signal at any point ends the job through its undo, never by
    // killing the process with containers down.
    let listener = cancel_on_signals(&cancel)?;
    let opts = Options {
        relaunch,
        stop: args.stop.clone(),
        yes: args.yes,
        wait: d.state.wait,
        within_tune: false,
    };
    let mut sink = Progress::new(out, &plan.spec.name);
    let done = provision::provision(
        &plan,
        &opts,
        &hub,
        Ctx {
            state,
            sink: &mut sink,
            confirm: &mut Terminal,
            cancel: &cancel,
        },
    )
    .await;
    listener.abort();
    sink.finish();
    let base = plan.base_url();
    let detail = match done? {
        Provisioned::Unchanged {
            container_id,
            model,
            ..
        } => {
            let name = &plan.spec.name;
            if d.json {
                let launch = Launch::Unchanged {
                    id: container_id.clone(),
                };
                let doc = serde_json::json!({"deployment": name, "unchanged": true, "container_id": container_id, "launch": launch, "url": format!("{base}/v1"), "model": model});
                out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                out.stdout(&format!("{name} unchanged and healthy\n\nclient settings:\nNAV_VLLM_URL={base}/v1\nNAV_VLLM_MODEL={model}"));
            }
            format!("{name} unchanged and healthy, serving {model} at {base}")
        }
        Provisioned::Ready {
            record,
            record_path,
            ..
        } => {
            if d.json {
                // The record, with the URL clients use (as `relaunch --json` gives it).
                let mut doc = serde_json::to_value(&record).unwrap_or_default();
                if let Some(o) = doc.as_object_mut() {
                    o.insert("url".to_owned(), format!("{base}/v1").into());
                }
                out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                let smoke = &record.smoke;
                let gpu = match &record.gpu_proof {
                    GpuProof::Proven(p) => format!("\nGPU: {}", p.summary()),
                    GpuProof::NotChecked { .. } => String::new(),
                };
                out.stdout(&format!(
                    "{} ready in {:.1} s (smoke: {:?} in {:.0} ms{}); record: {}{gpu}\n\nclient settings:\nNAV_VLLM_URL={base}/v1\nNAV_VLLM_MODEL={}",
                    record.deployment,
                    record.startup_s,
                    smoke.content,
                    smoke.wall_ms,
                    match (smoke.vision, smoke.image_tokens) {
                        (true, Some(n)) => format!(", with the camera frame: +{n} prompt tokens"),
                        (true, None) => ", with the camera frame (not checked: the server reports \
                                        no prompt sizes)"
                            .to_owned(),
                        (false, _) => String::new(),
                    },
                    record_path.display(),
                    smoke.model
                ));
            }
            format!(
                "{} {} and ready in {:.1} s, serving {} at {base}",
                record.deployment,
                match record.launch {
                    Launch::Started { replaced: true, .. } => "replaced",
                    Launch::Started { .. } => "started",
                    Launch::Unchanged { .. } => "kept",
                },
                record.startup_s,
                record.model
            )
        }
    };
    Ok(detail)
}

/// A provision that stopped before its gates because its model could not be pinned (the hub
/// unreachable, `--locked`): the read-only gates run anyway (as `vlmctl gates` does, in well
/// under a second), their table is shown, and the failure's hint ends with the other gates that
/// fail, so that a fresh host shows every problem at once, not one per run.
async fn with_other_gates(d: &crate::cli::DeployArgs, mut f: Failure, out: &mut Output) -> Failure {
    use vlmctl_lifecycle::gates::GateStatus;
    let Ok(plan) = super::plan(d.spec.as_deref(), &d.lock.lock, &d.dirs) else {
        return f;
    };
    if plan.unpinned.is_none() {
        return f;
    }
    let (_, report) = vlmctl_deploy::gates::run(&plan, None).await;
    let failing: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.status == GateStatus::Fail && r.name != "weights")
        .map(|r| r.name.as_str())
        .collect();
    if failing.is_empty() {
        return f;
    }
    out.progress(&format!(
        "the read-only gates meanwhile (what `vlmctl gates` shows):\n{}",
        render::gates_table(&report.results)
    ));
    let also = format!(
        "then the gates: {} fail too (each with its hint above; `vlmctl gates` checks them again)",
        failing.join(", ")
    );
    f.hint = Some(match f.hint {
        Some(h) => format!("{h}\n{also}"),
        None => also,
    });
    f
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, registered now (unlike `tokio::signal::ctrl_c`, which
/// registers on first poll), each cancelling the job with its name. SIGHUP is what a dropped
/// SSH session sends, the runbooks' normal way to run this; SIGQUIT (Ctrl-\) would otherwise
/// dump core with containers down. Later signals are absorbed: the undo runs to its end.
pub(crate) fn cancel_on_signals(cancel: &Cancel) -> Result<tokio::task::JoinHandle<()>, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let fail = |e: std::io::Error| {
        Failure::new(
            anyhow::Error::new(e).context("cannot install signal handlers"),
            None,
            exit_codes::FAILURE,
        )
    };
    let mut int = signal(SignalKind::interrupt()).map_err(fail)?;
    let mut term = signal(SignalKind::terminate()).map_err(fail)?;
    let mut hup = signal(SignalKind::hangup()).map_err(fail)?;
    let mut quit = signal(SignalKind::quit()).map_err(fail)?;
    let cancel = cancel.clone();
    Ok(tokio::spawn(async move {
        loop {
            let why = tokio::select! {
                _ = int.recv() => "Ctrl-C (SIGINT)",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP (the terminal or SSH session went away)",
                _ = quit.recv() => "SIGQUIT",
            };
            cancel.cancel(why);
        }
    }))
}

/// Asks at the terminal; without one (stdin not a terminal) the answer is no. The line is read
/// on a blocking thread, so that Ctrl-C at the prompt ends the job at once, with nothing changed.
struct Terminal;

impl Confirm for Terminal {
    fn stop<'a>(&'a mut self, c: &'a ConflictInfo) -> Answer<'a> {
        Box::pin(async move {
            if !std::io::stdin().is_terminal() {
                return false;
            }
            crate::redact::write_unfinished(&format!(
                "stop {} now and restore it after teardown? [y/N] ",
                c.name
            ));
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).is_ok()
                    && line.trim().eq_ignore_ascii_case("y")
            })
            .await
            .unwrap_or(false)
        })
    }
}

/// Renders a job's events on stderr.
pub(crate) struct Progress<'a> {
    out: &'a mut Output,
    deployment: String,
    bar: Option<Arc<Bar>>,
    spinner: Option<ProgressBar>,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(out: &'a mut Output, deployment: &str) -> Self {
        Self {
            out,
            deployment: deployment.to_owned(),
            bar: None,
            spinner: None,
        }
    }

    /// A line of its own (a caller's summary of an event it keeps short).
    pub(crate) fn note(&mut self, line: &str) {
        self.out.progress(line);
    }

    /// Clears any bar or spinner still drawn.
    pub(crate) fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.clear();
        }
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
    }
}

impl Progress<'_> {
    /// The conflicts' stop: a line and, on a terminal, a spinner with the time it has taken; a
    /// cancel during it is said at once, with what the run now waits for.
    fn stop_event(&mut self, event: Event) {
        match event {
            Event::Stopping { names, journal } => {
                self.out.progress(&format!(
                    "stopping {} (journal: {})",
                    names.join(", "),
                    journal.display()
                ));
                // A stop takes up to the container's stop timeout (30 s by default): the time
                // it has taken so far, on a terminal.
                let spinner = render::spinner_elapsed();
                spinner.set_message(format!("stopping {}", names.join(", ")));
                self.spinner = Some(spinner);
            }
            Event::InterruptedDuringStop {
                name,
                stop_timeout_s,
            } => {
                if let Some(s) = self.spinner.take() {
                    s.finish_and_clear();
                }
                self.out.progress(&format!(
                    "interrupted: waiting for the stop of {name} (up to {stop_timeout_s} s), \
                     then restoring it"
                ));
                let spinner = render::spinner_elapsed();
                spinner.set_message(format!("waiting for {name} to stop, then restoring it"));
                self.spinner = Some(spinner);
            }
            Event::Stopped { names } => {
                if let Some(s) = self.spinner.take() {
                    s.finish_and_clear();
                }
                self.out.progress(&format!("stopped {}", names.join(", ")));
            }
            _ => {}
        }
    }
}

/// The line that ends a file's bar (fetched, or pushed to a host), the bar cleared first.
fn after_bar(bar: &mut Option<Arc<Bar>>, out: &mut Output, line: &str) {
    if let Some(b) = bar.take() {
        b.clear();
    }
    out.progress(line);
}

impl Sink for Progress<'_> {
    fn download(&mut self, _file: &str) -> Arc<dyn FetchProgress> {
        let bar = Arc::new(Bar::default());
        self.bar = Some(bar.clone());
        bar
    }

    fn event(&mut self, event: Event) {
        let out = &mut *self.out;
        match event {
            Event::WaitingForLock { deployment, holder } => {
                out.progress(&format!(
                    "waiting for {holder} to finish with {deployment} ..."
                ));
            }
            Event::GatesStarted {
                deployment,
                image,
                port,
            } => out.progress(&format!("gates for {deployment} ({image} on port {port})")),
            Event::Gates { results } => out.progress(&render::gates_table(&results)),
            Event::Fetching { model } => out.progress(&format!("fetching {model} from the hub")),
            Event::Fetched {
                file,
                size,
                outcome,
            } => after_bar(
                &mut self.bar,
                out,
                &format!("  {file}: {}", render::describe(&outcome, size)),
            ),
            Event::Pulling { image, step } => {
                let spinner = self.spinner.get_or_insert_with(render::spinner);
                let bytes = step
                    .bytes
                    .map(|(done, total)| {
                        format!(
                            " {}/{}",
                            render::human_bytes(done),
                            render::human_bytes(total)
                        )
                    })
                    .unwrap_or_default();
                spinner.set_message(format!(
                    "pulling {image}: {}{}{bytes}",
                    step.layer
                        .as_deref()
                        .map(|l| format!("{l} "))
                        .unwrap_or_default(),
                    step.status
                ));
            }
            Event::Pulled { image, pulled } => {
                if let Some(s) = self.spinner.take() {
                    s.finish_and_clear();
                }
                if pulled {
                    out.progress(&format!("pulled {image}"));
                }
            }
            e @ (Event::PushedToHost { .. }
            | Event::VerifiedOnHost { .. }
            | Event::StagingRemoved { .. }
            | Event::StagingInUse { .. }) => {
                if let Some(line) = render::on_host(&e) {
                    after_bar(&mut self.bar, out, &line);
                }
            }
            Event::ConflictFound { conflict: c } => out.progress(&conflict_text(&c)),
            Event::NotStopping { name } => out.progress(&format!(
                "not stopping {name} (not confirmed: answer the prompt, or pass --stop {name})"
            )),
            Event::StopIgnored { name } => {
                out.progress(&format!("--stop {name}: no such running conflict; ignored"));
            }
            Event::Warning { message } => out.progress(&format!("warning: {message}")),
            e @ (Event::Stopping { .. }
            | Event::InterruptedDuringStop { .. }
            | Event::Stopped { .. }) => self.stop_event(e),
            Event::WeightsChangedUnderServer { deployment, why } => out.progress(&format!(
                "the weights under the running {deployment} changed since it started ({why}): \
                 it still maps the earlier bytes, so it is replaced to serve the verified files"
            )),
            Event::Launched { launch } => out.progress(&match launch {
                Launch::Unchanged { .. } => format!(
                    "{} is already running this spec: nothing to do",
                    self.deployment
                ),
                Launch::Started { replaced, .. } => format!(
                    "{} {}; waiting for /health",
                    if replaced { "replaced" } else { "started" },
                    self.deployment
                ),
            }),
            e @ (Event::VariantStarting { .. }
            | Event::VariantDone { .. }
            | Event::RestoringOriginal { .. }) => {
                out.progress(&super::tune::event_text(e, &self.deployment));
            }
            // Shown in the result or in the error.
            Event::Ready { .. } | Event::SmokeDone { .. } | Event::Undone { .. } => {}
        }
    }
}

/// One conflict as a person needs to judge it: state, image, restart policy, GPU memory,
/// command and the last log lines.
fn conflict_text(c: &ConflictInfo) -> String {
    let tail: Vec<&str> = c
        .logs
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!(
        "conflict: {} [{}] {} image {} restart {}{}\n  command: {}\n  last log lines:\n    {}",
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
