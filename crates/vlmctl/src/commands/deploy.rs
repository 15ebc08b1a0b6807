//! `vlmctl provision | relaunch | gates | teardown | restore | export`: the weights and
//! lifecycle libraries joined, as the runbooks' gates and phases do it by hand.

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use vlmctl_lifecycle::containers::{self, ConflictInfo, Launch, LaunchStep};
use vlmctl_lifecycle::gates::{self, GateReport, GateResult, GateStatus};
use vlmctl_lifecycle::gpu::{self, GpuState};
use vlmctl_lifecycle::spec::{Gpus, ModelMount, Spec};
use vlmctl_lifecycle::{journal, lockfile, smoke};
use vlmctl_weights::{Lock, ModelEntry, Role, VerifyJob, verify_all};

use crate::cli::{
    DeployArgs, ExportArgs, ExportFormat, ProvisionArgs, RestoreArgs, StateArgs, TeardownArgs,
};
use crate::commands::weights::{Bar, describe, hub_client, human_bytes};
use crate::failure::Failure;
use crate::{Output, env_vars, exit_codes};

/// The spec `provision` uses without `--spec`.
const DEFAULT_SPEC: &str = include_str!("../../../../docker/panda-llamacpp.toml");

/// Everything validated before any I/O: spec, lock entry, where the files are, the API key.
pub struct Plan {
    spec: Spec,
    model: ModelEntry,
    mount: ModelMount,
    jobs: Vec<VerifyJob>,
    api_key: Option<String>,
}

fn load_spec(path: Option<&Path>) -> Result<Spec, Failure> {
    Ok(match path {
        Some(p) => Spec::load(p)?,
        None => Spec::parse(
            DEFAULT_SPEC,
            Path::new("docker/panda-llamacpp.toml (embedded)"),
        )?,
    })
}

fn plan(spec: Option<&Path>, lock: &Path, dirs: &crate::cli::DirArgs) -> Result<Plan, Failure> {
    let spec = load_spec(spec)?;
    let lock_data = Lock::load(lock)?;
    let model = lock_data.model(&spec.model).cloned().ok_or_else(|| {
        vlmctl_weights::WeightsError::UnknownModel {
            name: spec.model.clone(),
            lock: lock.to_owned(),
            known: lock_data.models.iter().map(|m| m.name.clone()).collect(),
        }
    })?;
    let dir = mount_source(&vlmctl_weights::model_dir(
        &model,
        dirs.dir.as_deref(),
        &dirs.models_root(),
    ))?;
    let file_of = |role: Role| {
        model
            .files
            .iter()
            .find(|f| f.role == role)
            .map(|f| f.path.clone())
    };
    let mount = ModelMount {
        dir: dir.clone(),
        model_file: file_of(Role::Model).unwrap_or_default(),
        mmproj_file: file_of(Role::Mmproj),
        lock_sha256: model.sha256(),
    };
    let api_key = match &spec.server.api_key_env {
        None => None,
        Some(var) => Some(std::env::var(var).ok().filter(|v| !v.is_empty()).inspect(|k| crate::redact::secret(k)).ok_or_else(|| {
            Failure::new(
                anyhow::anyhow!("the spec takes its API key from ${var}, which is not set"),
                Some(format!("export {var}=... (the key is passed to the container as LLAMA_API_KEY and never printed)")),
                exit_codes::INVALID_INPUT,
            )
        })?),
    };
    let jobs = VerifyJob::for_model(&model, &dir);
    Ok(Plan {
        spec,
        model,
        mount,
        jobs,
        api_key,
    })
}

/// The models directory as verified and as mounted: one absolute path, canonical when it
/// exists (symlinks resolved), so that what is hashed is what the container sees. A relative
/// path would be verified under the working directory but read by Docker as a volume name.
fn mount_source(dir: &Path) -> Result<PathBuf, Failure> {
    let abs = std::path::absolute(dir).map_err(|e| {
        Failure::new(
            anyhow::Error::new(e).context(format!(
                "cannot resolve the models directory {}",
                dir.display()
            )),
            Some("pass --dir with an absolute path".to_owned()),
            exit_codes::ENVIRONMENT,
        )
    })?;
    Ok(std::fs::canonicalize(&abs).unwrap_or(abs))
}

fn state_dir(args: &StateArgs) -> PathBuf {
    args.state_dir
        .clone()
        .unwrap_or_else(|| super::xdg_dir(env_vars::XDG_STATE_HOME, "~/.local/state"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The weights gate. With a state dir, files unchanged since they last verified (size, mtime,
/// ctime, inode, device) are not hashed again: the relaunch fast path.
async fn weights_gate(jobs: Vec<VerifyJob>, state: Option<PathBuf>) -> GateResult {
    let total: u64 = jobs.iter().map(|j| j.file.size).sum();
    let n = jobs.len();
    let (reports, fast) = tokio::task::spawn_blocking(move || match state {
        Some(s) => vlmctl_weights::verify_all_cached(&jobs, 0, &s.join("verified.json")),
        None => (verify_all(&jobs, 0), 0),
    })
    .await
    .unwrap_or_default();
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{}: {}", r.path, r.status))
        .collect();
    if bad.is_empty() && reports.len() == n {
        let how = if fast == n && n > 0 {
            " (unchanged since they last verified: not re-hashed)"
        } else {
            ""
        };
        GateResult::new(
            "weights",
            GateStatus::Pass,
            format!("{n} file(s), {}, verified{how}", human_bytes(total)),
            None,
        )
    } else {
        GateResult::new(
            "weights",
            GateStatus::Fail,
            bad.join("; "),
            Some("vlmctl weights fetch (or weights adopt PATH)"),
        )
    }
}

async fn run_gates(
    plan: &Plan,
    state: Option<&Path>,
) -> (
    Result<vlmctl_lifecycle::Docker, vlmctl_lifecycle::LifecycleError>,
    GateReport,
) {
    let docker = vlmctl_lifecycle::connect().await;
    let report = gates::run(
        docker.as_ref(),
        &plan.spec,
        which("nvidia-smi"),
        weights_gate(plan.jobs.clone(), state.map(Path::to_owned)),
    )
    .await;
    (docker, report)
}

fn gates_table(report: &GateReport) -> String {
    let rows: Vec<[String; 3]> = report
        .results
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                format!("{:?}", r.status).to_uppercase(),
                r.evidence.clone(),
            ]
        })
        .collect();
    let mut out = crate::table::render(&["GATE", "STATUS", "EVIDENCE"], &rows);
    for r in report
        .results
        .iter()
        .filter(|r| r.status != GateStatus::Pass)
    {
        if let Some(h) = &r.hint {
            let _ = write!(out, "\nhint ({}): {h}", r.name);
        }
    }
    out
}

/// `vlmctl gates`.
pub fn gates_cmd(args: &DeployArgs, out: &mut Output) -> Result<u8, Failure> {
    let plan = plan(args.spec.as_deref(), &args.lock.lock, &args.dirs)?;
    // `gates` always hashes: it is the thorough check.
    let (_, report) = crate::runtime()?.block_on(run_gates(&plan, None));
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&json!({"ok": report.passed(), "gates": report.results, "conflicts": report.conflicts})).unwrap_or_default());
    } else {
        out.stdout(&gates_table(&report));
    }
    Ok(if report.passed() {
        exit_codes::SUCCESS
    } else {
        exit_codes::GATE_FAILED
    })
}

/// `vlmctl export`.
pub fn export(args: &ExportArgs, out: &mut Output) -> Result<u8, Failure> {
    let plan = plan(args.spec.as_deref(), &args.lock.lock, &args.dirs)?;
    let text = match args.format {
        ExportFormat::DockerRun => plan.spec.docker_run_line(&plan.mount),
        ExportFormat::Compose => super::compose::compose(&plan.spec, &plan.mount),
    };
    out.stdout(&text);
    Ok(exit_codes::SUCCESS)
}

/// `vlmctl provision` (and `relaunch`, which never stops anything).
pub fn provision(args: &ProvisionArgs, relaunch: bool, out: &mut Output) -> Result<u8, Failure> {
    let d = &args.deploy;
    let plan = plan(d.spec.as_deref(), &d.lock.lock, &d.dirs)?;
    if args.dry_run {
        out.stdout(&plan.spec.docker_run_line(&plan.mount));
        return Ok(exit_codes::SUCCESS);
    }
    let state = state_dir(&d.state);
    // Held for the whole job; the kernel drops it however this process ends.
    let _lock = lock_deployment(
        &d.state,
        &state,
        &plan.spec.name,
        if relaunch { "relaunch" } else { "provision" },
        out,
    )?;
    crate::runtime()?.block_on(provision_async(args, relaunch, &plan, &state, out))
}

/// Takes the deployment's lock: at once, or after waiting with `--wait`.
fn lock_deployment(
    args: &StateArgs,
    state: &Path,
    deployment: &str,
    command: &str,
    out: &mut Output,
) -> Result<lockfile::DeploymentLock, Failure> {
    if args.wait {
        Ok(lockfile::acquire_waiting(
            state,
            deployment,
            command,
            &mut |holder| {
                out.progress(&format!(
                    "waiting for {holder} to finish with {deployment} ..."
                ));
            },
        )?)
    } else {
        Ok(lockfile::try_acquire(state, deployment, command)?)
    }
}

/// An id for this run: on the container it creates (label) and on the journal entries it
/// writes, so that undoing a failed run touches only what that run did.
fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

async fn provision_async(
    args: &ProvisionArgs,
    relaunch: bool,
    plan: &Plan,
    state: &Path,
    out: &mut Output,
) -> Result<u8, Failure> {
    let started = std::time::Instant::now();
    let spec = &plan.spec;
    out.progress(&format!(
        "gates for {} ({} on port {})",
        spec.name, spec.image, spec.server.port
    ));
    let (docker, mut report) = run_gates(plan, Some(state)).await;
    fetch_if_needed(args, plan, &mut report, out).await?;
    out.progress(&gates_table(&report));
    let docker = docker?;
    let blocking: Vec<&GateResult> = report
        .results
        .iter()
        .filter(|r| r.status == GateStatus::Fail)
        // GPU memory may be what stopping a confirmed conflict frees; checked after launch.
        .filter(|r| !(r.name == "gpu" && !report.conflicts.is_empty() && !relaunch))
        .collect();
    if !blocking.is_empty() {
        let names: Vec<&str> = blocking.iter().map(|r| r.name.as_str()).collect();
        return Err(Failure::new(
            anyhow::anyhow!("gate(s) failed: {}; nothing was changed", names.join(", ")),
            blocking.iter().find_map(|r| r.hint.clone()),
            exit_codes::GATE_FAILED,
        ));
    }

    // The image, pulled for the spec's platform when it is not here yet.
    pull_image(&docker, spec, out).await?;

    // Conflicts: shown, confirmed, journalled, stopped.
    let to_stop: Vec<ConflictInfo> = if relaunch {
        Vec::new()
    } else {
        choose_conflicts(&report.conflicts, &args.stop, args.yes, out)
    };
    for name in &args.stop {
        if !report.conflicts.iter().any(|c| &c.name == name) {
            out.progress(&format!("--stop {name}: no such running conflict; ignored"));
        }
    }
    // From here on every side effect is journalled first and undone on failure. Signals are
    // listened for before the first one (SIGINT, SIGTERM, SIGHUP from a dropped SSH session,
    // SIGQUIT), so none of them kills the process with containers down; they are acted on
    // between steps, never in the middle of a Docker call whose outcome would be unknown.
    let mut interrupted = Interrupts::new()?;
    let run = Run {
        docker: &docker,
        plan,
        state,
        jpath: journal::path(state, &spec.name),
        id: new_run_id(),
        started,
        json: args.deploy.json,
    };
    let result = match stop_conflicts(&run, &to_stop, out).await {
        Ok(()) => launch_and_check(&run, report.results.clone(), &mut interrupted, out).await,
        Err(f) => Err(f),
    };
    match result {
        Ok(code) => match journal::complete_launch(&run.jpath) {
            Ok(()) => Ok(code),
            // The server is up and checked; only the bookkeeping failed. Saying so beats
            // tearing down a working deployment.
            Err(e) => {
                out.progress(&format!(
                    "warning: {spec_name} is up, but its journal could not be updated ({e}); \
                     `vlmctl restore` would remove it as half-started: use `vlmctl teardown` to \
                     undo it instead",
                    spec_name = spec.name
                ));
                Ok(code)
            }
        },
        Err(failure) => Err(undo_run(&run, failure).await),
    }
}

/// Journals and stops the confirmed conflicts.
async fn stop_conflicts(
    run: &Run<'_>,
    to_stop: &[ConflictInfo],
    out: &mut Output,
) -> Result<(), Failure> {
    if to_stop.is_empty() {
        return Ok(());
    }
    for c in to_stop.iter().filter(|c| c.restart_policy == "always") {
        out.progress(&format!(
            "warning: {} has restart policy `always`: a daemon restart brings it back and it takes its memory back",
            c.name
        ));
    }
    let entries = to_stop
        .iter()
        .map(|c| journal::JournalEntry {
            id: c.id.clone(),
            name: c.name.clone(),
            prior_state: "running".into(),
            restart_policy: c.restart_policy.clone(),
            run_id: run.id.clone(),
            stop_timeout_s: c.stop_timeout_s,
            stop_issued_unix: None,
        })
        .collect();
    let names: Vec<&str> = to_stop.iter().map(|c| c.name.as_str()).collect();
    out.progress(&format!(
        "stopping {} (journal: {})",
        names.join(", "),
        run.jpath.display()
    ));
    journal::stop_journalled(run.docker, &run.jpath, &run.plan.spec.name, entries).await?;
    out.progress(&format!("stopped {}", names.join(", ")));
    Ok(())
}

/// Undoes what this run did (its half-started container, the containers it stopped; never what
/// an earlier run of the deployment did) and says so on the failure. When that is not possible
/// (the daemon went away), says exactly what is still stopped and how to finish.
async fn undo_run(run: &Run<'_>, mut failure: Failure) -> Failure {
    let docker = run.docker;
    match journal::restore(docker, &run.jpath, journal::Scope::Run(&run.id)).await {
        Ok(r) => {
            let mut did = Vec::new();
            if !r.removed.is_empty() {
                did.push(format!(
                    "removed the container {} this run had created",
                    r.removed.join(", ")
                ));
            }
            let back: Vec<String> = r
                .started
                .iter()
                .chain(&r.already_running)
                .cloned()
                .collect();
            if !back.is_empty() {
                did.push(format!("restored {}", back.join(", ")));
            }
            if !r.missing.is_empty() {
                did.push(format!(
                    "could not restore {} (removed by someone meanwhile)",
                    r.missing.join(", ")
                ));
            }
            if !did.is_empty() {
                failure.error = failure
                    .error
                    .context(format!("provision failed; {}", did.join("; ")));
            }
            failure
        }
        Err(e) => {
            let left = still_to_undo(&run.jpath, &run.id);
            failure.error = failure.error.context(format!(
                "provision failed, and undoing it failed too ({e}); still to undo: {}",
                if left.is_empty() {
                    "unknown (see the journal)".to_owned()
                } else {
                    left.join(", ")
                }
            ));
            if e.daemon_gone() {
                failure.code = exit_codes::ENVIRONMENT;
            }
            failure.hint = Some(format!(
                "{}; then run `vlmctl restore` (or `vlmctl teardown {}`), which finishes the job \
                 from the journal {}",
                if e.daemon_gone() {
                    "the Docker daemon went away: start it again (`systemctl start docker`)"
                } else {
                    "see the error above"
                },
                run.plan.spec.name,
                run.jpath.display()
            ));
            failure
        }
    }
}

/// What this run's journal still lists: the containers still stopped and a container still to
/// remove, for a message.
fn still_to_undo(jpath: &Path, run_id: &str) -> Vec<String> {
    let Ok(Some(j)) = journal::read(jpath) else {
        return Vec::new();
    };
    let mut left: Vec<String> = j
        .entries
        .iter()
        .filter(|e| e.run_id == run_id)
        .map(|e| format!("{} (stopped)", e.name))
        .collect();
    if let Some(l) = j.launch.filter(|l| l.run_id == run_id && !l.completed) {
        left.push(format!("{} (half-started, to remove)", l.container));
    }
    left
}

/// The weights gate failing for missing files is what `provision` fixes: fetch, then verify.
async fn fetch_if_needed(
    args: &ProvisionArgs,
    plan: &Plan,
    report: &mut GateReport,
    out: &mut Output,
) -> Result<(), Failure> {
    if report
        .results
        .iter()
        .any(|r| r.name == "weights" && r.status == GateStatus::Fail)
    {
        out.progress(&format!("fetching {} from the hub", plan.model.name));
        let hub = hub_client(&args.deploy.hub)?;
        for file in &plan.model.files {
            let bar = Arc::new(Bar::default());
            let outcome = hub
                .fetch(&plan.model, file, &plan.mount.dir, bar.clone())
                .await;
            bar.clear();
            let outcome = outcome?;
            out.progress(&format!(
                "  {}: {}",
                file.path,
                describe(&outcome, file.size)
            ));
        }
        let again = weights_gate(plan.jobs.clone(), None).await;
        if let Some(r) = report.results.iter_mut().find(|r| r.name == "weights") {
            *r = again;
        }
    }
    Ok(())
}

fn choose_conflicts(
    conflicts: &[ConflictInfo],
    stop: &[String],
    yes: bool,
    out: &mut Output,
) -> Vec<ConflictInfo> {
    for c in conflicts {
        let tail: Vec<&str> = c
            .logs
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        out.progress(&format!(
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
        ));
    }
    let interactive = std::io::stdin().is_terminal();
    let confirm = |c: &ConflictInfo| {
        if !interactive {
            return false;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "stop {} now and restore it after teardown? [y/N] ",
            c.name
        );
        let _ = err.flush();
        drop(err);
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).is_ok()
            && line.trim().eq_ignore_ascii_case("y")
    };
    let chosen: Vec<ConflictInfo> = containers::allowed_to_stop(conflicts, stop, yes, &confirm)
        .into_iter()
        .cloned()
        .collect();
    for c in conflicts
        .iter()
        .filter(|c| !chosen.iter().any(|x| x.id == c.id))
    {
        out.progress(&format!(
            "not stopping {} (not confirmed: answer the prompt, or pass --stop {})",
            c.name, c.name
        ));
    }
    chosen
}

/// What `launch_and_check` works with.
struct Run<'a> {
    docker: &'a vlmctl_lifecycle::Docker,
    plan: &'a Plan,
    state: &'a Path,
    /// The deployment's journal.
    jpath: PathBuf,
    /// This run's id (container label, journal entries).
    id: String,
    started: std::time::Instant,
    json: bool,
}

fn interrupted_by(signal: &str) -> Failure {
    Failure::new(
        anyhow::anyhow!("interrupted by {signal}"),
        None,
        exit_codes::INTERRUPTED,
    )
}

async fn launch_and_check(
    run: &Run<'_>,
    gates: Vec<GateResult>,
    interrupted: &mut Interrupts,
    out: &mut Output,
) -> Result<u8, Failure> {
    // A signal that arrived during the stops is acted on now.
    if let Some(signal) = interrupted.pending() {
        return Err(interrupted_by(signal));
    }
    let Run {
        docker, plan, json, ..
    } = *run;
    let spec = &plan.spec;
    let base = vlmctl_lifecycle::spec::http_base(&spec.server.host, spec.server.port);
    // Not raced against signals: the journal learns of the container before the create call
    // and again with its id before the start, and the launch runs to its end so that what it
    // did is known; a signal meanwhile is acted on right after.
    let mut record = |step: LaunchStep<'_>| {
        journal::record_launch(
            &run.jpath,
            &spec.name,
            journal::LaunchRecord {
                run_id: run.id.clone(),
                container: spec.name.clone(),
                id: match step {
                    LaunchStep::Creating => None,
                    LaunchStep::Created { id } => Some(id.to_owned()),
                },
                completed: false,
            },
        )
    };
    let launch = containers::launch(
        docker,
        spec,
        &plan.mount,
        plan.api_key.as_deref(),
        &run.id,
        &std::collections::HashMap::new(),
        &mut record,
    )
    .await?;
    if let Some(signal) = interrupted.pending() {
        return Err(interrupted_by(signal));
    }
    let id = match &launch {
        Launch::Unchanged { id } => {
            out.progress(&format!(
                "{} is already running this spec: nothing to do",
                spec.name
            ));
            id.clone()
        }
        Launch::Started { id, replaced } => {
            out.progress(&format!(
                "{} {}; waiting for /health",
                if *replaced { "replaced" } else { "started" },
                spec.name
            ));
            id.clone()
        }
    };
    // Waiting and checking may be cut short by a signal at any point: the container is known.
    let check = async {
        let ready = containers::wait_ready(
            docker,
            &spec.name,
            &base,
            Duration::from_secs(spec.health.timeout_s),
        )
        .await?;
        if matches!(launch, Launch::Unchanged { .. }) {
            return Ok(None);
        }
        let smoke = smoke::smoke(
            &base,
            plan.api_key.as_deref(),
            plan.mount.mmproj_file.is_some(),
        )
        .await?;
        let memory = memory_check(spec, &id).await?;
        Ok::<_, Failure>(Some((ready, smoke, memory)))
    };
    let checked = tokio::select! {
        r = check => r?,
        signal = interrupted.recv() => return Err(interrupted_by(signal)),
    };
    let Some((ready, smoke, memory)) = checked else {
        return unchanged(plan, &id, &base, json, out).await;
    };
    finish(
        run,
        Checked {
            launch: &launch,
            id: &id,
            ready,
            smoke,
            memory,
            gates,
        },
        out,
    )
    .await
}

/// What a launched, ready and checked server has to show.
struct Checked<'a> {
    launch: &'a Launch,
    id: &'a str,
    ready: Duration,
    smoke: smoke::Smoke,
    memory: Option<u64>,
    gates: Vec<GateResult>,
}

/// Writes the provision record and prints the client settings.
async fn finish(run: &Run<'_>, c: Checked<'_>, out: &mut Output) -> Result<u8, Failure> {
    let Run {
        docker,
        plan,
        state,
        started,
        json,
        ..
    } = *run;
    let spec = &plan.spec;
    let base = vlmctl_lifecycle::spec::http_base(&spec.server.host, spec.server.port);
    let Checked {
        launch,
        id,
        ready,
        smoke,
        memory,
        gates,
    } = c;
    let image = docker.inspect_image(&spec.image).await.ok();
    let record = json!({
        "version": 1,
        "deployment": spec.name,
        "spec": spec,
        "spec_sha256": spec.sha256(),
        "image": spec.image,
        "image_id": image.as_ref().and_then(|i| i.id.clone()),
        "image_digests": image.and_then(|i| i.repo_digests),
        "lock_sha256": plan.mount.lock_sha256,
        "model": plan.model.name,
        "container_id": id,
        "launch": launch,
        "gates": gates,
        "startup_s": ready.as_secs_f64(),
        "provision_s": started.elapsed().as_secs_f64(),
        "smoke": smoke,
        "server_gpu_mib": memory,
        "vlmctl": env!("CARGO_PKG_VERSION"),
    });
    let rpath = write_record(state, &spec.name, &record)?;
    if json {
        out.stdout(&serde_json::to_string_pretty(&record).unwrap_or_default());
        return Ok(exit_codes::SUCCESS);
    }
    out.stdout(&format!(
        "{} ready in {:.1} s (smoke: {:?} in {:.0} ms{}); record: {}\n\nclient settings:\nNAV_VLLM_URL={base}/v1\nNAV_VLLM_MODEL={}",
        spec.name,
        ready.as_secs_f64(),
        smoke.content,
        smoke.wall_ms,
        if smoke.vision { ", with an image" } else { "" },
        rpath.display(),
        smoke.model
    ));
    Ok(exit_codes::SUCCESS)
}

/// Writes the provision record under `<state>/records/`.
fn write_record(state: &Path, name: &str, record: &serde_json::Value) -> Result<PathBuf, Failure> {
    let rpath = state.join("records").join(format!("{name}.json"));
    if let Some(dir) = rpath.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(
        &rpath,
        serde_json::to_vec_pretty(record).unwrap_or_default(),
    )
    .map_err(|e| {
        Failure::new(
            anyhow::Error::new(e).context(format!("cannot write {}", rpath.display())),
            None,
            exit_codes::ENVIRONMENT,
        )
    })?;
    Ok(rpath)
}

/// The server process's GPU memory against `max_process_mib` (the runbook's quantization-trap
/// red flag). `None` when there is no GPU to measure.
async fn memory_check(spec: &Spec, container_id: &str) -> Result<Option<u64>, Failure> {
    if spec.gpus == Gpus::None {
        return Ok(None);
    }
    let Ok(GpuState::Gpus { processes, .. }) = gpu::query(which("nvidia-smi").as_deref()).await
    else {
        return Ok(None);
    };
    let used: u64 = processes
        .iter()
        .filter(|p| p.container_id.as_deref() == Some(container_id))
        .filter_map(|p| p.used_mib)
        .sum();
    if let Some(max) = spec.memory.max_process_mib
        && used > max
    {
        return Err(Failure::new(
            anyhow::anyhow!("{} uses {used} MiB of GPU memory, above max_process_mib = {max}", spec.name),
            Some("the quantization trap: a \"4-bit\" file that keeps encoders in FP16 is larger than it looks; check the model file".to_owned()),
            exit_codes::SERVER,
        ));
    }
    Ok(Some(used))
}

/// `vlmctl teardown`.
pub fn teardown(args: &TeardownArgs, out: &mut Output) -> Result<u8, Failure> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => load_spec(args.spec.as_deref())?.name,
    };
    let state = state_dir(&args.state);
    let _lock = lock_deployment(&args.state, &state, &name, "teardown", out)?;
    crate::runtime()?.block_on(async {
        let docker = vlmctl_lifecycle::connect().await?;
        let removed = containers::teardown(&docker, &name).await?;
        let jpath = journal::path(&state, &name);
        let r = journal::restore(&docker, &jpath, journal::Scope::All)
            .await
            .map_err(|e| restore_failure(e, &jpath))?;
        if args.json {
            let doc = json!({"container": name, "removed": removed, "restored": r});
            out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
            return Ok(exit_codes::SUCCESS);
        }
        out.stdout(&if removed {
            format!("removed {name}")
        } else {
            format!("{name}: no such container (already torn down)")
        });
        report_restored(&r, out);
        Ok(exit_codes::SUCCESS)
    })
}

/// A restore that could not finish: what the journal still lists, and what to do.
fn restore_failure(e: vlmctl_lifecycle::LifecycleError, jpath: &Path) -> Failure {
    let gone = e.daemon_gone();
    let left = journal::read(jpath)
        .ok()
        .flatten()
        .map(|j| {
            j.entries
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty());
    let mut failure = Failure::from(e);
    if let Some(left) = left {
        failure.error = failure.error.context(format!(
            "still stopped: {left} (journal {})",
            jpath.display()
        ));
    }
    if gone {
        failure.code = exit_codes::ENVIRONMENT;
        failure.hint = Some(
            "the Docker daemon went away: start it again, then run `vlmctl restore`, which \
             finishes the job from the journal"
                .to_owned(),
        );
    }
    failure
}

fn report_restored(r: &journal::Restored, out: &mut Output) {
    if !r.removed.is_empty() {
        out.stdout(&format!("removed half-started: {}", r.removed.join(", ")));
    }
    if !r.started.is_empty() {
        out.stdout(&format!("restored: {}", r.started.join(", ")));
    }
    if !r.already_running.is_empty() {
        out.stdout(&format!(
            "already running: {}",
            r.already_running.join(", ")
        ));
    }
    if !r.missing.is_empty() {
        out.stdout(&format!(
            "gone (removed by someone; cannot restore): {}",
            r.missing.join(", ")
        ));
    }
}

/// `vlmctl restore`: every journal under the state dir, each under its deployment's lock. One
/// journal that cannot be read or restored does not stop the others; the command fails at the
/// end, naming each.
pub fn restore(args: &RestoreArgs, out: &mut Output) -> Result<u8, Failure> {
    let state = state_dir(&args.state);
    let journals = journal::all(&state);
    if journals.is_empty() && args.json {
        out.stdout(&json!({"journals": []}).to_string());
        return Ok(exit_codes::SUCCESS);
    }
    if journals.is_empty() {
        out.stdout(&format!(
            "nothing to restore (no journal under {})",
            state.display()
        ));
        return Ok(exit_codes::SUCCESS);
    }
    crate::runtime()?.block_on(async {
        let docker = vlmctl_lifecycle::connect().await?;
        let mut done = Vec::new();
        let mut failed: Vec<Failure> = Vec::new();
        for j in journals {
            let deployment = journal::deployment_of(&j);
            let outcome = match lock_deployment(&args.state, &state, &deployment, "restore", out) {
                Err(f) => Err(f),
                Ok(_lock) => match journal::read(&j) {
                    Err(e) => Err(Failure::from(e)),
                    Ok(_) => journal::restore(&docker, &j, journal::Scope::All)
                        .await
                        .map_err(|e| restore_failure(e, &j)),
                },
            };
            match outcome {
                Ok(r) => {
                    if !args.json {
                        out.stdout(&format!("journal {}", j.display()));
                        report_restored(&r, out);
                    }
                    done.push(json!({"journal": j, "restored": r}));
                }
                Err(f) => {
                    let text = f.render();
                    if !args.json {
                        out.stdout(&format!(
                            "journal {}: NOT restored\n  {}",
                            j.display(),
                            text.replace('\n', "\n  ")
                        ));
                    }
                    done.push(
                        json!({"journal": j, "error": format!("{:#}", f.error), "hint": f.hint}),
                    );
                    failed.push(f);
                }
            }
        }
        if args.json {
            out.stdout(
                &serde_json::to_string_pretty(&json!({"journals": done})).unwrap_or_default(),
            );
        }
        if failed.is_empty() {
            return Ok(exit_codes::SUCCESS);
        }
        let code = failed
            .iter()
            .map(|f| f.code)
            .max()
            .unwrap_or(exit_codes::FAILURE);
        Err(Failure::new(
            anyhow::anyhow!(
                "{} of {} journal(s) could not be restored (each is named above); the others were",
                failed.len(),
                done.len()
            ),
            failed.into_iter().find_map(|f| f.hint),
            code,
        ))
    })
}

/// `vlmctl status`.
pub fn status(args: &DeployArgs, out: &mut Output) -> Result<u8, Failure> {
    // Drift is judged against the spec and lock given (or the defaults), when they load.
    let plan = plan(args.spec.as_deref(), &args.lock.lock, &args.dirs).ok();
    let state = state_dir(&args.state);
    crate::runtime()?.block_on(async {
        let docker = vlmctl_lifecycle::connect().await?;
        let managed = containers::managed(&docker).await?;
        let mut rows = Vec::new();
        let mut items = Vec::new();
        for m in &managed {
            let health = match &m.endpoint {
                Some((host, port)) if m.state == "running" => containers::probe_health(host, *port).await,
                _ => "-".to_owned(),
            };
            let drift = match plan.as_ref().filter(|p| p.spec.name == m.name) {
                None => "unknown (pass --spec)".to_owned(),
                Some(p) => {
                    let mut d = Vec::new();
                    if m.spec_sha256.as_deref() != Some(p.spec.sha256().as_str()) {
                        d.push("spec changed");
                    }
                    if m.lock_sha256.as_deref() != Some(p.mount.lock_sha256.as_str()) {
                        d.push("lock changed");
                    }
                    if d.is_empty() { "none".to_owned() } else { format!("{} (relaunch recreates it)", d.join(", ")) }
                }
            };
            rows.push([m.name.clone(), m.state.clone(), m.status.clone(), health.clone(), drift.clone()]);
            items.push(json!({"container": m, "health": health, "drift": drift}));
        }
        // Every journal is shown, an unreadable one too: it may name stopped containers.
        let journals: Vec<serde_json::Value> = journal::all(&state)
            .iter()
            .filter_map(|p| match journal::read(p) {
                Ok(Some(j)) => Some(json!({"path": p, "journal": j})),
                Ok(None) => None,
                Err(e) => Some(json!({"path": p, "error": format!("{:#}", anyhow::Error::new(e))})),
            })
            .collect();
        if args.json {
            out.stdout(&serde_json::to_string_pretty(&json!({"containers": items, "journals": journals})).unwrap_or_default());
            return Ok(exit_codes::SUCCESS);
        }
        let mut text = if rows.is_empty() {
            "no containers created by vlmctl".to_owned()
        } else {
            crate::table::render(&["NAME", "STATE", "STATUS", "HEALTH", "DRIFT"], &rows)
        };
        for j in &journals {
            let path = j["path"].as_str().unwrap_or_default();
            if let Some(err) = j["error"].as_str() {
                let _ = write!(text, "\nUNREADABLE restore journal {path}: {err} (it may name stopped containers: check `docker ps -a`, start them, then move the file aside)");
                continue;
            }
            let names: Vec<&str> = j["journal"]["entries"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
            if !names.is_empty() {
                let _ = write!(text, "\nopen restore journal {path}: stopped {} (`vlmctl teardown` or `vlmctl restore` brings them back)", names.join(", "));
            }
            let launch = &j["journal"]["launch"];
            if launch["completed"] == false {
                let _ = write!(text, "\nunfinished launch of {} in {path} (a run died before it finished: `vlmctl restore` removes it)", launch["container"].as_str().unwrap_or_default());
            }
        }
        out.stdout(&text);
        Ok(exit_codes::SUCCESS)
    })
}

/// A relaunch that found the same spec running: healthy and answering is enough; the first
/// launch's chat smoke request and record still hold.
async fn unchanged(
    plan: &Plan,
    id: &str,
    base: &str,
    json: bool,
    out: &mut Output,
) -> Result<u8, Failure> {
    let model = smoke::served_model(base, plan.api_key.as_deref()).await?;
    let name = &plan.spec.name;
    if json {
        let doc = json!({"deployment": name, "unchanged": true, "container_id": id, "url": format!("{base}/v1"), "model": model});
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        out.stdout(&format!("{name} unchanged and healthy\n\nclient settings:\nNAV_VLLM_URL={base}/v1\nNAV_VLLM_MODEL={model}"));
    }
    Ok(exit_codes::SUCCESS)
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, registered at creation (unlike
/// `tokio::signal::ctrl_c`, which registers on first poll), so that no signal after this point
/// kills the process unhandled. SIGHUP is what a dropped SSH session sends, the runbooks'
/// normal way to run this; SIGQUIT (Ctrl-\) would otherwise dump core with containers down.
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> Result<Self, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let fail = |e: std::io::Error| {
            Failure::new(
                anyhow::Error::new(e).context("cannot install signal handlers"),
                None,
                exit_codes::FAILURE,
            )
        };
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(fail)?,
            term: signal(SignalKind::terminate()).map_err(fail)?,
            hup: signal(SignalKind::hangup()).map_err(fail)?,
            quit: signal(SignalKind::quit()).map_err(fail)?,
        })
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "Ctrl-C (SIGINT)",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP (the terminal or SSH session went away)",
            _ = self.quit.recv() => "SIGQUIT",
        }
    }

    /// A signal that has already arrived, if any (does not wait).
    fn pending(&mut self) -> Option<&'static str> {
        use futures::FutureExt as _;
        self.recv().now_or_never()
    }
}

/// Pulls the spec's image when missing, with a spinner showing the daemon's progress.
async fn pull_image(
    docker: &vlmctl_lifecycle::Docker,
    spec: &Spec,
    out: &mut Output,
) -> Result<(), Failure> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let platform = (spec.platform != "host").then_some(spec.platform.as_str());
    let mut show = |step: &containers::PullStep| {
        let bytes = step
            .bytes
            .map(|(done, total)| format!(" {}/{}", human_bytes(done), human_bytes(total)))
            .unwrap_or_default();
        bar.set_message(format!(
            "pulling {}: {}{}{bytes}",
            spec.image,
            step.layer
                .as_deref()
                .map(|l| format!("{l} "))
                .unwrap_or_default(),
            step.status
        ));
    };
    let pulled = containers::ensure_image(docker, &spec.image, platform, &mut show).await;
    bar.finish_and_clear();
    if pulled? {
        out.progress(&format!("pulled {}", spec.image));
    }
    Ok(())
}
