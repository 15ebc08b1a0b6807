//! `vlmctl provision | relaunch | gates | teardown | restore | export`: the weights and
//! lifecycle libraries joined, as the runbooks' gates and phases do it by hand.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use vlmctl_lifecycle::containers::{self, ConflictInfo, Launch};
use vlmctl_lifecycle::gates::{self, GateReport, GateResult, GateStatus};
use vlmctl_lifecycle::gpu::{self, GpuState};
use vlmctl_lifecycle::spec::{Gpus, ModelMount, Spec};
use vlmctl_lifecycle::{journal, smoke};
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
    let dir = vlmctl_weights::model_dir(&model, dirs.dir.as_deref(), &dirs.models_root());
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
        Some(var) => Some(std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
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
/// inode) are not hashed again: the relaunch fast path.
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
        ExportFormat::Compose => compose(&plan),
    };
    out.stdout(&text);
    Ok(exit_codes::SUCCESS)
}

fn compose(plan: &Plan) -> String {
    let s = &plan.spec;
    let mut y = format!(
        "# generated by `vlmctl export --format compose` from spec {}\nservices:\n  {}:\n",
        s.name, s.name
    );
    let _ = write!(
        y,
        "    image: {}\n    container_name: {}\n    restart: \"{}\"\n",
        s.image, s.name, s.restart
    );
    if s.network == "host" {
        y.push_str("    network_mode: host\n");
    } else {
        let _ = write!(
            y,
            "    ports:\n      - \"{}:{}:{}\"\n",
            s.server.host, s.server.port, s.server.port
        );
    }
    let _ = write!(
        y,
        "    volumes:\n      - \"{}:/models:ro\"\n",
        plan.mount.dir.display()
    );
    y.push_str("    cap_drop: [ALL]\n    security_opt: [\"no-new-privileges\"]\n");
    if let Some(var) = &s.server.api_key_env {
        let _ = write!(y, "    environment:\n      LLAMA_API_KEY: ${{{var}}}\n");
    }
    match &s.gpus {
        Gpus::None => {}
        g => {
            let sel = match g {
                Gpus::Count(n) => format!("count: {n}"),
                Gpus::Devices(d) => format!(
                    "device_ids: [{}]",
                    d.iter()
                        .map(|i| format!("\"{i}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => "count: all".to_owned(),
            };
            let _ = write!(
                y,
                "    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              {sel}\n              capabilities: [gpu]\n"
            );
        }
    }
    y.push_str("    labels:\n");
    for (k, v) in s.labels(&plan.mount) {
        let _ = writeln!(y, "      {k}: \"{v}\"");
    }
    y.push_str("    command:\n");
    for a in s.server_args(&plan.mount) {
        let _ = writeln!(y, "      - \"{a}\"");
    }
    y
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
    crate::runtime()?.block_on(provision_async(args, relaunch, &plan, &state, out))
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
    let jpath = journal::path(state, &spec.name);
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
    // Listen for Ctrl-C and SIGTERM before anything is stopped: a signal in the window between
    // the stop and the launch must restore too, not kill the process with containers down.
    let mut interrupted = Interrupts::new()?;
    if !to_stop.is_empty() {
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
            })
            .collect();
        journal::stop_journalled(&docker, &jpath, &spec.name, entries).await?;
        out.progress(&format!(
            "stopped {} (journal: {})",
            to_stop
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            jpath.display()
        ));
    }

    // Everything after a stop restores on failure, on Ctrl-C and on SIGTERM.
    let run = Run {
        docker: &docker,
        plan,
        state,
        started,
        json: args.deploy.json,
        launched: std::cell::Cell::new(false),
    };
    let result = tokio::select! {
        r = launch_and_check(&run, report.results.clone(), out) => r,
        signal = interrupted.recv() => Err(Failure::new(anyhow::anyhow!("interrupted by {signal}"), None, exit_codes::INTERRUPTED)),
    };
    match result {
        Ok(code) => Ok(code),
        Err(mut failure) => {
            // Nothing half-done: a container this run started goes again (its log tail is in
            // the error already); with a restart policy it would otherwise keep restarting.
            if run.launched.get() {
                failure = remove_half_started(&docker, &spec.name, failure).await;
            }
            Err(restore_after_failure(&docker, &jpath, failure).await)
        }
    }
}

/// Removes the container a failed run had started (its log tail is in the error already): with
/// a restart policy it would otherwise keep restarting.
async fn remove_half_started(
    docker: &vlmctl_lifecycle::Docker,
    name: &str,
    mut failure: Failure,
) -> Failure {
    match containers::teardown(docker, name).await {
        Ok(_) => {
            failure.error = failure
                .error
                .context(format!("removed the container {name} this run had started"));
        }
        Err(e) => {
            failure.hint = Some(format!(
                "could not remove {name} ({e}): `vlmctl teardown {name}`"
            ));
        }
    }
    failure
}

/// Restores what the journal says was stopped, and says so on the failure.
async fn restore_after_failure(
    docker: &vlmctl_lifecycle::Docker,
    jpath: &Path,
    mut failure: Failure,
) -> Failure {
    if jpath.exists() {
        match journal::restore(docker, jpath).await {
            Ok(r) => {
                failure.error = failure.error.context(format!(
                    "provision failed; restored {}",
                    if r.started.is_empty() {
                        "nothing (nothing was stopped)".to_owned()
                    } else {
                        r.started.join(", ")
                    }
                ));
            }
            Err(e) => {
                failure.hint = Some(format!("restore failed too ({e}): run `vlmctl restore`"));
            }
        }
    }
    failure
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
        eprint!("stop {} now and restore it after teardown? [y/N] ", c.name);
        let _ = std::io::stderr().flush();
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
    started: std::time::Instant,
    json: bool,
    /// Set once this run has started a container of its own (to remove it if the run fails).
    launched: std::cell::Cell<bool>,
}

async fn launch_and_check(
    run: &Run<'_>,
    gates: Vec<GateResult>,
    out: &mut Output,
) -> Result<u8, Failure> {
    let Run {
        docker,
        plan,
        state,
        started,
        json,
        ..
    } = *run;
    let spec = &plan.spec;
    let base = format!("http://{}:{}", spec.server.host, spec.server.port);
    let launch = containers::launch(
        docker,
        spec,
        &plan.mount,
        plan.api_key.as_deref(),
        &HashMap::new(),
    )
    .await?;
    let id = match &launch {
        Launch::Unchanged { id } => {
            out.progress(&format!(
                "{} is already running this spec: nothing to do",
                spec.name
            ));
            id.clone()
        }
        Launch::Started { id, replaced } => {
            run.launched.set(true);
            out.progress(&format!(
                "{} {}; waiting for /health",
                if *replaced { "replaced" } else { "started" },
                spec.name
            ));
            id.clone()
        }
    };
    let ready = containers::wait_ready(
        docker,
        &spec.name,
        &base,
        Duration::from_secs(spec.health.timeout_s),
    )
    .await?;
    if matches!(launch, Launch::Unchanged { .. }) {
        return unchanged(plan, &id, &base, json, out).await;
    }
    let smoke = smoke::smoke(
        &base,
        plan.api_key.as_deref(),
        plan.mount.mmproj_file.is_some(),
    )
    .await?;
    let memory = memory_check(spec, &id).await?;
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
    crate::runtime()?.block_on(async {
        let docker = vlmctl_lifecycle::connect().await?;
        let removed = containers::teardown(&docker, &name).await?;
        let r = journal::restore(&docker, &journal::path(&state, &name)).await?;
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

fn report_restored(r: &journal::Restored, out: &mut Output) {
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

/// `vlmctl restore`.
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
        for j in journals {
            let r = journal::restore(&docker, &j).await?;
            if !args.json {
                out.stdout(&format!("journal {}", j.display()));
                report_restored(&r, out);
            }
            done.push(json!({"journal": j, "restored": r}));
        }
        if args.json {
            out.stdout(
                &serde_json::to_string_pretty(&json!({"journals": done})).unwrap_or_default(),
            );
        }
        Ok(exit_codes::SUCCESS)
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
        let journals: Vec<serde_json::Value> = journal::all(&state)
            .iter()
            .filter_map(|p| journal::read(p).ok().flatten().map(|j| json!({"path": p, "journal": j})))
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
            let names: Vec<&str> = j["journal"]["entries"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
            let _ = write!(text, "\nopen restore journal {}: stopped {} (`vlmctl teardown` or `vlmctl restore` brings them back)", j["path"].as_str().unwrap_or_default(), names.join(", "));
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

/// SIGINT and SIGTERM, registered at creation (unlike `tokio::signal::ctrl_c`, which registers
/// on first poll), so that no signal after this point kills the process unhandled.
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
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
        })
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "Ctrl-C (SIGINT)",
            _ = self.term.recv() => "SIGTERM",
        }
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
