//! `weights adopt`: files copied by hand (a USB stick, another machine) taken into the models
//! folder once they prove to be the locked bytes.

use std::path::{Path, PathBuf};

use serde::Serialize;
use vlmctl_weights::{FetchOutcome, Role, WeightsLock};

use crate::events::{Event, Sink};
use crate::{DeployError, Dirs};

/// One file adopted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adopted {
    /// The lock entry it belongs to.
    pub model: String,
    /// Its role in the entry.
    pub role: Role,
    /// The file given.
    pub source: PathBuf,
    /// Where it is now.
    pub location: PathBuf,
    /// Its locked size.
    pub size: u64,
    /// What was done.
    pub outcome: FetchOutcome,
}

/// Adopts each of `paths` as the locked file it matches (by name; in the entry `name` when
/// given, checked first), verifying it on the way ([`Event::Adopting`] before each).
pub fn adopt(
    lock: &Path,
    name: Option<&str>,
    paths: &[PathBuf],
    dirs: &Dirs,
    sink: &mut dyn Sink,
) -> Result<Vec<Adopted>, DeployError> {
    let data = WeightsLock::load(lock)?;
    if let Some(n) = name {
        vlmctl_weights::select_models(&data, lock, &[n.to_owned()])?;
    }
    let mut done = Vec::new();
    for src in paths {
        let (model, file) = vlmctl_weights::match_adoptee(&data, name, src)?;
        let dir = vlmctl_weights::model_dir(model, dirs.dir.as_deref(), &dirs.models_root);
        sink.event(Event::Adopting {
            path: src.clone(),
            bytes: file.size,
        });
        let outcome = vlmctl_weights::adopt(model, file, src, &dir)?;
        done.push(Adopted {
            model: model.name.clone(),
            role: file.role,
            source: src.clone(),
            location: dir.join(&file.path),
            size: file.size,
            outcome,
        });
    }
    Ok(done)
}
