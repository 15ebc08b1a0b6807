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
    /// A rate sweep was asked of a plan without an `[slo]` to decide its steps.
    #[error("{}: a rate sweep needs an [slo] table to decide which rates the server sustains", path.display())]
    SweepNeedsSlo {
        /// The plan.
        path: PathBuf,
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
            Self::Read { .. } => "check the path (prompt and image paths are relative to the plan file)".to_owned(),
            Self::PlanInvalid { .. } => "fix that line; examples/nav-bench.toml documents every field".to_owned(),
            Self::ImageMismatch { .. } => "use the same camera frame as the baseline (apples-to-apples), or update image_sha256 in the plan on purpose".to_owned(),
            Self::SweepNeedsSlo { .. } => "add a bound to the plan, e.g. `[slo]` with `p95_ms = 500`; the sweep reports the highest rate that meets it".to_owned(),
            Self::BadResults { .. } => "pass results JSON files written by `vlmctl bench`".to_owned(),
        }
    }
}
