//! The weights on another host: checked there (size and sha256, hashed by that host) and, where
//! missing or different, pushed through the Engine API ([`vlmctl_lifecycle::remote`]), then
//! checked again. The local files are verified first: only the locked bytes leave this machine.
//! The host's directory is the same absolute path as here (the lock's `dir`, or `--dir`).

use std::path::{Path, PathBuf};

use bollard::Docker;
use serde::Serialize;
use vlmctl_lifecycle::remote::{self, Found, Helper, Want};

use crate::events::{Event, Sink};
use crate::{DeployError, Plan};

/// One file's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileOnHost {
    /// Its name in the directory.
    pub name: String,
    /// Already there and verified (nothing sent).
    pub already: bool,
    /// Pieces an earlier push had left whole (kept).
    pub kept: u64,
    /// Pieces sent now.
    pub sent: u64,
}

/// What a plan's files are: name in the directory, size, sha256, and where the verified local
/// copy is.
#[must_use]
pub fn wants(plan: &Plan) -> Vec<(Want, PathBuf)> {
    plan.jobs
        .iter()
        .map(|j| {
            (
                Want {
                    name: j.file.path.clone(),
                    size: j.file.size,
                    sha256: j.file.sha256.to_string(),
                },
                j.location.clone(),
            )
        })
        .collect()
}

/// Makes the host's `dir` hold `files` (verified there), with a helper from `image`.
pub async fn to_host(
    docker: &Docker,
    image: &str,
    dir: &Path,
    files: &[(Want, PathBuf)],
    sink: &mut dyn Sink,
) -> Result<Vec<FileOnHost>, DeployError> {
    let helper = Helper::start(docker, image, dir).await?;
    let done = place(&helper, files, sink).await;
    helper.stop().await;
    done
}

async fn place(
    helper: &Helper<'_>,
    files: &[(Want, PathBuf)],
    sink: &mut dyn Sink,
) -> Result<Vec<FileOnHost>, DeployError> {
    let wanted: Vec<Want> = files.iter().map(|(w, _)| w.clone()).collect();
    let found = remote::check(helper, &wanted).await?;
    let mut out = Vec::new();
    for ((want, local), found) in files.iter().zip(found) {
        if found == Found::Verified {
            out.push(FileOnHost {
                name: want.name.clone(),
                already: true,
                kept: 0,
                sent: 0,
            });
            continue;
        }
        let mut last = 0;
        let mut progress = |done: u64, total: u64| {
            last = done;
            let _ = total;
        };
        let pushed = remote::push(helper, local, want, &mut progress).await?;
        sink.event(Event::PushedToHost {
            file: want.name.clone(),
            bytes: last,
            kept: pushed.kept,
            sent: pushed.sent,
        });
        out.push(FileOnHost {
            name: want.name.clone(),
            already: false,
            kept: pushed.kept,
            sent: pushed.sent,
        });
    }
    // Every file once more, as the host has it now.
    let again = remote::check(helper, &wanted).await?;
    if let Some((want, found)) = wanted
        .iter()
        .zip(&again)
        .find(|(_, f)| **f != Found::Verified)
    {
        return Err(vlmctl_lifecycle::LifecycleError::RemoteFile {
            file: want.name.clone(),
            said: format!("after the push the host has {found:?}, not the locked file"),
        }
        .into());
    }
    Ok(out)
}
