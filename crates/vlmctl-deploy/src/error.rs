//! [`DeployError`]: every way a job can fail, with what to do next ([`DeployError::hint`]).

use std::path::PathBuf;

use vlmctl_lifecycle::LifecycleError;
use vlmctl_lifecycle::journal::{CheckOutcome, Restored};
use vlmctl_weights::WeightsError;

/// Everything a job can fail with. Errors of the capability crates pass through whole, so the
/// front-end maps each to its exit code in one place.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// From the weights crate (lock, fetch, verify).
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// From the lifecycle crate (Docker, spec, journal, lock).
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// From the bench crate (a plan's target that cannot be used as written).
    #[error(transparent)]
    Bench(#[from] vlmctl_bench::BenchError),
    /// A bench plan's target is on a host that cannot be reached (`ssh`, or its Docker engine).
    #[error("{}:{line}: target {target:?}: cannot reach host {host}", plan.display())]
    TargetHost {
        /// The plan.
        plan: PathBuf,
        /// The line of the target's `host` (of the target, for the default host).
        line: usize,
        /// The target's name.
        target: String,
        /// The host, as named.
        host: String,
        /// Why.
        #[source]
        source: Box<LifecycleError>,
    },
    /// A bench plan's target names a deployment that cannot be measured on its host.
    #[error("{0}")]
    TargetDeployment(Box<crate::targets::Unmeasurable>),
    /// The spec names an API key variable that is not set.
    #[error("the spec takes its API key from ${var}, which is not set")]
    ApiKeyMissing {
        /// The variable.
        var: String,
    },
    /// The API key is too short to be one.
    #[error(
        "the API key in ${var} has {len} characters; at least {} are needed",
        crate::plan::MIN_API_KEY_LEN
    )]
    ApiKeyTooShort {
        /// The variable.
        var: String,
        /// Its length.
        len: usize,
    },
    /// How clients reach the server: its API key file, or the interface it binds.
    #[error(transparent)]
    Client(#[from] crate::client_error::ClientError),
    /// A name given for a deployment is not one.
    #[error("{name:?} is not a deployment name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, as a container name)")]
    NotADeploymentName {
        /// As given.
        name: String,
    },
    /// The models directory cannot be made absolute.
    #[error("cannot resolve the models directory {}", dir.display())]
    ModelsDir {
        /// As given.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A read-only gate failed; nothing was changed.
    #[error("gate(s) failed: {}; nothing was changed", names.join(", "))]
    GateFailed {
        /// The failed gates.
        names: Vec<String>,
        /// The first failed gate's hint.
        hint: Option<String>,
    },
    /// The spec's `[model]` is not pinned in the lock, and this job does not pin.
    #[error("not pinned: {need}")]
    NotPinned {
        /// What pinning it means.
        need: Box<crate::pin::PinNeed>,
    },
    /// The lock would change, but `--locked` forbids it.
    #[error("the lock would change, and --locked (VLMCTL_LOCKED) forbids it: would pin {need}")]
    LockedChange {
        /// The change refused.
        need: Box<crate::pin::PinNeed>,
    },
    /// A GPU server exited while loading, and its log says CUDA failed.
    #[error("{source}")]
    CudaFailedAtLoad {
        /// The exit, with its log tail.
        source: Box<LifecycleError>,
        /// What the log's CUDA failure means (e.g. no kernels for the GPU).
        hint: String,
    },
    /// The server answered the image request but did not count the image.
    #[error(
        "{url} ignored the image: the smoke request counted {with} prompt tokens with the camera \
         frame and {without} without{}",
        if logs.is_empty() { String::new() } else { format!("; its log ends:\n{logs}") }
    )]
    ImageIgnored {
        /// Server.
        url: String,
        /// Prompt tokens with the image.
        with: u64,
        /// Prompt tokens without it.
        without: u64,
        /// The server's last log lines.
        logs: String,
    },
    /// The smoke request failed.
    #[error("smoke request to {url} failed: {why}")]
    SmokeFailed {
        /// Server.
        url: String,
        /// What happened.
        why: String,
    },
    /// Empty `content` with non-empty `reasoning_content`.
    #[error("thinking mode leaked on {url}: the answer is all reasoning_content and no content")]
    ThinkingLeaked {
        /// Server.
        url: String,
    },
    /// The server process uses more GPU memory than the spec allows.
    #[error("{container} uses {used_mib} MiB of GPU memory, above max_process_mib = {max_mib}")]
    MemoryCeiling {
        /// Deployment container.
        container: String,
        /// Measured.
        used_mib: u64,
        /// Allowed.
        max_mib: u64,
    },
    /// The spec sets a GPU memory ceiling (`max_process_mib`) and the server's GPU memory could
    /// not be measured: the ceiling is an abort gate, and one that cannot be checked does not
    /// pass.
    #[error(
        "{container}'s GPU memory could not be measured on its host ({why}), so max_process_mib = \
         {max_mib} cannot be checked"
    )]
    MemoryUnmeasured {
        /// Deployment container.
        container: String,
        /// The ceiling.
        max_mib: u64,
        /// Why there is no figure.
        why: String,
    },
    /// The model does not (provably) run on the GPU the spec asks for.
    #[error("{0}")]
    NotOnGpu(Box<crate::offload::NotOnGpu>),
    /// The provision record could not be written.
    #[error("cannot write {}", path.display())]
    Record {
        /// The record.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bench run's results could not be written to its folder.
    #[error("cannot write results to {}", dir.display())]
    ResultsNotWritten {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A lock (or the entries named) has no file to verify or push.
    #[error("{} locks no files", lock.display())]
    LockHasNoFiles {
        /// The lock.
        lock: PathBuf,
    },
    /// `--locked` (or `VLMCTL_LOCKED`), and the command would change the lock.
    #[error("{what}, and --locked (VLMCTL_LOCKED) forbids changing {}", lock.display())]
    LockedRefusal {
        /// The lock.
        lock: PathBuf,
        /// What would change.
        what: String,
    },
    /// `weights push` to this machine.
    #[error("weights push needs another host: this one is where the files are")]
    PushToLocal,
    /// `weights push --to` a folder Docker would not read as a host folder.
    #[error("--to {}: the host's folder must be an absolute path without ':'", to.display())]
    PushFolder {
        /// The folder given.
        to: PathBuf,
    },
    /// The files here do not verify: nothing was pushed.
    #[error("the files here do not verify: nothing was pushed")]
    PushUnverified {
        /// Every file's report (the failed among them).
        reports: Vec<vlmctl_weights::FileReport>,
    },
    /// A push was cancelled (a signal, in the CLI).
    #[error("weights push stopped by {why}")]
    PushInterrupted {
        /// What asked for it.
        why: String,
    },
    /// The job was cancelled (a signal, in the CLI).
    #[error("interrupted by {why}")]
    Interrupted {
        /// What asked for it.
        why: String,
    },
    /// The tune file is malformed.
    #[error("{}:{line}: {}{message}", path.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    TuneFileInvalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The offending field (`variant[1].extra_args[0]`), empty when the syntax is wrong.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The tune file cannot be read.
    #[error("cannot read the tune file {}", path.display())]
    TuneFileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tune journal cannot be written (or removed).
    #[error("cannot write the tune journal {}", path.display())]
    TuneJournal {
        /// The journal.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tune journal is there and cannot be read: damaged (not the JSON vlmctl writes), or
    /// unreadable.
    #[error(
        "cannot read the tune journal {}{}",
        path.display(),
        if *.damaged { ": it is damaged" } else { "" }
    )]
    TuneJournalRead {
        /// The journal.
        path: PathBuf,
        /// The deployment it is for (its file name).
        deployment: String,
        /// Whether it was read and is not a tune journal (rather than unreadable).
        damaged: bool,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A container a tune parked aside was named as a deployment to act on.
    #[error(
        "{name} is not a deployment: it is {deployment}'s own container, set aside by a tune of \
         {deployment} while the variants run under that name"
    )]
    ParkedByTune {
        /// The name given.
        name: String,
        /// The deployment under tune.
        deployment: String,
    },
    /// A restore (of a journal, or in a teardown) stopped part-way.
    #[error("{}", restore_incomplete(.still_stopped, .journal))]
    RestoreIncomplete {
        /// Why.
        #[source]
        source: Box<LifecycleError>,
        /// What the journal still lists as stopped.
        still_stopped: Vec<String>,
        /// The journal.
        journal: PathBuf,
    },
    /// The spec names its model by name only (no `[model]` table), and the lock has no entry
    /// of that name: the usual cause is a forgotten `--lock`.
    #[error(
        "{} names its model {model:?} by name only (no [model] table), and {} has no entry for it",
        spec.display(),
        lock.display()
    )]
    ModelNotInLock {
        /// The model's name.
        model: String,
        /// The spec.
        spec: PathBuf,
        /// The lock read.
        lock: PathBuf,
        /// Lock files nearby that pin it.
        candidates: Vec<PathBuf>,
    },
    /// A bench plan was given where a deployment spec goes.
    #[error(
        "{} looks like a bench plan (it has [[target]]), not a deployment spec",
        path.display()
    )]
    BenchPlanAsSpec {
        /// The file.
        path: PathBuf,
    },
    /// `teardown` without a name or `--spec`: the embedded default's deployment has no
    /// container, while other vlmctl deployments are there.
    #[error(
        "no NAME or --spec given, and the default deployment {name} (docker/panda-llamacpp.toml) has no container; the vlmctl deployments here are: {}",
        others.join(", ")
    )]
    DefaultNotDeployed {
        /// The default's name.
        name: String,
        /// The others, `name (state)`.
        others: Vec<String>,
        /// Their bare names, for the hint.
        names: Vec<String>,
    },
    /// `teardown` of a container vlmctl did not create.
    #[error("{container} was not created by vlmctl: teardown removes only vlmctl's own containers")]
    NotOurs {
        /// The container.
        container: String,
    },
    /// The model files under the deployment's running server failed verification and could not
    /// be put right: the server still serves what it mapped when it started.
    #[error(
        "{deployment} is running on model files that no longer verify, and keeps serving them: {source}"
    )]
    WeightsBadUnderServer {
        /// The deployment.
        deployment: String,
        /// Why they could not be put right.
        #[source]
        source: Box<DeployError>,
    },
    /// The job failed after changing something, and what it did was undone.
    #[error("the run failed; {}{}", undone_summary(.undone), undone_note(.undone))]
    Undone {
        /// Why it failed.
        #[source]
        cause: Box<DeployError>,
        /// What the undo did.
        undone: Box<Restored>,
    },
    /// A conflict the spec lists was not confirmed at the prompt (answered no, or no terminal
    /// to ask at): the provision is cancelled before anything was stopped or started.
    #[error(
        "cancelled: stopping {name} was not confirmed (answered no, or no terminal to ask at); \
         nothing was changed"
    )]
    Declined {
        /// The conflict.
        name: String,
    },
    /// Containers were started again, but their check did not pass: not proven alive.
    #[error("{done}, but not proven alive: {}", failed_list(failed))]
    ConflictCheckFailed {
        /// The checks that failed.
        failed: Vec<vlmctl_lifecycle::journal::CheckOutcome>,
        /// What the command did otherwise.
        done: String,
        /// The journal that keeps them.
        journal: PathBuf,
    },
    /// The job failed, and undoing what it did failed too: some of it is still to undo.
    #[error("the run failed, and undoing it failed too ({undo_error}); still to undo: {}", still_to_undo(.left))]
    UndoFailed {
        /// Why the job failed.
        #[source]
        cause: Box<DeployError>,
        /// Why the undo failed.
        undo_error: Box<LifecycleError>,
        /// What the journal still lists for this run.
        left: Vec<String>,
        /// The deployment.
        deployment: String,
        /// Its journal.
        journal: PathBuf,
    },
}

pub(crate) fn undone_summary(r: &Restored) -> String {
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
    if !r.put_back.is_empty() {
        did.push(format!("put the previous {} back", r.put_back.join(", ")));
    }
    if !r.missing.is_empty() {
        did.push(format!(
            "could not restore {} (removed by someone meanwhile)",
            r.missing.join(", ")
        ));
    }
    if did.is_empty() {
        "nothing to undo".to_owned()
    } else {
        did.join("; ")
    }
}

fn restore_incomplete(still_stopped: &[String], journal: &std::path::Path) -> String {
    if still_stopped.is_empty() {
        format!("the restore did not finish (journal {})", journal.display())
    } else {
        format!(
            "still stopped: {} (journal {})",
            still_stopped.join(", "),
            journal.display()
        )
    }
}

fn still_to_undo(left: &[String]) -> String {
    if left.is_empty() {
        "unknown (see the journal)".to_owned()
    } else {
        left.join(", ")
    }
}

/// What to do about [`DeployError::MemoryUnmeasured`].
const UNMEASURED_HINT: &str = "`nvidia-smi --query-compute-apps=pid,used_memory --format=csv` \
    on the host must list the server's process (vlmctl maps it to the container by \
    /proc/PID/cgroup; on another host it runs nvidia-smi in a container there, which the NVIDIA \
    container toolkit gives the driver's nvidia-smi); to deploy without the ceiling, remove \
    max_process_mib from the spec's [memory]";

impl DeployError {
    /// `error: cause: cause (hint: ...)` on one line: what a failed run or job is recorded with
    /// and what the service shows of it.
    #[must_use]
    pub fn line_with_hint(&self) -> String {
        let hint = self
            .hint()
            .map(|h| format!(" (hint: {h})"))
            .unwrap_or_default();
        format!("{}{hint}", vlmctl_base::chain::one_line(self))
    }

    /// The hints of the weights jobs' own errors.
    fn weights_hint(&self) -> Option<String> {
        let hint = match self {
            Self::LockHasNoFiles { .. } => {
                "add a [[model]] entry with its [[model.file]] tables (docs/weights.md, \"weights.lock\")"
            }
            Self::LockedRefusal { .. } => {
                "run without --locked (and unset VLMCTL_LOCKED) to change the lock"
            }
            Self::PushToLocal => "name it: --host beast, or --host ssh://user@host[:port]",
            Self::PushFolder { .. } => "--to /var/lib/models/gemma, say",
            Self::PushUnverified { .. } => {
                "`vlmctl weights fetch` puts the locked files here first"
            }
            Self::PushInterrupted { .. } => {
                "push again: the whole pieces already on the host are kept"
            }
            _ => return None,
        };
        Some(hint.to_owned())
    }

    /// What the user should do next.
    #[must_use]
    #[expect(clippy::too_many_lines, reason = "one arm per error: a list")]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Weights(e) => Some(e.hint()),
            Self::Lifecycle(e) => Some(e.hint()),
            Self::Client(e) => Some(e.hint()),
            Self::Bench(e) => Some(e.hint()),
            Self::TargetHost { source, .. } => Some(source.hint()),
            Self::TargetDeployment(u) => Some(u.problem.hint(&u.host)),
            Self::ApiKeyMissing { var } => Some(format!(
                "export {var}=... (the key is passed to the container as LLAMA_API_KEY and never printed)"
            )),
            Self::ModelsDir { .. } => Some("pass --dir with an absolute path".to_owned()),
            Self::ApiKeyTooShort { var, .. } => Some(format!(
                "put a long random key in ${var}, e.g. `export {var}=$(openssl rand -hex 24)`"
            )),
            Self::NotADeploymentName { .. } => Some(
                "give the deployment's name as its spec's `name` says, or pass --spec".to_owned(),
            ),
            Self::GateFailed { hint, .. } => hint.clone(),
            Self::CudaFailedAtLoad { hint, .. } => Some(hint.clone()),
            Self::ImageIgnored { .. } => Some(
                "the projector did not take part: the server's log should say \"loaded multimodal \
                 model\" (llama-server --mmproj); check that the lock's mmproj file is the \
                 projector made for this model"
                    .to_owned(),
            ),
            Self::NotPinned { need } => Some(format!(
                "`vlmctl provision` (or `vlmctl weights fetch --spec FILE`) pins it on first use \
                 and writes {}; commit that file",
                need.lock.display()
            )),
            Self::LockedChange { need } => Some(format!(
                "run without --locked (and unset VLMCTL_LOCKED) to pin it, then commit {}; or \
                 change the spec's [model] back to what the lock has",
                need.lock.display()
            )),
            Self::SmokeFailed { .. } => Some(
                "the server is up but does not answer chat requests: `docker logs` shows why"
                    .to_owned(),
            ),
            Self::ThinkingLeaked { .. } => Some(
                "start llama-server with --jinja (spec: server.jinja = true) so \
                 chat_template_kwargs {\"enable_thinking\": false} takes effect"
                    .to_owned(),
            ),
            Self::MemoryCeiling { .. } => Some(
                "the quantization trap: a \"4-bit\" file that keeps encoders in FP16 is larger \
                 than it looks; check the model file"
                    .to_owned(),
            ),
            Self::MemoryUnmeasured { .. } => Some(UNMEASURED_HINT.into()),
            Self::NotOnGpu(e) => Some(e.hint()),
            Self::Record { .. } => Some("check that the state directory is writable".to_owned()),
            Self::TuneFileInvalid { .. } => Some(
                "see the commented template examples/tune.toml: [[variant]] with a name and \
                 extra_args or ctx_size, threads, n_gpu_layers"
                    .to_owned(),
            ),
            Self::TuneFileRead { .. } => Some("pass --variants with a readable file".to_owned()),
            Self::TuneJournal { .. } => Some(
                "check that the state directory is writable; `vlmctl restore` puts a tuned \
                 deployment back from its journal"
                    .to_owned(),
            ),
            Self::TuneJournalRead { .. } | Self::ParkedByTune { .. } => self.tune_hint(),
            Self::ModelNotInLock { .. }
            | Self::BenchPlanAsSpec { .. }
            | Self::DefaultNotDeployed { .. }
            | Self::NotOurs { .. }
            | Self::WeightsBadUnderServer { .. } => self.mistake_hint(),
            Self::Interrupted { .. } => None,
            Self::ResultsNotWritten { dir, .. } => Some(results_hint(dir)),
            Self::LockHasNoFiles { .. }
            | Self::LockedRefusal { .. }
            | Self::PushToLocal
            | Self::PushFolder { .. }
            | Self::PushUnverified { .. }
            | Self::PushInterrupted { .. } => self.weights_hint(),
            Self::RestoreIncomplete { source, .. } => Some(if source.daemon_gone() {
                "the Docker daemon went away: start it again, then run `vlmctl restore`, which \
                 finishes the job from the journal"
                    .to_owned()
            } else {
                source.hint()
            }),
            Self::Undone { .. } | Self::Declined { .. } | Self::ConflictCheckFailed { .. } => {
                self.conflict_hint()
            }
            Self::UndoFailed {
                undo_error,
                deployment,
                journal,
                ..
            } => Some(format!(
                "{}; then run `vlmctl restore` (or `vlmctl teardown {deployment}`), which \
                 finishes the job from the journal {}",
                if undo_error.daemon_gone() {
                    "the Docker daemon went away: start it again (`systemctl start docker`)"
                } else {
                    "see the error above"
                },
                journal.display()
            )),
        }
    }

    /// The hints of the tune's own errors.
    fn tune_hint(&self) -> Option<String> {
        match self {
            Self::TuneJournalRead {
                path,
                deployment,
                damaged,
                ..
            } => Some(format!(
                "{}; the original container may still be parked as {}: `docker ps -a` shows it. \
                 Once {deployment} is as it should be (`docker rename` it back and start it, or \
                 `vlmctl provision` it afresh), remove {} and run `vlmctl restore` for the rest",
                if *damaged {
                    "look at the file: it names the original container's id (`id`)"
                } else {
                    "check the file's permissions"
                },
                crate::tune::parked_name(deployment),
                path.display()
            )),
            Self::ParkedByTune { deployment, .. } => Some(format!(
                "leave it to the tune, which puts it back under the name {deployment} when it \
                 ends; if the tune died, `vlmctl restore` puts it back; then act on \
                 {deployment} itself (`vlmctl teardown {deployment}`)"
            )),
            _ => None,
        }
    }

    /// The hints of the errors that name a user's likely mistake (or what is left running).
    fn mistake_hint(&self) -> Option<String> {
        match self {
            Self::ModelNotInLock {
                model, candidates, ..
            } => Some(if candidates.is_empty() {
                format!(
                    "pass --lock FILE that pins {model:?} (VLMCTL_LOCK), or pin it into this lock with `vlmctl weights lock ORG/REPO FILE... --name {model}`"
                )
            } else {
                format!(
                    "pass --lock FILE that pins it; {} here: {}",
                    if candidates.len() == 1 {
                        "this lock pins it"
                    } else {
                        "these locks pin it"
                    },
                    candidates
                        .iter()
                        .map(|c| format!("--lock {}", c.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
            Self::BenchPlanAsSpec { path } => Some(format!(
                "run it with `vlmctl bench --plan {}`; --spec takes a deployment spec such as docker/cpu-test.toml (name, image, model, [server])",
                path.display()
            )),
            Self::DefaultNotDeployed { names, .. } => Some(format!(
                "name the one to tear down: {}; or pass --spec FILE",
                names
                    .iter()
                    .map(|n| format!("`vlmctl teardown {n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Self::NotOurs { container } => Some(format!(
                "vlmctl never removes a container it did not create (it has no org.vlmctl.managed label); if it is yours to remove, `docker rm -f {container}`; to tear down a vlmctl deployment, give its name (`vlmctl status` lists them)"
            )),
            Self::WeightsBadUnderServer { deployment, source } => Some(format!(
                "{}; then `vlmctl relaunch` replaces {deployment} so that it serves the verified \
                 files (`vlmctl teardown {deployment}` stops it serving them now)",
                source
                    .hint()
                    .unwrap_or_else(|| "put the locked files in place".to_owned())
            )),
            _ => None,
        }
    }

    /// The error that decided the outcome: through [`Self::Undone`] to its cause.
    #[must_use]
    pub fn root(&self) -> &DeployError {
        match self {
            Self::Undone { cause, .. } => cause.root(),
            other => other,
        }
    }
}

/// What to do when a bench run's results folder cannot be written.
fn results_hint(dir: &std::path::Path) -> String {
    format!(
        "check that {} can be created and written, or pass --out with another folder",
        dir.display()
    )
}

/// `name (what was checked): why; ...`, for messages.
#[must_use]
pub fn failed_list(failed: &[CheckOutcome]) -> String {
    failed
        .iter()
        .map(|c| format!("{}: {}", c.name, c.why.as_deref().unwrap_or("failed")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What an undo adds to its error when a restored container's check failed.
#[must_use]
pub fn undone_note(r: &Restored) -> String {
    let failed: Vec<CheckOutcome> = r.failed_checks().cloned().collect();
    if failed.is_empty() {
        String::new()
    } else {
        format!("; NOT proven alive after restore: {}", failed_list(&failed))
    }
}
