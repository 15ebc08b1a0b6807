//! Files on the engine's host, through the Engine API alone (no scp, nothing installed there):
//! a short-lived helper container from an image the host has, with the models directory
//! bind-mounted, checks each file's size and sha256 *on that host* ([`check`]) and receives
//! files as archive uploads ([`push`]).
//!
//! A push is resumable: a file goes up in [`SEGMENT`]-sized pieces under
//! `DIR/.vlmctl-push-<sha256>/`, each written as `N.part` and renamed to `N` once whole, so
//! that a push killed at any point leaves only whole pieces and at most one `.part`; the next
//! push keeps every whole piece and sends the rest. The pieces are then joined into
//! `NAME.vlmctl-partial` there, hashed there, and renamed to `NAME` only when size and sha256
//! are the locked ones: a file never has its final name on the host before it verified.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::LifecycleError;

/// The size of one uploaded piece: small enough that one goes up within the engine client's
/// two-minute request timeout on a link of 0.15 MB/s, large enough that a 5.6 GB file is a few
/// hundred requests.
pub const SEGMENT: u64 = 16 * 1024 * 1024;

/// Where the models directory is mounted in the helper.
const MOUNT: &str = "/models";

/// One file to have on the host: its name in the directory, size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// File name (or path) inside the directory.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// What the host has of one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Found {
    /// Present with the locked size and sha256.
    Verified,
    /// Absent.
    Missing,
    /// Present but another size or sha256.
    Differs {
        /// What is there.
        size: u64,
        /// Its sha256.
        sha256: String,
    },
}

/// A running helper container on the host.
pub struct Helper<'a> {
    docker: &'a Docker,
    id: String,
    shell: Vec<String>,
    stopped: bool,
}

impl Drop for Helper<'_> {
    /// A helper dropped without [`Helper::stop`] (its job cancelled by a signal, an error on the
    /// way) is removed in the background: it must not stay on the host.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (docker, id) = (self.docker.clone(), self.id.clone());
            rt.spawn(async move {
                let _ = remove(&docker, &id).await;
            });
        }
    }
}

/// Pure: `s` quoted for a POSIX shell.
#[must_use]
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl<'a> Helper<'a> {
    /// Starts a helper from `image` with `dir` (a path on the host) mounted at `/models`,
    /// created when missing. The image needs a POSIX shell with `sha256sum`, `cat`, `mv` and
    /// `wc` (llama.cpp's images have them; `/bin/busybox` is used when there is no `/bin/sh`).
    pub async fn start(
        docker: &'a Docker,
        image: &str,
        dir: &Path,
    ) -> Result<Self, LifecycleError> {
        remove_stale(docker).await;
        let mut last = None;
        for shell in [
            vec!["/bin/sh".to_owned()],
            vec!["/bin/busybox".to_owned(), "sh".to_owned()],
        ] {
            let mut cmd = shell.clone();
            cmd.extend(["-c".to_owned(), "while :; do sleep 3600; done".to_owned()]);
            let body = ContainerCreateBody {
                image: Some(image.to_owned()),
                entrypoint: Some(cmd),
                labels: Some(HashMap::from([
                    (HELPER_LABEL.to_owned(), "files".to_owned()),
                    (OWNER_LABEL.to_owned(), owner()),
                ])),
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
    async fn put(&self, dir: &str, name: &str, bytes: Vec<u8>) -> Result<(), LifecycleError> {
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

    /// Removes the helper.
    pub async fn stop(mut self) {
        let _ = remove(self.docker, &self.id).await;
        self.stopped = true;
    }
}

/// Labels every helper container.
pub const HELPER_LABEL: &str = "org.vlmctl.helper";
/// Who started a helper: `HOSTNAME/PID`.
const OWNER_LABEL: &str = "org.vlmctl.helper-owner";

fn owner() -> String {
    format!(
        "{}/{}",
        crate::hosts::machine_name().unwrap_or_default(),
        std::process::id()
    )
}

/// Whether a process of this machine is still running (a zombie is not).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Helpers that a vlmctl of this machine started and that outlived it (killed mid-push): gone.
/// Another machine's are left alone (its process cannot be seen from here).
async fn remove_stale(docker: &Docker) {
    let Ok(list) = crate::containers::labelled(docker, &format!("{HELPER_LABEL}=files")).await
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
        let Some((host, pid)) = owner.split_once('/') else {
            continue;
        };
        if host == me
            && !alive(pid)
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

/// Pure: `sha256sum` and `wc -c` output (`SIZE NAME` lines, then `HASH  NAME` lines) as what
/// the host has of each wanted file.
#[must_use]
pub fn parse_check(wants: &[Want], out: &str) -> Vec<Found> {
    let mut sizes = HashMap::new();
    let mut sums = HashMap::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("size ") {
            if let Some((n, name)) = rest.split_once(' ') {
                let name = name.strip_prefix("./").unwrap_or(name);
                sizes.insert(name.to_owned(), n.trim().parse::<u64>().unwrap_or(0));
            }
        } else if let Some((hash, name)) = line.split_once("  ")
            && hash.len() == 64
            && hash.chars().all(|c| c.is_ascii_hexdigit())
        {
            let name = name.trim();
            let name = name.strip_prefix("./").unwrap_or(name);
            sums.insert(name.to_owned(), hash.to_ascii_lowercase());
        }
    }
    wants
        .iter()
        .map(|w| match (sizes.get(&w.name), sums.get(&w.name)) {
            (Some(&size), Some(sha)) if size == w.size && *sha == w.sha256 => Found::Verified,
            (Some(&size), sha) => Found::Differs {
                size,
                sha256: sha.cloned().unwrap_or_default(),
            },
            (None, _) => Found::Missing,
        })
        .collect()
}

/// Size and sha256 of each wanted file, hashed on the host (a file of the wrong size is not
/// hashed).
pub async fn check(helper: &Helper<'_>, wants: &[Want]) -> Result<Vec<Found>, LifecycleError> {
    let mut script = String::new();
    for w in wants {
        // `./`: a name starting with `-` is a file, not an option.
        let q = sh_quote(&format!("./{}", w.name));
        let _ = write!(
            script,
            "if [ -f {q} ]; then s=$(wc -c < {q}); echo \"size $s\" {q}; \
             [ \"$s\" = {} ] && sha256sum {q}; fi; ",
            w.size
        );
    }
    script.push_str("true");
    let (_, out) = helper.sh(&script).await?;
    Ok(parse_check(wants, &out))
}

/// How a push of one file went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pushed {
    /// The file.
    pub name: String,
    /// Pieces already whole on the host from an earlier push (not sent again).
    pub kept: u64,
    /// Pieces sent now.
    pub sent: u64,
}

/// Sends `local` (already verified here against `want`) to the host as `want.name`, resuming
/// from the pieces an earlier push left; `progress(bytes_done, total)` after each piece.
pub async fn push(
    helper: &Helper<'_>,
    local: &Path,
    want: &Want,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Pushed, LifecycleError> {
    let stage = format!(".vlmctl-push-{}", want.sha256);
    let pieces = want.size.div_ceil(SEGMENT).max(1);
    let (_, listing) = helper
        .sh(&format!(
            "mkdir -p {s} && rm -f {s}/*.part && for f in {s}/*; do [ -f \"$f\" ] && echo \"$(wc -c < \"$f\") $f\"; done; true",
            s = sh_quote(&stage)
        ))
        .await?;
    let mut whole = std::collections::BTreeSet::new();
    for line in listing.lines() {
        let Some((n, path)) = line.split_once(' ') else {
            continue;
        };
        let Some(index) = path.rsplit('/').next().and_then(|f| f.parse::<u64>().ok()) else {
            continue;
        };
        let expected = SEGMENT.min(want.size.saturating_sub(index * SEGMENT));
        if n.trim().parse::<u64>().ok() == Some(expected) && index < pieces {
            whole.insert(index);
        }
    }
    let io = |source| LifecycleError::State {
        path: local.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::open(local).await.map_err(io)?;
    let (mut kept, mut sent) = (0, 0);
    for index in 0..pieces {
        let len = SEGMENT.min(want.size.saturating_sub(index * SEGMENT));
        if whole.contains(&index) {
            kept += 1;
        } else {
            file.seek(std::io::SeekFrom::Start(index * SEGMENT))
                .await
                .map_err(io)?;
            let mut buf = vec![0; usize::try_from(len).unwrap_or(0)];
            file.read_exact(&mut buf).await.map_err(io)?;
            helper.put(&stage, &format!("{index}.part"), buf).await?;
            let (code, out) = helper
                .sh(&format!(
                    "cd {s} && mv {index}.part {index}",
                    s = sh_quote(&stage)
                ))
                .await?;
            if code != 0 {
                return Err(remote_failed(want, &out));
            }
            sent += 1;
        }
        progress((index * SEGMENT + len).min(want.size), want.size);
    }
    // Joined in order, hashed there, and named only when it is the locked file: in one script,
    // so that nothing (another push into the same folder) comes between the check and the
    // rename; the partial file is this push's own. A failed join keeps the pieces.
    let parts: Vec<String> = (0..pieces)
        .map(|i| format!("{}/{i}", sh_quote(&stage)))
        .collect();
    let name = sh_quote(&format!("./{}", want.name));
    let partial = sh_quote(&format!(
        "./{}.vlmctl-partial-{}",
        want.name,
        std::process::id()
    ));
    let (code, out) = helper
        .sh(&format!(
            "mkdir -p \"$(dirname {name})\" && cat {parts} > {partial} \
             && [ \"$(wc -c < {partial})\" = {size} ] \
             && sha256sum {partial} | {{ read h _; [ \"$h\" = {sha} ]; }} \
             && mv {partial} {name} && rm -rf {stage}; \
             rc=$?; rm -f {partial}; exit $rc",
            parts = parts.join(" "),
            size = want.size,
            sha = want.sha256,
            stage = sh_quote(&stage),
        ))
        .await?;
    if code != 0 {
        return Err(remote_failed(
            want,
            &format!("joining and checking the pieces failed (exit {code}) {out}"),
        ));
    }
    Ok(Pushed {
        name: want.name.clone(),
        kept,
        sent,
    })
}

fn remote_failed(want: &Want, said: &str) -> LifecycleError {
    LifecycleError::RemoteFile {
        file: want.name.clone(),
        said: said.trim().chars().take(400).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_reads_sizes_and_hashes_and_judges_each_file() {
        let w = |name: &str, size, sha: &str| Want {
            name: name.into(),
            size,
            sha256: sha.into(),
        };
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let wants = [
            w("m.gguf", 10, &a),
            w("mmproj.gguf", 5, &b),
            w("gone.gguf", 1, &a),
            w("short.gguf", 9, &a),
        ];
        let out = format!(
            "size 10 ./m.gguf\n{a}  ./m.gguf\nsize 5 mmproj.gguf\n{a}  mmproj.gguf\nsize 3 ./short.gguf\n"
        );
        assert_eq!(
            parse_check(&wants, &out),
            vec![
                Found::Verified,
                Found::Differs {
                    size: 5,
                    sha256: a.clone()
                },
                Found::Missing,
                Found::Differs {
                    size: 3,
                    sha256: String::new()
                },
            ]
        );
    }

    #[test]
    fn names_are_quoted_for_the_shell() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
