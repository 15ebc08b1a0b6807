//! The helper container: started on the host from an image it has, with the models directory
//! bind-mounted; scripts run in it and files uploaded into it; removed when done. One dropped
//! without [`Helper::stop`] (its job cancelled) is removed in the background and remembered by
//! the [`Sessions`] pool it came from, which removes it for sure before it closes the forwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt as _;

use super::want::MOUNT;
use crate::LifecycleError;
use crate::hosts::Sessions;

/// A running helper container on the host.
pub struct Helper<'a> {
    pub(super) docker: &'a Docker,
    pub(super) id: String,
    shell: Vec<String>,
    stopped: bool,
    /// Told of the helper if it is dropped without [`Helper::stop`].
    sessions: Sessions,
    /// Numbers the joins of this helper (a join cut off by a lost connection may still run on
    /// the host; the next one writes another partial file).
    pub(super) joins: AtomicU64,
}

/// How long a helper lives at most (a push of 5.6 GB at 1 MB/s takes an hour and a half).
pub const HELPER_LIFE: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

impl Drop for Helper<'_> {
    /// A helper dropped without [`Helper::stop`] (its job cancelled by a signal, an error on the
    /// way) is removed in the background: it must not stay on the host.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.sessions
            .dropped_helper(self.docker.clone(), self.id.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (docker, id) = (self.docker.clone(), self.id.clone());
            rt.spawn(async move {
                let _ = remove(&docker, &id).await;
            });
        }
    }
}

impl<'a> Helper<'a> {
    /// Starts a helper from `image` with `dir` (a path on the host) mounted at `/models`,
    /// created when missing. The image needs a POSIX shell with `sha256sum`, `cat`, `mv` and
    /// `wc` (llama.cpp's images have them; `/bin/busybox` is used when there is no `/bin/sh`).
    /// Dropped without [`Helper::stop`], it is removed, at the latest by `sessions`'
    /// [`Sessions::close`].
    pub async fn start(
        docker: &'a Docker,
        sessions: &Sessions,
        image: &str,
        dir: &Path,
    ) -> Result<Self, LifecycleError> {
        remove_stale(docker, "files").await;
        let mut last = None;
        for shell in [
            vec!["/bin/sh".to_owned()],
            vec!["/bin/busybox".to_owned(), "sh".to_owned()],
        ] {
            let mut cmd = shell.clone();
            // A bounded life: a helper nobody removed (its vlmctl killed, on a machine that
            // never runs vlmctl again) ends by itself, and its staging folder is free again.
            cmd.extend(["-c".to_owned(), format!("sleep {}", HELPER_LIFE.as_secs())]);
            let body = ContainerCreateBody {
                image: Some(image.to_owned()),
                entrypoint: Some(cmd),
                labels: Some(helper_labels("files")),
                // The image's own health check means nothing for a helper.
                healthcheck: Some(bollard::models::HealthConfig {
                    test: Some(vec!["NONE".to_owned()]),
                    ..Default::default()
                }),
                host_config: Some(HostConfig {
                    // `binds`, not `mounts`: the daemon creates a missing directory for a bind
                    // (a first push), which `mounts` does only from API 1.42.
                    binds: Some(vec![format!("{}:{MOUNT}", dir.display())]),
                    network_mode: Some("none".to_owned()),
                    auto_remove: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let name = format!("vlmctl-files-{}-{}", std::process::id(), crate::now_unix());
            let created = docker
                .create_container(
                    Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                    body,
                )
                .await
                .map_err(|source| LifecycleError::Docker {
                    action: format!("create a helper container from {image}"),
                    source,
                })?;
            match docker.start_container(&created.id, None).await {
                Ok(()) => {
                    return Ok(Self {
                        docker,
                        id: created.id,
                        shell,
                        stopped: false,
                        sessions: sessions.clone(),
                        joins: AtomicU64::new(0),
                    });
                }
                Err(e) => {
                    let _ = remove(docker, &created.id).await;
                    last = Some(e);
                }
            }
        }
        Err(LifecycleError::Docker {
            action: format!(
                "start a helper container from {image} (it needs /bin/sh or /bin/busybox)"
            ),
            source: last.unwrap_or(bollard::errors::Error::RequestTimeoutError),
        })
    }

    /// Runs `script` in the helper's shell, in `/models`; returns its exit code and output.
    pub async fn sh(&self, script: &str) -> Result<(i64, String), LifecycleError> {
        let mut cmd = self.shell.clone();
        cmd.extend(["-c".to_owned(), format!("cd {MOUNT} && {script}")]);
        let err = |source| LifecycleError::Docker {
            action: "run a command in the helper container".to_owned(),
            source,
        };
        let exec = self
            .docker
            .create_exec(
                &self.id,
                CreateExecOptions {
                    cmd: Some(cmd),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        let mut out = String::new();
        if let StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&exec.id, None).await.map_err(err)?
        {
            while let Some(chunk) = output.next().await {
                out.push_str(&chunk.map_err(err)?.to_string());
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(err)?
            .exit_code
            .unwrap_or(-1);
        Ok((code, out))
    }

    /// Writes `bytes` as `/models/<dir>/<name>` (an archive upload).
    pub(super) async fn put(
        &self,
        dir: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), LifecycleError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(crate::now_unix());
        header.set_cksum();
        let mut archive = tar::Builder::new(Vec::new());
        let io = |e: std::io::Error| LifecycleError::State {
            path: PathBuf::from(name),
            source: e,
        };
        archive
            .append_data(&mut header, name, bytes.as_slice())
            .map_err(io)?;
        let tarball = archive.into_inner().map_err(io)?;
        self.docker
            .upload_to_container(
                &self.id,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path(&format!("{MOUNT}/{dir}"))
                        .build(),
                ),
                bollard::body_full(tarball.into()),
            )
            .await
            .map_err(|source| LifecycleError::Docker {
                action: format!("upload {name} to the helper container"),
                source,
            })
    }

    /// The helper's container id (its staging folders are named after it).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Removes the helper.
    pub async fn stop(mut self) {
        let _ = remove(self.docker, &self.id).await;
        self.stopped = true;
    }
}

/// Labels every helper container.
pub const HELPER_LABEL: &str = "org.vlmctl.helper";
/// Who started a helper: `HOSTNAME/PID/START/MACHINE` (the hostname for people, then
/// `vlmctl_base::owner::Owner::to_label`); helpers of older vlmctls say `HOSTNAME/PID`.
const OWNER_LABEL: &str = "org.vlmctl.helper-owner";

/// The labels of a helper container of `kind` (`files`; `gpu`: the GPU probe's), started by
/// this process.
pub(crate) fn helper_labels(kind: &str) -> HashMap<String, String> {
    HashMap::from([
        (HELPER_LABEL.to_owned(), kind.to_owned()),
        (OWNER_LABEL.to_owned(), owner()),
    ])
}

fn owner() -> String {
    format!(
        "{}/{}",
        crate::hosts::machine_name().unwrap_or_default(),
        vlmctl_base::owner::Owner::this_process().to_label()
    )
}

/// Whether a helper's owner label names a process of this machine that is gone (the one rule
/// of `vlmctl_base::owner`: pid + start time + boot id + pid namespace, so a reused pid does not
/// keep a dead push's helper). A label of an older vlmctl (`HOSTNAME/PID`) is judged by
/// hostname and pid alone; another machine's owner is never gone from here.
fn owner_gone(label: &str, me: &str) -> bool {
    let Some((host, rest)) = label.split_once('/') else {
        return false;
    };
    if let Some(owner) = vlmctl_base::owner::Owner::from_label(rest) {
        return owner.is_dead();
    }
    host == me
        && rest.parse().is_ok_and(|pid| {
            !vlmctl_base::owner::Owner {
                pid,
                start: None,
                machine: None,
            }
            .is_alive()
        })
}

/// Helpers of `kind` that a vlmctl of this machine started and that outlived it (killed
/// mid-push, or mid-probe): gone. Another machine's are left alone (its process cannot be seen
/// from here).
pub(crate) async fn remove_stale(docker: &Docker, kind: &str) {
    let Ok(list) = crate::containers::labelled(docker, &format!("{HELPER_LABEL}={kind}")).await
    else {
        return;
    };
    let me = crate::hosts::machine_name().unwrap_or_default();
    for c in list {
        let owner = c
            .labels
            .as_ref()
            .and_then(|l| l.get(OWNER_LABEL))
            .cloned()
            .unwrap_or_default();
        if owner_gone(&owner, &me)
            && let Some(id) = c.id
        {
            let _ = remove(docker, &id).await;
        }
    }
}

async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    docker
        .remove_container(
            id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
}

/// Ids of the helper containers on the host that may still be writing (any not exited or
/// dead).
pub(super) async fn alive_helpers(
    docker: &Docker,
) -> Result<std::collections::BTreeSet<String>, LifecycleError> {
    use bollard::models::ContainerSummaryStateEnum as S;
    Ok(
        crate::containers::labelled(docker, &format!("{HELPER_LABEL}=files"))
            .await?
            .into_iter()
            .filter(|c| !matches!(c.state, Some(S::EXITED | S::DEAD)))
            .filter_map(|c| c.id)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_whose_owner_pid_was_reused_is_gone() {
        use vlmctl_base::owner::Owner;
        let me = Owner::this_process();
        let label = |o: &Owner| format!("somehost/{}", o.to_label());
        assert!(
            !owner_gone(&label(&me), "elsewhere"),
            "a live owner keeps it"
        );
        // The same pid, alive, but started at another time: the push that started the helper
        // is gone and its pid was reused.
        let before = Owner {
            start: me.start.map(|s| s - 1),
            ..me.clone()
        };
        assert!(owner_gone(&label(&before), "elsewhere"));
        let elsewhere = Owner {
            machine: Some("another-boot/pid:[1]".to_owned()),
            ..before
        };
        assert!(
            !owner_gone(&label(&elsewhere), "elsewhere"),
            "not judged from here"
        );
        // An older vlmctl's `HOSTNAME/PID`: by hostname and pid.
        assert!(!owner_gone(&format!("h/{}", me.pid), "h"));
        assert!(owner_gone("h/4294967295", "h"));
        assert!(!owner_gone("h/4294967295", "other"));
    }
}
