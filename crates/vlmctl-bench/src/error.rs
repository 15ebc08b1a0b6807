use std::path::PathBuf;

/// Everything that can go wrong before or around a bench run (request failures are data, not
/// errors: they are counted in the results).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The plan is malformed.
    #[error("{}:{line}: {message}", path.display())]
    PlanInvalid {
        /// The plan.
        path: PathBuf,
        /// Line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file the plan names (a prompt, the camera image) cannot be read.
    #[error("{}: {field}: cannot read {}", plan.display(), path.display())]
    PlanFile {
        /// The plan.
        plan: PathBuf,
        /// The plan's field that names the file (`prompts.nav`, `image`).
        field: &'static str,
        /// The file, resolved against the plan's folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The image is not the pinned one.
    #[error("{} is not the pinned camera frame: plan pins sha256 {expected}, file has {actual}", path.display())]
    ImageMismatch {
        /// The image.
        path: PathBuf,
        /// From the plan.
        expected: String,
        /// Of the file.
        actual: String,
    },
    /// A target did not answer the check before the run ([`crate::preflight`]).
    #[error("target {target} does not answer at {url}: {why}")]
    Unreachable {
        /// The target's name in the plan.
        target: String,
        /// The URL that was asked.
        url: String,
        /// Refused, unresolvable, or silent for [`crate::preflight::TIMEOUT`].
        why: String,
    },
    /// A rate sweep was asked of a plan without an `[slo]` to decide its steps.
    #[error("{}: a rate sweep needs an [slo] table to decide which rates the server sustains", path.display())]
    SweepNeedsSlo {
        /// The plan.
        path: PathBuf,
    },
    /// A target takes its API key from an environment variable that is not set.
    #[error("target {target} takes its API key from ${var}, which is not set")]
    ApiKeyMissing {
        /// The target's name in the plan.
        target: String,
        /// The variable (`api_key_env`).
        var: String,
    },
    /// A results file holds a value no request could have had (a negative or endless
    /// latency, a figure that is not a number): [`crate::run::Results::validate`].
    #[error("{}: {field} is {value:e}, {why}: not a figure vlmctl bench measures", path.display())]
    ImplausibleResults {
        /// The file.
        path: PathBuf,
        /// The field, as a path into the JSON (`targets[0].configs[1].samples[3].wall_ms`).
        field: String,
        /// Its value.
        value: f64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A results file is unreadable or of another format.
    #[error("{} is not a vlmctl bench results file ({why})", path.display())]
    BadResults {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl BenchError {
    /// What to do next.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::Read { .. } => "check the path".to_owned(),
            Self::PlanFile { field, .. } => format!("fix `{field}` in the plan (paths are relative to the plan file's folder), or create the file; examples/nav-bench.toml documents every field"),
            Self::PlanInvalid { .. } => "fix that line; examples/nav-bench.toml documents every field".to_owned(),
            Self::ImageMismatch { .. } => "use the same camera frame as the baseline (apples-to-apples), or update image_sha256 in the plan on purpose".to_owned(),
            Self::Unreachable { .. } => "check that the server is running and the plan's target url (host, port, http/https) is right: `curl URL/health`; `vlmctl status` shows what vlmctl started".to_owned(),
            Self::SweepNeedsSlo { .. } => "add a bound to the plan, e.g. `[slo]` with `p95_ms = 500`; the sweep reports the highest rate that meets it".to_owned(),
            Self::BadResults { .. } => "pass results JSON files written by `vlmctl bench`".to_owned(),
            Self::ImplausibleResults { field, .. } => format!("this file was not written by `vlmctl bench` as it stands (or was edited): fix or remove `{field}` (latencies are milliseconds, 0 to 1e12; rates per second, 0 to 1e9; shares 0 to 1; percentages 0 to 100), or measure again with `vlmctl bench`"),
            Self::ApiKeyMissing { var, .. } => format!("export {var}=... in the environment of the process that runs the bench"),
        }
    }
}
