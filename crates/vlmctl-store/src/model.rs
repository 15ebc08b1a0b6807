//! The rows the history holds, as the CLI and the service read them: runs ([`RunRow`],
//! [`RunDetail`], [`Point`], [`TargetLink`]), jobs ([`Job`]), trends ([`TrendPoint`]), and what
//! a writer hands in ([`NewRun`], [`NewJob`]). Plain serde types; no SQL here.

use serde::{Deserialize, Serialize};
use vlmctl_bench::run::Results;

/// Who recorded a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `vlmctl bench`.
    Cli,
    /// A run started from `vlmctl serve`.
    Serve,
    /// `vlmctl runs import`.
    Import,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Serve => "serve",
            Self::Import => "import",
        }
    }
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "serve" => Self::Serve,
            "import" => Self::Import,
            _ => Self::Cli,
        }
    }
}

/// A run's or job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Queued in `vlmctl serve`, not started.
    Queued,
    /// Going on (its owner process is alive).
    Running,
    /// Finished; a run has its results.
    Done,
    /// Finished with an error (`error` says which).
    Failed,
    /// Its owner went away before it finished (kill -9, crash, restart, shutdown).
    Interrupted,
}

impl State {
    /// The word stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => Self::Interrupted,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Which deployment a plan's target measured, as far as the recorder could tell (the managed
/// container listening on the target's port, and its labels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetLink {
    /// The plan's target name.
    pub target: String,
    /// Its URL, as its host sees it.
    pub url: String,
    /// The host its server runs on (a plan's targets may be on several); `None` in runs
    /// recorded before hosts were recorded per target: the run's host.
    #[serde(default)]
    pub host: Option<String>,
    /// The container's name, when one managed by vlmctl serves that URL on that host.
    pub deployment: Option<String>,
    /// Its `org.vlmctl.spec-sha256` label.
    pub spec_sha256: Option<String>,
    /// Its `org.vlmctl.lock-sha256` label (the lock entry's hash).
    pub lock_sha256: Option<String>,
    /// The lock entry's name, from the deployment's provision record.
    pub model: Option<String>,
}

/// What is known of a run when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// Who runs it.
    pub source: Source,
    /// The host it measures (`local` or a host name).
    pub host: String,
    /// The plan file, as given.
    pub plan: String,
    /// The plan as JSON (the results carry it again once done).
    pub plan_json: serde_json::Value,
    /// Per target, which deployment it is.
    pub targets: Vec<TargetLink>,
    /// `Queued` (serve's queue) or `Running`.
    pub state: State,
}

/// One config of one target of a finished run: the figures the list, filters and trends use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Target name.
    pub target: String,
    /// Config letter.
    pub config: String,
    /// What the config sends.
    pub description: String,
    /// Successful samples.
    pub ok: u64,
    /// Failed samples.
    pub errors: u64,
    /// Wall time p50, ms.
    pub p50_ms: Option<f64>,
    /// p95, ms.
    pub p95_ms: Option<f64>,
    /// p99, ms.
    pub p99_ms: Option<f64>,
    /// TTFT p50, ms.
    pub ttft_p50_ms: Option<f64>,
    /// Server tokens/s.
    pub server_tokens_per_s: Option<f64>,
    /// Schema pass rate, 0..1.
    pub schema_pass: Option<f64>,
}

/// A run as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// Id.
    pub id: i64,
    /// Seconds since the epoch when it started (an import: when the bench started).
    pub started_unix: i64,
    /// When it ended.
    pub finished_unix: Option<i64>,
    /// State.
    pub state: State,
    /// Who recorded it.
    pub source: Source,
    /// Host.
    pub host: String,
    /// Plan file.
    pub plan: String,
    /// Why it failed or was interrupted.
    pub error: Option<String>,
    /// Per target.
    pub targets: Vec<TargetLink>,
    /// Per config (finished runs).
    pub points: Vec<Point>,
}

impl RunRow {
    /// The deployments its targets measured (each once), `-` when none is known.
    #[must_use]
    pub fn deployments(&self) -> String {
        let mut names: Vec<&str> = self
            .targets
            .iter()
            .filter_map(|t| t.deployment.as_deref())
            .collect();
        names.dedup();
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// A run with everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The row.
    #[serde(flatten)]
    pub row: RunRow,
    /// The plan, as JSON.
    pub plan_json: serde_json::Value,
    /// The results document (finished runs).
    pub results: Option<Results>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Only runs that measured this deployment.
    pub deployment: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only runs with this config (letter or description).
    pub config: Option<String>,
    /// At most this many, newest first (default 200).
    pub limit: Option<u32>,
}

/// A job kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `vlmctl provision`.
    Provision,
    /// `vlmctl relaunch`.
    Relaunch,
    /// `vlmctl teardown`.
    Teardown,
    /// `vlmctl restore`.
    Restore,
}

impl JobKind {
    /// The word stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Relaunch => "relaunch",
            Self::Teardown => "teardown",
            Self::Restore => "restore",
        }
    }
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "relaunch" => Self::Relaunch,
            "teardown" => Self::Teardown,
            "restore" => Self::Restore,
            _ => Self::Provision,
        }
    }
}

/// A job as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: JobKind,
    /// Host.
    pub host: String,
    /// The deployment (container), when the job has one (`restore` may not).
    pub deployment: Option<String>,
    /// The spec's hash.
    pub spec_sha256: Option<String>,
    /// The lock entry's hash.
    pub lock_sha256: Option<String>,
    /// Started.
    pub started_unix: i64,
    /// Ended.
    pub finished_unix: Option<i64>,
    /// `running`, `done`, `failed`, `interrupted`.
    pub state: State,
    /// What it did (`done`) or why it failed.
    pub detail: Option<String>,
}

/// What a job is when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Kind.
    pub kind: JobKind,
    /// Host.
    pub host: String,
    /// Deployment.
    pub deployment: Option<String>,
    /// Spec hash.
    pub spec_sha256: Option<String>,
    /// Lock entry hash.
    pub lock_sha256: Option<String>,
}

/// One point of a trend: one config of one finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// The run.
    pub run_id: i64,
    /// When it started.
    pub unix: i64,
    /// Host.
    pub host: String,
    /// The deployment its target measured, when known.
    pub deployment: Option<String>,
    /// The figures.
    #[serde(flatten)]
    pub point: Point,
}

/// What [`crate::Store::import`] did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Imported {
    /// Stored as this run.
    New(i64),
    /// The same document (by sha256) is already there as this run.
    Already(i64),
}
