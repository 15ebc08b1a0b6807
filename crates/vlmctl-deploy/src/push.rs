//! The weights on another host: checked there (size and sha256, hashed by that host, or trusted
//! by the stamp it left when it last verified the file unchanged) and, where missing or
//! different, pushed through the Engine API ([`vlmctl_lifecycle::remote`]), then checked
//! again. The local files are verified first: only the locked bytes leave this machine. The
//! host's directory is the same absolute path as here (the lock's `dir`, or `--dir`). Staging
//! folders that killed pushes left there for files no lock here names are removed first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bollard::Docker;
use serde::Serialize;
use vlmctl_lifecycle::remote::{self, Found, Helper, Want};

use crate::events::{Event, Sink};
use crate::{DeployError, DeploymentPlan};

/// One file's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileOnHost {
    /// Its name in the directory.
    pub name: String,
    /// Already there and verified (nothing sent).
    pub already: bool,
    /// Already there, and trusted by the stamp the host wrote when it last hashed it (not
    /// hashed again).
    pub stamped: bool,
    /// Pieces an earlier push had left whole (kept).
    pub kept: u64,
    /// Pieces sent now.
    pub sent: u64,
}

/// What a plan's files are: name in the directory, size, sha256, and where the verified local
/// copy is.
#[must_use]
pub fn wants(plan: &DeploymentPlan) -> Vec<(Want, PathBuf)> {
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

/// How many times a placement cut off by a lost connection to the host is taken up again (the
/// forward is reopened under it; whole pieces are kept).
const RESUMES: u32 = 2;

/// Makes the host's `dir` hold `files` (verified there), with a helper from `image`. Staging
/// folders there for a sha256 neither in `files` nor in `keep` (the rest of the lock) are
/// removed unless another push is writing them.
pub async fn to_host(
    engine: &vlmctl_lifecycle::Engine,
    docker: &Docker,
    image: &str,
    dir: &Path,
    files: &[(Want, PathBuf)],
    keep: &BTreeSet<String>,
    sink: &mut dyn Sink,
) -> Result<Vec<FileOnHost>, DeployError> {
    let helper = Helper::start(docker, engine.sessions(), image, dir).await?;
    let done = tidy_then_place(&helper, files, keep, sink).await;
    helper.stop().await;
    done
}

async fn tidy_then_place(
    helper: &Helper<'_>,
    files: &[(Want, PathBuf)],
    keep: &BTreeSet<String>,
    sink: &mut dyn Sink,
) -> Result<Vec<FileOnHost>, DeployError> {
    let mut keep = keep.clone();
    keep.extend(files.iter().map(|(w, _)| w.sha256.clone()));
    let tidied = remote::tidy(helper, &keep).await?;
    for s in tidied.removed {
        sink.event(Event::StagingRemoved {
            folder: s.folder,
            bytes: s.bytes,
        });
    }
    for s in tidied.in_use {
        sink.event(Event::StagingInUse {
            folder: s.folder,
            bytes: s.bytes,
        });
    }
    let mut resumed = 0;
    loop {
        match place(helper, files, sink).await {
            Err(DeployError::Lifecycle(e))
                if e.daemon_gone() && !e.host_lost() && resumed < RESUMES =>
            {
                resumed += 1;
                sink.event(Event::Warning {
                    message: format!(
                        "the connection to the host broke during the push ({}); going on from \
                         what is there",
                        vlmctl_base::chain::one_line(&e)
                    ),
                });
            }
            other => return other,
        }
    }
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
        if found.verified() {
            let stamped = found == Found::Stamped;
            sink.event(Event::VerifiedOnHost {
                file: want.name.clone(),
                stamped,
            });
            out.push(FileOnHost {
                name: want.name.clone(),
                already: true,
                stamped,
                kept: 0,
                sent: 0,
            });
            continue;
        }
        // The sink's progress display for downloads serves the push as well (a 5.6 GB file
        // takes minutes): bytes on the host so far, kept pieces included.
        let bar = sink.download(&want.name);
        bar.start(&want.name, want.size, 0);
        let mut last = 0;
        let mut progress = |done: u64, _total: u64| {
            bar.advance(done.saturating_sub(last));
            last = done;
        };
        let pushed = remote::push(helper, local, want, &mut progress).await;
        bar.finish(&want.name);
        let pushed = pushed?;
        sink.event(Event::PushedToHost {
            file: want.name.clone(),
            bytes: last,
            kept: pushed.kept,
            sent: pushed.sent,
        });
        out.push(FileOnHost {
            name: want.name.clone(),
            already: false,
            stamped: false,
            kept: pushed.kept,
            sent: pushed.sent,
        });
    }
    // Every file once more, as the host has it now.
    let again = remote::check(helper, &wanted).await?;
    if let Some((want, found)) = wanted.iter().zip(&again).find(|(_, f)| !f.verified()) {
        return Err(vlmctl_lifecycle::LifecycleError::RemoteFile {
            file: want.name.clone(),
            said: format!("after the push the host has {found:?}, not the locked file"),
        }
        .into());
    }
    Ok(out)
}
