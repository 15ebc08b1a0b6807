use std::io;
use std::path::PathBuf;

/// Everything that can go wrong with weights, with the fields a message and a hint need.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The lock file could not be read.
    #[error("cannot read {}", path.display())]
    LockRead {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The lock file is malformed; `line` is 1-based.
    #[error("{}:{line}: {}{message}", path.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    LockInvalid {
        /// The lock file.
        path: PathBuf,
        /// Line of the offending value.
        line: usize,
        /// Dotted field path, e.g. `model[0].file[1].sha256` (empty for syntax errors).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A model name that the lock does not have.
    #[error("no model named {name:?} in {}", lock.display())]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The lock file.
        lock: PathBuf,
        /// Names the lock does have.
        known: Vec<String>,
    },
}

impl WeightsError {
    /// What the user should do next.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::LockRead { .. } => {
                "run from the repository root or pass --lock PATH (env VLMCTL_LOCK)".to_owned()
            }
            Self::LockInvalid { .. } => {
                "fix that line; the format is described in the README under \"weights.lock\""
                    .to_owned()
            }
            Self::UnknownModel { known, .. } => {
                if known.is_empty() {
                    "the lock has no models yet: add a [[model]] entry (README, \"weights.lock\")"
                        .to_owned()
                } else {
                    format!("the lock has: {}", known.join(", "))
                }
            }
        }
    }
}
