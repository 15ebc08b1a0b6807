//! `weights fetch`: every locked file of the named entries, one after another, from the hub (or
//! its cache), each verified in place.

use std::path::{Path, PathBuf};

use serde::Serialize;
use vlmctl_weights::{FetchOutcome, HubClient, WeightsLock};

use crate::events::{Event, Sink};
use crate::{DeployError, Dirs};

/// One file fetched (or found in place), verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    /// The lock entry.
    pub model: String,
    /// The file, as the lock names it.
    pub path: String,
    /// Where it is now.
    pub location: PathBuf,
    /// Its size.
    pub size: u64,
    /// How it got there.
    pub outcome: FetchOutcome,
}

/// Fetches the locked files of `names` (every entry when empty): the names are checked before
/// any request. Each file's download goes to [`Sink::download`]; each file in place and
/// verified is an [`Event::Fetched`].
pub async fn fetch(
    hub: &HubClient,
    lock: &Path,
    names: &[String],
    dirs: &Dirs,
    sink: &mut dyn Sink,
) -> Result<Vec<Fetched>, DeployError> {
    let data = WeightsLock::load(lock)?;
    let models = vlmctl_weights::select_models(&data, lock, names)?;
    let mut done = Vec::new();
    for model in models {
        let dir = vlmctl_weights::model_dir(model, dirs.dir.as_deref(), &dirs.models_root);
        for file in &model.files {
            let progress = sink.download(&file.path);
            let outcome = hub.fetch(model, file, &dir, progress).await?;
            sink.event(Event::Fetched {
                file: file.path.clone(),
                size: file.size,
                outcome: outcome.clone(),
            });
            done.push(Fetched {
                model: model.name.clone(),
                path: file.path.clone(),
                location: dir.join(&file.path),
                size: file.size,
                outcome,
            });
        }
    }
    Ok(done)
}
