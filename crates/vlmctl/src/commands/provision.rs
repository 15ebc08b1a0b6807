//! `vlmctl provision` and `vlmctl relaunch`: the library's job, rendered. Events become progress
//! lines, download bars and a pull spinner on stderr; conflicts are confirmed at a terminal
//! prompt; SIGINT, SIGTERM, SIGHUP and SIGQUIT cancel the job, which then undoes what it did.

use std::sync::Arc;

use indicatif::ProgressBar;
use vlmctl_deploy::client::ClientSettings;
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
use crate::signals::cancel_on_signals;
use crate::{Output, exit_codes};

/// `vlmctl provision` (and `relaunch`, which never stops anything).
pub async fn provision(
    args: &ProvisionArgs,
    relaunch: bool,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let d = &args.deploy;
    if args.dry_run {
        let plan = super::plan(d.spec.as_deref(), &d.lock.lock, &d.dirs)?;
        plan.check_interface_on(engine)?;
        if let Some(need) = &plan.unpinned {
            let then = if d.pin.locked {
                "with --locked (VLMCTL_LOCKED), provision refuses to change the lock (exit 3)"
            } else {
                "provision will pin it before it starts (commit, sizes, sha256 from the hub)"
            };
            out.progress(&format!("not pinned yet: {need}\n{then}"));
        }
        let (container, note) =
            vlmctl_deploy::export::container_plan(engine, &plan.spec, &plan.mount).await;
        if let Some(note) = note {
            out.progress(&note);
        }
        if let Some(note) = vlmctl_deploy::export::probe_note(&plan.spec) {
            out.progress(&note);
        }
        out.stdout(&container.docker_run_line());
        return Ok(exit_codes::SUCCESS);
    }
    // The deployment is known before anything changes (pinning writes the lock): the job is
    // recorded from here on, its hashes once the plan has them.
    let spec = vlmctl_deploy::plan::load_spec(d.spec.as_deref())?;
    let mut rec = Recorder::open(
        &args.record,
        &super::base_state_dir(&d.state),
        vlmctl_deploy::history::host_name(engine),
        out,
    );
    let kind = if relaunch {
        JobKind::Relaunch
    } else {
        JobKind::Provision
    };
    let job = rec.begin_job(kind, Some(&spec.name), Some(spec.sha256()), out);
    let mut hashes = None;
    // Parsed once: the plan is built from this spec, not read again.
    let done = provision_job(args, relaunch, engine, spec, &mut hashes, out).await;
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
    engine: &vlmctl_lifecycle::Engine,
    spec: vlmctl_lifecycle::spec::Spec,
    hashes: &mut Option<(String, String)>,
    out: &mut Output,
) -> Result<String, Failure> {
    let d = &args.deploy;
    let hub = super::hub_client(&d.hub)?;
    let plan = match d.pinned_plan_of(spec, &hub, out).await {
        Ok(p) => p,
        Err(f) => return Err(with_other_gates(d, engine, f, out).await),
    };
    *hashes = Some((plan.spec.sha256(), plan.mount.lock_sha256.clone()));
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
    let mut sink = Progress::new(out);
    let done = provision::provision(
        &plan,
        &opts,
        &hub,
        Ctx {
            engine,
            sink: &mut sink,
            confirm: &mut Terminal,
            cancel: &cancel,
        },
    )
    .await;
    listener.abort();
    sink.finish();
    let base = plan.base_url();
    let (spec, host) = (&plan.spec, vlmctl_deploy::history::host_name(engine));
    let client = |model: &str| ClientSettings::of(spec, model, &host);
    let detail = match done? {
        Provisioned::Unchanged {
            container_id,
            model,
            ..
        } => {
            let name = &spec.name;
            let settings = client(&model);
            out.stdout(&unchanged(d.json, name, &container_id, &base, &settings));
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
                    o.insert("client".to_owned(), client(&record.smoke.model).to_json());
                }
                out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                let smoke = &record.smoke;
                let gpu = match &record.gpu_proof {
                    GpuProof::Proven(p) => format!("\nGPU: {}", p.summary()),
                    GpuProof::NotChecked { .. } => String::new(),
                };
                out.stdout(&format!(
                    "{} ready in {:.1} s (smoke: {:?} in {:.0} ms{}); record: {}{gpu}\n\n{}",
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
                    client(&smoke.model).render()
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

/// What `provision` prints for a deployment it found running unchanged: a line and the client
/// settings, or with `json` one object.
fn unchanged(
    json: bool,
    name: &str,
    container_id: &str,
    base: &str,
    client: &ClientSettings,
) -> String {
    if json {
        let launch = Launch::Unchanged {
            id: container_id.to_owned(),
        };
        let doc = serde_json::json!({"deployment": name, "unchanged": true, "container_id": container_id, "launch": launch, "url": format!("{base}/v1"), "model": client.model, "client": client.to_json()});
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    } else {
        format!("{name} unchanged and healthy\n\n{}", client.render())
    }
}

/// A provision that stopped before its gates because its model could not be pinned (the hub
/// unreachable, `--locked`): the read-only gates run anyway (as `vlmctl gates` does, in well
/// under a second), their table is shown, and the failure's hint ends with the other gates that
/// fail, so that a fresh host shows every problem at once, not one per run.
async fn with_other_gates(
    d: &crate::cli::DeployArgs,
    engine: &vlmctl_lifecycle::Engine,
    mut f: Failure,
    out: &mut Output,
) -> Failure {
    use vlmctl_lifecycle::gates::GateStatus;
    let Ok(plan) = super::plan(d.spec.as_deref(), &d.lock.lock, &d.dirs) else {
        return f;
    };
    if plan.unpinned.is_none() {
        return f;
    }
    let (_, report) = vlmctl_deploy::gates::run(engine, &plan, false).await;
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

/// Asks at the terminal; without one (stdin not a terminal) the answer is no. The line is read
/// on a blocking thread, so that Ctrl-C at the prompt ends the job at once, with nothing changed.
struct Terminal;

impl Confirm for Terminal {
    fn stop<'a>(&'a mut self, c: &'a ConflictInfo) -> Answer<'a> {
        Box::pin(super::ask_yes_no(format!(
            "stop {} now and restore it after teardown? [y/N] ",
            c.name
        )))
    }
}

/// Renders a job's events on stderr.
pub(crate) struct Progress<'a> {
    out: &'a mut Output,
    bar: Option<Arc<Bar>>,
    spinner: Option<ProgressBar>,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(out: &'a mut Output) -> Self {
        Self {
            out,
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
            e @ Event::Stopping { .. } => {
                self.out.progress(&e.to_string());
                let Event::Stopping { names, .. } = e else {
                    return;
                };
                // A stop takes up to the container's stop timeout (30 s by default): the time
                // it has taken so far, on a terminal.
                let spinner = render::spinner_elapsed();
                spinner.set_message(format!("stopping {}", names.join(", ")));
                self.spinner = Some(spinner);
            }
            e @ Event::InterruptedDuringStop { .. } => {
                if let Some(s) = self.spinner.take() {
                    s.finish_and_clear();
                }
                self.out.progress(&e.to_string());
                let Event::InterruptedDuringStop { name, .. } = e else {
                    return;
                };
                let spinner = render::spinner_elapsed();
                spinner.set_message(format!("waiting for {name} to stop, then restoring it"));
                self.spinner = Some(spinner);
            }
            e @ Event::Stopped { .. } => {
                if let Some(s) = self.spinner.take() {
                    s.finish_and_clear();
                }
                self.out.progress(&e.to_string());
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
        // Each event's line is the event's own (`Display`); what is added here is the
        // terminal's: the gates as a table, bars for files, spinners for pulls and stops.
        let out = &mut *self.out;
        match event {
            Event::Gates { results } => out.progress(&render::gates_table(&results)),
            e @ (Event::Fetched { .. }
            | Event::PushedToHost { .. }
            | Event::VerifiedOnHost { .. }
            | Event::StagingRemoved { .. }
            | Event::StagingInUse { .. }) => {
                let indent = if matches!(e, Event::Fetched { .. }) {
                    "  "
                } else {
                    ""
                };
                after_bar(&mut self.bar, out, &format!("{indent}{e}"));
            }
            e @ Event::Pulling { .. } => {
                let spinner = self.spinner.get_or_insert_with(render::spinner);
                spinner.set_message(e.to_string());
            }
            e @ Event::Pulled { pulled, .. } => {
                if let Some(s) = self.spinner.take() {
                    s.finish_and_clear();
                }
                if pulled {
                    out.progress(&e.to_string());
                }
            }
            e @ (Event::Stopping { .. }
            | Event::InterruptedDuringStop { .. }
            | Event::Stopped { .. }) => self.stop_event(e),
            // Shown in the result or in the error.
            Event::Ready { .. } | Event::SmokeDone { .. } | Event::Undone { .. } => {}
            e => out.event(&e),
        }
    }
}
