//! Files on the engine's host, through the Engine API alone (no scp, nothing installed there):
//! a short-lived helper container from an image the host has, with the models directory
//! bind-mounted, checks each file's size and sha256 *on that host* ([`check`]) and receives
//! files as archive uploads ([`push`]).
//!
//! A push is resumable: a file goes up in [`SEGMENT`]-sized pieces into a staging folder
//! (see [`staging`]), each written as `N.part` and renamed to `N` once whole, so that a push
//! killed at any point leaves only whole pieces and at most one `.part`; the next push keeps
//! every whole piece and sends the rest. The pieces are then joined into `NAME.vlmctl-partial`
//! there, hashed there, and renamed to `NAME` only when size and sha256 are the locked ones: a
//! file never has its final name on the host before it verified. Staging folders no lock names
//! any more are removed by the next push into the directory ([`tidy`]).
//!
//! A file that verified there gets a stamp beside it ([`HostStamp`], `.NAME.vlmctl-verified`),
//! as the weights crate's local cache does: while its size, mtime, ctime, inode and device
//! are the ones the stamp recorded, [`check`] trusts it and does not hash it again.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// Present with the locked size and sha256: hashed there now.
    Verified,
    /// Present and unchanged since it was hashed there and verified (its stamp matches): not
    /// hashed again.
    Stamped,
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

impl Found {
    /// Whether the host has the locked file (hashed now, or by its stamp).
    #[must_use]
    pub fn verified(&self) -> bool {
        matches!(self, Self::Verified | Self::Stamped)
    }
}

/// A running helper container on the host.
pub struct Helper<'a> {
    docker: &'a Docker,
    id: String,
    shell: Vec<String>,
    stopped: bool,
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
        DROPPED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((self.docker.clone(), self.id.clone()));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (docker, id) = (self.docker.clone(), self.id.clone());
            rt.spawn(async move {
                let _ = remove(&docker, &id).await;
            });
        }
    }
}

/// Helpers dropped without [`Helper::stop`]: their background removal may not get to run (a
/// signal ends the job and the front-end closes the host's forward right after), so the
/// front-end removes them with [`remove_dropped`] before it closes.
static DROPPED: Mutex<Vec<(Docker, String)>> = Mutex::new(Vec::new());

/// Removes every helper dropped without [`Helper::stop`] (the front-end calls it on its way
/// out, with the host's forward still open).
pub async fn remove_dropped() {
    let dropped = std::mem::take(
        &mut *DROPPED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for (docker, id) in dropped {
        let _ = remove(&docker, &id).await;
        // The drop's own background removal may be the one the daemon is carrying out (ours
        // then gets "removal already in progress" at once): gone means gone, so wait for it.
        while docker.inspect_container(&id, None).await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Pure: `s` quoted for a POSIX shell.
#[must_use]
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Pure: `s` as one word of a command a user may paste into a POSIX shell: as it is when it has
/// only characters no shell treats specially (an address, a name), else [`sh_quote`]d.
#[must_use]
pub fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '+' | ',' | '=' | '%')
        });
    if plain { s.to_owned() } else { sh_quote(s) }
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
            // A bounded life: a helper nobody removed (its vlmctl killed, on a machine that
            // never runs vlmctl again) ends by itself, and its staging folder is free again.
            cmd.extend(["-c".to_owned(), format!("sleep {}", HELPER_LIFE.as_secs())]);
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

// ---------------------------------------------------------------------------------------------
// Checking files there, and the stamps that spare a hash.

/// What `stat` says of a file on the host: the fields a [`HostStamp`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStat {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status change time (ctime), ns since the epoch.
    pub ctime_ns: i128,
    /// Inode.
    pub ino: u64,
    /// Device.
    pub dev: u64,
}

/// The stamp a file that verified on the host gets beside it (`.NAME.vlmctl-verified`, JSON):
/// the fields of the weights crate's local `FileStamp`, with the same meaning. If none of them
/// changed, its content did not either: the mtime alone would not do (whoever can write the
/// file can set it back after an edit), but the ctime cannot be set back, and a file replaced
/// by a rename has another inode. Written only for a file whose `stat` was the same just before
/// and just after it was hashed, and whose last change was more than [`RACY_WINDOW_NS`] older
/// than the hash (timestamps come from a coarse clock: a same-size change within one tick of
/// the previous one would leave them as they were). A file that does not verify loses its
/// stamp. `weights verify` on the host itself, or removing the stamp, forces a hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostStamp {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status change time (ctime), ns since the epoch.
    pub ctime_ns: i128,
    /// Inode.
    pub ino: u64,
    /// Device.
    pub dev: u64,
    /// The sha256 it verified against.
    pub sha256: String,
}

impl HostStamp {
    fn of(stat: HostStat, sha256: &str) -> Self {
        Self {
            len: stat.len,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
            ino: stat.ino,
            dev: stat.dev,
            sha256: sha256.to_owned(),
        }
    }
}

/// How much older than a hash a file's last change must be for the hash to be stamped: well
/// above the kernel's timestamp tick (1/HZ: 1 to 10 ms), as for the local cache.
pub const RACY_WINDOW_NS: i128 = 100_000_000;

/// `stat` format of a [`HostStat`]: GNU coreutils' and busybox's `stat` both print `%y` and
/// `%z` with nanoseconds (`2026-01-02 03:04:05.123456789 +0000`), where `%.9Y` is GNU's alone.
const STAT_FORMAT: &str = "%s %Y %y %Z %z %i %d";

/// Pure: ns since the epoch from `stat`'s seconds (`%Y`) and the time of day of its `%y`
/// (`03:04:05.123456789`); `None` without all nine digits of nanoseconds.
fn time_ns(secs: &str, time: &str) -> Option<i128> {
    let frac = time.split_once('.')?.1;
    if frac.len() != 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(secs.parse::<i128>().ok()? * 1_000_000_000 + frac.parse::<i128>().ok()?)
}

/// Pure: a line of `stat -c '%s %Y %y %Z %z %i %d'`. `None` for anything else, and for times
/// without nanoseconds (such a file is hashed every time, never stamped).
#[must_use]
pub fn parse_stat(line: &str) -> Option<HostStat> {
    let f: Vec<&str> = line.split_whitespace().collect();
    // size, %Y, date, time, zone, %Z, date, time, zone, inode, device
    let [len, y, _, ytime, _, z, _, ztime, _, ino, dev] = f.as_slice() else {
        return None;
    };
    Some(HostStat {
        len: len.parse().ok()?,
        mtime_ns: time_ns(y, ytime)?,
        ctime_ns: time_ns(z, ztime)?,
        ino: ino.parse().ok()?,
        dev: dev.parse().ok()?,
    })
}

/// Pure: the file system's clock from `stat -c '%Y %y'` of a file created just then.
fn parse_clock(line: &str) -> Option<i128> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [secs, _, time, _] = f.as_slice() else {
        return None;
    };
    time_ns(secs, time)
}

/// Where a file's stamp lives: beside it, hidden, `dir/.NAME.vlmctl-verified`.
#[must_use]
pub fn stamp_path(name: &str) -> String {
    match name.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/.{file}.vlmctl-verified"),
        None => format!(".{name}.vlmctl-verified"),
    }
}

/// What the first look found of one file: `stat`, and its stamp if it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Looked {
    stat: Option<String>,
    stamp: Option<String>,
}

/// What hashing found of one file: the file system's clock when it started (the mtime of a
/// file created then), `stat` before and after, and the sha256.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Hashed {
    clock: Option<String>,
    before: Option<String>,
    sha256: Option<String>,
    after: Option<String>,
}

/// Pure: lines `INDEX KEY REST` as a map from index to the `KEY REST` pairs.
fn by_index(out: &str) -> HashMap<usize, HashMap<String, String>> {
    let mut m: HashMap<usize, HashMap<String, String>> = HashMap::new();
    for line in out.lines() {
        let mut it = line.splitn(3, ' ');
        let (Some(i), Some(key)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(i) = i.parse::<usize>() else { continue };
        m.entry(i)
            .or_default()
            .insert(key.to_owned(), it.next().unwrap_or("").trim().to_owned());
    }
    m
}

/// What to do about one file after the first look.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FirstLook {
    /// Decided: missing, of another size (not worth hashing), or stamped.
    Known(Found),
    /// To hash.
    Hash,
}

/// Pure: the first look at a file judged: trusted by its stamp only when every field of the
/// stamp is the file's now and the sha256 it verified is the wanted one.
fn judge_look(want: &Want, look: &Looked) -> FirstLook {
    let Some(line) = &look.stat else {
        return FirstLook::Known(Found::Missing);
    };
    let size = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok());
    if size != Some(want.size) {
        return FirstLook::Known(Found::Differs {
            size: size.unwrap_or(0),
            sha256: String::new(),
        });
    }
    let now = parse_stat(line);
    let stamp = look
        .stamp
        .as_deref()
        .and_then(|s| serde_json::from_str::<HostStamp>(s).ok());
    match (now, stamp) {
        (Some(now), Some(stamp)) if stamp == HostStamp::of(now, &want.sha256) => {
            FirstLook::Known(Found::Stamped)
        }
        _ => FirstLook::Hash,
    }
}

/// Pure: a hashed file judged, and the stamp to write for it (`None`: remove any). Stamped only
/// when it verified, nothing moved while it was hashed, and its last change was settled
/// ([`RACY_WINDOW_NS`]) when the hash started.
fn judge_hash(want: &Want, h: &Hashed) -> (Found, Option<HostStamp>) {
    let before = h.before.as_deref().and_then(parse_stat);
    let size = h
        .before
        .as_deref()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    let Some(size) = size else {
        return (Found::Missing, None);
    };
    let sha = h
        .sha256
        .as_deref()
        .and_then(|s| s.split_whitespace().next())
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if size != want.size || sha != want.sha256 {
        return (Found::Differs { size, sha256: sha }, None);
    }
    let clock = h.clock.as_deref().and_then(parse_clock);
    let after = h.after.as_deref().and_then(parse_stat);
    let stamp = match (before, after, clock) {
        (Some(b), Some(a), Some(clock))
            if a == b
                && b.mtime_ns < clock - RACY_WINDOW_NS
                && b.ctime_ns < clock - RACY_WINDOW_NS =>
        {
            Some(HostStamp::of(b, &want.sha256))
        }
        _ => None,
    };
    (Found::Verified, stamp)
}

/// Each wanted file as the host has it: missing, of another size, unchanged since it verified
/// there (its stamp matches: not hashed), or hashed there now. Stamps are written for files
/// that verified (see [`HostStamp`]) and removed from files that did not.
pub async fn check(helper: &Helper<'_>, wants: &[Want]) -> Result<Vec<Found>, LifecycleError> {
    // 1. stat and stamp of every file.
    let mut script = String::new();
    for (i, w) in wants.iter().enumerate() {
        // `./`: a name starting with `-` is a file, not an option.
        let q = sh_quote(&format!("./{}", w.name));
        let st = sh_quote(&format!("./{}", stamp_path(&w.name)));
        let _ = write!(
            script,
            "if [ -f {q} ]; then echo {i} stat \"$(stat -L -c '{STAT_FORMAT}' {q})\"; \
             [ -f {st} ] && echo {i} stamp \"$(head -c 4096 {st} | tr -d '\\n')\"; fi; "
        );
    }
    script.push_str("true");
    let (_, out) = helper.sh(&script).await?;
    let looked = by_index(&out);
    let mut found: Vec<Option<Found>> = Vec::with_capacity(wants.len());
    let mut to_hash = Vec::new();
    for (i, w) in wants.iter().enumerate() {
        let l = looked.get(&i);
        let look = Looked {
            stat: l.and_then(|m| m.get("stat")).cloned(),
            stamp: l.and_then(|m| m.get("stamp")).cloned(),
        };
        match judge_look(w, &look) {
            FirstLook::Known(f) => found.push(Some(f)),
            FirstLook::Hash => {
                found.push(None);
                to_hash.push(i);
            }
        }
    }
    if to_hash.is_empty() {
        return Ok(found
            .into_iter()
            .map(|f| f.unwrap_or(Found::Missing))
            .collect());
    }
    // 2. Hash what must be, with the clock and stat around each hash.
    let mut script = String::new();
    for &i in &to_hash {
        let w = &wants[i];
        let q = sh_quote(&format!("./{}", w.name));
        // Unique to this shell (`$$` outside the quotes).
        let clock = format!(
            "{}-$$",
            sh_quote(&format!("./{}.clock", stamp_path(&w.name)))
        );
        let _ = write!(
            script,
            "c={clock}; : > \"$c\" && echo {i} clock \"$(stat -c '%Y %y' \"$c\")\"; rm -f \"$c\"; \
             if [ -f {q} ]; then echo {i} before \"$(stat -L -c '{STAT_FORMAT}' {q})\"; \
             echo {i} sha \"$(sha256sum < {q})\"; \
             echo {i} after \"$(stat -L -c '{STAT_FORMAT}' {q})\"; fi; "
        );
    }
    script.push_str("true");
    let (_, out) = helper.sh(&script).await?;
    let hashed = by_index(&out);
    // 3. Stamps written (atomically: a new file renamed) or removed.
    let mut script = String::new();
    for &i in &to_hash {
        let w = &wants[i];
        let h = hashed.get(&i);
        let get = |k: &str| h.and_then(|m| m.get(k)).cloned();
        let (f, stamp) = judge_hash(
            w,
            &Hashed {
                clock: get("clock"),
                before: get("before"),
                sha256: get("sha"),
                after: get("after"),
            },
        );
        let st = sh_quote(&format!("./{}", stamp_path(&w.name)));
        match stamp.and_then(|s| serde_json::to_string(&s).ok()) {
            Some(json) => {
                let tmp = format!("{}-$$", sh_quote(&format!("./{}.new", stamp_path(&w.name))));
                let _ = write!(
                    script,
                    "printf '%s\\n' {} > {tmp} && mv {tmp} {st}; ",
                    sh_quote(&json)
                );
            }
            None => {
                let _ = write!(script, "rm -f {st}; ");
            }
        }
        found[i] = Some(f);
    }
    script.push_str("true");
    // Best effort: without a stamp the next check hashes again, nothing worse.
    let _ = helper.sh(&script).await;
    Ok(found
        .into_iter()
        .map(|f| f.unwrap_or(Found::Missing))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Staging folders.

/// Pure: the staging folders of a push, and who may use them.
///
/// A push stages a file in `.vlmctl-push-<sha256>.live-<helper id>`: the folder carries the id
/// of the helper container that writes it, so any vlmctl (on any machine) can ask the host's
/// engine whether that push is still alive: a helper that is gone or exited never runs again,
/// so "not alive" cannot turn back into "alive" between the question and what follows. A push
/// takes a folder over (a killed push's, to resume it; or an old `.vlmctl-push-<sha256>` of
/// earlier versions) by renaming it to its own name, and [`tidy`] removes one by renaming it
/// away first: a rename is atomic, so of a push resuming a folder and a tidy removing it,
/// exactly one wins, and the loser sees the folder gone (the push then starts a fresh one).
/// A folder whose helper is alive is never touched. A folder without a helper in its name
/// (written by vlmctl before this scheme) is removed only once nothing in it changed for
/// [`UNOWNED_AGE_S`]: such a push may still be running, and it writes a piece at least every
/// two minutes (the request timeout).
///
/// Why not a lock on the host (`flock`): the helper's image is the deployment's, and
/// llama.cpp-style images built `FROM scratch` with busybox (as the test image is) have no
/// `flock`; `mv` and the engine's list of containers are there whatever the image.
pub mod staging {
    /// Every staging folder's name starts so.
    pub const PREFIX: &str = ".vlmctl-push-";
    /// Between the sha256 and the helper id.
    pub const LIVE: &str = ".live-";
    /// Where a folder goes to be removed (`<prefix><helper id>-<n>`).
    pub const TRASH: &str = ".vlmctl-trash-";

    /// A staging folder's name, read.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Folder {
        /// The folder's name in the directory.
        pub name: String,
        /// The file it stages.
        pub sha256: String,
        /// The helper writing it (`None`: an earlier version's folder, or trash).
        pub helper: Option<String>,
        /// Trash left by a tidy that was cut off.
        pub trash: bool,
    }

    /// Pure: a directory entry read as a staging folder (`None` for anything else).
    #[must_use]
    pub fn parse(name: &str) -> Option<Folder> {
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(rest) = name.strip_prefix(TRASH) {
            let (helper, n) = rest.rsplit_once('-')?;
            return (hex(helper) && n.bytes().all(|b| b.is_ascii_digit())).then(|| Folder {
                name: name.to_owned(),
                sha256: String::new(),
                helper: Some(helper.to_owned()),
                trash: true,
            });
        }
        let rest = name.strip_prefix(PREFIX)?;
        let (sha, helper) = match rest.split_once(LIVE) {
            Some((sha, h)) => (sha, Some(h)),
            None => (rest, None),
        };
        (sha.len() == 64 && hex(sha) && helper.is_none_or(hex)).then(|| Folder {
            name: name.to_owned(),
            sha256: sha.to_owned(),
            helper: helper.map(str::to_owned),
            trash: false,
        })
    }

    /// The folder helper `me` stages `sha256` in.
    #[must_use]
    pub fn own(sha256: &str, me: &str) -> String {
        format!("{PREFIX}{sha256}{LIVE}{me}")
    }

    /// Pure: the folders (with how long nothing in them changed, in seconds) helper `me` may
    /// take over to resume a push of `sha256`, best first: its own, then those whose helper is
    /// gone, then an earlier version's left alone for [`super::UNOWNED_AGE_S`].
    #[must_use]
    pub fn resumable(
        sha256: &str,
        folders: &[(Folder, u64)],
        alive: &std::collections::BTreeSet<String>,
        me: &str,
    ) -> Vec<String> {
        let mut out: Vec<(u8, String)> = folders
            .iter()
            .filter(|(f, _)| !f.trash && f.sha256 == sha256)
            .filter_map(|(f, idle_s)| match &f.helper {
                Some(h) if h == me => Some((0, f.name.clone())),
                Some(h) if !alive.contains(h) => Some((1, f.name.clone())),
                None if *idle_s >= super::UNOWNED_AGE_S => Some((2, f.name.clone())),
                _ => None,
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, n)| n).collect()
    }

    /// What [`judge`] makes of a folder.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Verdict {
        /// The lock names its file: a later push resumes from it.
        Wanted,
        /// A living helper writes it.
        InUse,
        /// No helper in its name, and something in it changed within [`super::UNOWNED_AGE_S`].
        Recent,
        /// Stale: removed.
        Remove,
    }

    /// Pure: what to do with `f`, given the sha256s the lock names, the living helpers, the
    /// newest mtime in the folder and the host's clock (seconds).
    #[must_use]
    pub fn judge(
        f: &Folder,
        keep: &std::collections::BTreeSet<String>,
        alive: &std::collections::BTreeSet<String>,
        newest_s: u64,
        now_s: u64,
    ) -> Verdict {
        match &f.helper {
            Some(h) if alive.contains(h) => Verdict::InUse,
            _ if !f.trash && keep.contains(&f.sha256) => Verdict::Wanted,
            None if now_s.saturating_sub(newest_s) < super::UNOWNED_AGE_S => Verdict::Recent,
            _ => Verdict::Remove,
        }
    }
}

/// How long nothing in a staging folder without a helper in its name must have changed before
/// [`tidy`] removes it (see [`staging`]).
pub const UNOWNED_AGE_S: u64 = 15 * 60;

/// One staging folder [`tidy`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Staged {
    /// Its name in the directory.
    pub folder: String,
    /// The file it stages (empty for trash).
    pub sha256: String,
    /// The bytes in it.
    pub bytes: u64,
}

/// What [`tidy`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tidied {
    /// Removed: a killed push's folder for a file no lock here names.
    pub removed: Vec<Staged>,
    /// Left alone: another push is writing it now.
    pub in_use: Vec<Staged>,
}

/// Ids of the helper containers on the host that may still be writing (any not exited or
/// dead).
async fn alive_helpers(
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

/// Pure: the listing of [`tidy`] (`now SECONDS`, then per folder `dir NAME`, `top MTIME` and
/// `ent MTIME SIZE` per entry) as folders with their newest mtime and bytes, and the clock.
fn parse_listing(out: &str) -> (u64, Vec<(staging::Folder, u64, u64)>) {
    let mut now = 0;
    let mut folders: Vec<(staging::Folder, u64, u64)> = Vec::new();
    // Whether the lines that follow belong to a folder of ours.
    let mut current = false;
    for line in out.lines() {
        let mut f = line.split_whitespace();
        let last = folders.last_mut().filter(|_| current);
        match (f.next(), f.next(), f.next(), last) {
            (Some("now"), Some(n), _, _) => now = n.parse().unwrap_or(0),
            (Some("dir"), Some(name), _, _) => {
                let folder = staging::parse(name);
                current = folder.is_some();
                folders.extend(folder.map(|f| (f, 0, 0)));
            }
            (Some("top"), Some(m), _, Some(last)) => last.1 = last.1.max(m.parse().unwrap_or(0)),
            (Some("ent"), Some(m), Some(size), Some(last)) => {
                last.1 = last.1.max(m.parse().unwrap_or(0));
                last.2 += size.parse::<u64>().unwrap_or(0);
            }
            _ => {}
        }
    }
    (now, folders)
}

/// Removes the staging folders in the helper's directory that a push killed earlier left and
/// that no push will resume: those for a file whose sha256 is not in `keep` (the lock's), and
/// whose helper is gone; never one that another push is writing (see [`staging`]).
pub async fn tidy(
    helper: &Helper<'_>,
    keep: &std::collections::BTreeSet<String>,
) -> Result<Tidied, LifecycleError> {
    let (_, out) = helper
        .sh(&format!(
            "echo now $(date +%s); for d in {p}* {t}*; do [ -d \"$d\" ] || continue; \
             echo dir \"$d\"; stat -c 'top %Y' \"$d\"; \
             for e in \"$d\"/* \"$d\"/.[!.]*; do [ -e \"$e\" ] && stat -c 'ent %Y %s' \"$e\"; done; \
             done; true",
            p = staging::PREFIX,
            t = staging::TRASH,
        ))
        .await?;
    let (now, folders) = parse_listing(&out);
    if folders.is_empty() {
        return Ok(Tidied::default());
    }
    let alive = alive_helpers(helper.docker).await?;
    let mut done = Tidied::default();
    let mut script = String::new();
    let mut doomed = Vec::new();
    for (n, (f, newest, bytes)) in folders.into_iter().enumerate() {
        let staged = Staged {
            folder: f.name.clone(),
            sha256: f.sha256.clone(),
            bytes,
        };
        match staging::judge(&f, keep, &alive, newest, now) {
            // Another tidy's trash, being removed now.
            staging::Verdict::InUse if f.trash => {}
            staging::Verdict::InUse => done.in_use.push(staged),
            staging::Verdict::Remove => {
                let name = sh_quote(&f.name);
                if f.trash {
                    let _ = write!(script, "rm -rf {name} && echo gone {n}; ");
                } else {
                    // Renamed away first: if a push took the folder over in the meantime,
                    // the rename fails and the folder stays with it.
                    let trash = sh_quote(&format!("{}{}-{n}", staging::TRASH, helper.id));
                    let _ = write!(
                        script,
                        "mv {name} {trash} 2>/dev/null && rm -rf {trash} && echo gone {n}; "
                    );
                }
                doomed.push((n, staged));
            }
            staging::Verdict::Wanted | staging::Verdict::Recent => {}
        }
    }
    if !doomed.is_empty() {
        script.push_str("true");
        let (_, out) = helper.sh(&script).await?;
        let gone: std::collections::BTreeSet<usize> = out
            .lines()
            .filter_map(|l| l.strip_prefix("gone ")?.trim().parse().ok())
            .collect();
        done.removed = doomed
            .into_iter()
            .filter(|(n, _)| gone.contains(n))
            .map(|(_, s)| s)
            .collect();
    }
    Ok(done)
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

/// Which join this is (a join cut off by a lost connection may still run on the host; the next
/// one writes another partial file).
static JOINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sends `local` (already verified here against `want`) to the host as `want.name`, resuming
/// from the pieces an earlier push left; `progress(bytes_done, total)` after each piece.
pub async fn push(
    helper: &Helper<'_>,
    local: &Path,
    want: &Want,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Pushed, LifecycleError> {
    let stage = staging::own(&want.sha256, &helper.id);
    let pieces = want.size.div_ceil(SEGMENT).max(1);
    // Our own folder, or one a killed push left to take over, or a fresh one.
    let (_, out) = helper
        .sh(&format!(
            "echo now $(date +%s); for d in {p}{sha} {p}{sha}{l}*; do [ -d \"$d\" ] || continue; \
             echo dir \"$d\"; stat -c 'top %Y' \"$d\"; \
             for e in \"$d\"/*; do [ -e \"$e\" ] && stat -c 'ent %Y %s' \"$e\"; done; done; true",
            p = staging::PREFIX,
            sha = want.sha256,
            l = staging::LIVE,
        ))
        .await?;
    let (now, found) = parse_listing(&out);
    let candidates = if found.is_empty() {
        Vec::new()
    } else {
        staging::resumable(
            &want.sha256,
            &found
                .iter()
                .map(|(f, newest, _)| (f.clone(), now.saturating_sub(*newest)))
                .collect::<Vec<_>>(),
            &alive_helpers(helper.docker).await?,
            &helper.id,
        )
    };
    let s = sh_quote(&stage);
    let mut claim = format!("[ -d {s} ]");
    for c in candidates.iter().filter(|c| **c != stage) {
        let _ = write!(claim, " || mv {} {s} 2>/dev/null", sh_quote(c));
    }
    let (code, listing) = helper
        .sh(&format!(
            "{{ {claim} || mkdir -p {s}; }} && rm -f {s}/*.part && for f in {s}/*; do [ -f \"$f\" ] && echo \"$(wc -c < \"$f\") $f\"; done; true"
        ))
        .await?;
    if code != 0 {
        return Err(remote_failed(
            want,
            &format!("cannot make the staging folder {stage}: {listing}"),
        ));
    }
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
                .sh(&format!("cd {s} && mv {index}.part {index}"))
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
    // rename; the partial file is this push's own. A failed join keeps the pieces. The old
    // file's stamp goes with it (its inode is another anyway).
    let parts: Vec<String> = (0..pieces).map(|i| format!("{s}/{i}")).collect();
    let name = sh_quote(&format!("./{}", want.name));
    let partial = sh_quote(&format!(
        "./{}.vlmctl-partial-{}-{}",
        want.name,
        std::process::id(),
        JOINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let (code, out) = helper
        .sh(&format!(
            "mkdir -p \"$(dirname {name})\" && cat {parts} > {partial} \
             && [ \"$(wc -c < {partial})\" = {size} ] \
             && sha256sum {partial} | {{ read h _; [ \"$h\" = {sha} ]; }} \
             && rm -f {stamp} && mv {partial} {name} && rm -rf {s}; \
             rc=$?; rm -f {partial}; exit $rc",
            parts = parts.join(" "),
            size = want.size,
            sha = want.sha256,
            stamp = sh_quote(&format!("./{}", stamp_path(&want.name))),
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

    const STAT: &str = "10 1700000000 2023-11-14 22:13:20.123456789 +0000 1700000001 2023-11-14 22:13:21.000000007 +0000 42 2049";

    fn want(sha: &str) -> Want {
        Want {
            name: "m.gguf".into(),
            size: 10,
            sha256: sha.into(),
        }
    }

    #[test]
    fn stat_lines_of_gnu_and_busybox_read_to_the_nanosecond() {
        let s = parse_stat(STAT).expect("parses");
        assert_eq!(s.len, 10);
        assert_eq!(s.mtime_ns, 1_700_000_000_123_456_789);
        assert_eq!(s.ctime_ns, 1_700_000_001_000_000_007);
        assert_eq!((s.ino, s.dev), (42, 2049));
        // Without nanoseconds (a stat that prints none): never stamped, always hashed.
        assert_eq!(
            parse_stat("10 1 2023-11-14 22:13:20 +0000 1 2023-11-14 22:13:21 +0000 42 2049"),
            None
        );
        assert_eq!(parse_stat("stat: can't stat"), None);
        assert_eq!(
            parse_clock("1700000000 2023-11-14 22:13:20.123456789 +0000"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(stamp_path("m.gguf"), ".m.gguf.vlmctl-verified");
        assert_eq!(stamp_path("sub/m.gguf"), "sub/.m.gguf.vlmctl-verified");
    }

    #[test]
    fn a_stamp_is_trusted_only_while_every_field_matches() {
        let a = "a".repeat(64);
        let w = want(&a);
        let now = parse_stat(STAT).expect("parses");
        let stamp = |s: HostStamp| serde_json::to_string(&s).expect("json");
        let look = |stamp: Option<String>| Looked {
            stat: Some(STAT.to_owned()),
            stamp,
        };
        assert_eq!(
            judge_look(&w, &look(Some(stamp(HostStamp::of(now, &a))))),
            FirstLook::Known(Found::Stamped)
        );
        // Any field moved (a rewrite, a touch, a rename over it, another device), another
        // sha256 wanted, no stamp, or a damaged one: hashed.
        let moved = [
            HostStat {
                mtime_ns: now.mtime_ns + 1,
                ..now
            },
            HostStat {
                ctime_ns: now.ctime_ns + 1,
                ..now
            },
            HostStat {
                ino: now.ino + 1,
                ..now
            },
            HostStat {
                dev: now.dev + 1,
                ..now
            },
        ];
        for m in moved {
            assert_eq!(
                judge_look(&w, &look(Some(stamp(HostStamp::of(m, &a))))),
                FirstLook::Hash,
                "{m:?}"
            );
        }
        assert_eq!(
            judge_look(&w, &look(Some(stamp(HostStamp::of(now, &"b".repeat(64)))))),
            FirstLook::Hash
        );
        assert_eq!(judge_look(&w, &look(None)), FirstLook::Hash);
        assert_eq!(judge_look(&w, &look(Some("{".into()))), FirstLook::Hash);
        // Missing, or another size: decided without a hash.
        assert_eq!(
            judge_look(&w, &Looked::default()),
            FirstLook::Known(Found::Missing)
        );
        assert_eq!(
            judge_look(
                &want(&a),
                &Looked {
                    stat: Some(STAT.replacen("10 ", "9 ", 1)),
                    stamp: None
                }
            ),
            FirstLook::Known(Found::Differs {
                size: 9,
                sha256: String::new()
            })
        );
    }

    #[test]
    fn a_hash_is_stamped_only_when_verified_settled_and_unmoved() {
        let a = "a".repeat(64);
        let w = want(&a);
        let now = parse_stat(STAT).expect("parses");
        // The clock a second after the file's last change: settled.
        let settled = "1700000002 2023-11-14 22:13:22.000000000 +0000".to_owned();
        let hashed = |clock: &str, after: &str, sha: &str| Hashed {
            clock: Some(clock.to_owned()),
            before: Some(STAT.to_owned()),
            sha256: Some(format!("{sha}  -")),
            after: Some(after.to_owned()),
        };
        assert_eq!(
            judge_hash(&w, &hashed(&settled, STAT, &a)),
            (Found::Verified, Some(HostStamp::of(now, &a)))
        );
        // Changed within the clock's coarseness before the hash: verified, not stamped.
        let racy = "1700000001 2023-11-14 22:13:21.050000000 +0000";
        assert_eq!(
            judge_hash(&w, &hashed(racy, STAT, &a)),
            (Found::Verified, None)
        );
        // Changed while it was hashed: not stamped.
        let later = STAT.replace(".000000007", ".000000008");
        assert_eq!(
            judge_hash(&w, &hashed(&settled, &later, &a)),
            (Found::Verified, None)
        );
        // Another content: differs, and its stamp goes.
        let b = "b".repeat(64);
        assert_eq!(
            judge_hash(&w, &hashed(&settled, STAT, &b)),
            (
                Found::Differs {
                    size: 10,
                    sha256: b
                },
                None
            )
        );
        // Gone between the looks.
        assert_eq!(judge_hash(&w, &Hashed::default()), (Found::Missing, None));
    }

    #[test]
    fn index_tagged_output_is_read_per_file() {
        let m = by_index("0 stat 1 2 3\n1 stamp {\"a\":1}\nnoise\nx stat 1\n0 sha abc  -\n");
        assert_eq!(m[&0]["stat"], "1 2 3");
        assert_eq!(m[&0]["sha"], "abc  -");
        assert_eq!(m[&1]["stamp"], "{\"a\":1}");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn staging_folders_are_judged_by_lock_helper_and_age() {
        use staging::{Verdict, judge, parse, resumable};
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let (live, dead) = ("1234abcd".to_owned(), "dead0000".to_owned());
        let alive: std::collections::BTreeSet<String> = [live.clone()].into();
        let keep: std::collections::BTreeSet<String> = [a.clone()].into();
        let f = |n: String| parse(&n).expect("a staging folder");
        assert_eq!(parse(".vlmctl-push-xyz"), None);
        assert_eq!(parse("m.gguf"), None);
        assert_eq!(
            parse(&format!(".vlmctl-push-{b}.live-{dead}")),
            Some(staging::Folder {
                name: format!(".vlmctl-push-{b}.live-{dead}"),
                sha256: b.clone(),
                helper: Some(dead.clone()),
                trash: false
            })
        );
        let now = 10_000;
        let old = now - UNOWNED_AGE_S;
        let fresh = now - 5;
        let j = |name: String, newest| judge(&f(name), &keep, &alive, newest, now);
        // A killed push's folder for a file no lock here names: removed, however fresh.
        assert_eq!(
            j(format!(".vlmctl-push-{b}.live-{dead}"), fresh),
            Verdict::Remove
        );
        // Another push writing it: never, however old.
        assert_eq!(
            j(format!(".vlmctl-push-{b}.live-{live}"), 0),
            Verdict::InUse
        );
        // The lock names it: resumable.
        assert_eq!(
            j(format!(".vlmctl-push-{a}.live-{dead}"), 0),
            Verdict::Wanted
        );
        // An earlier version's folder: only once it is old.
        assert_eq!(j(format!(".vlmctl-push-{b}"), fresh), Verdict::Recent);
        assert_eq!(j(format!(".vlmctl-push-{b}"), old), Verdict::Remove);
        // Trash of a tidy cut off.
        assert_eq!(j(format!(".vlmctl-trash-{dead}-3"), fresh), Verdict::Remove);
        assert_eq!(j(format!(".vlmctl-trash-{live}-3"), fresh), Verdict::InUse);
        // Resuming: its own first, then a dead helper's, then an old unowned one; never a
        // living helper's or a recent unowned one.
        let me = "feed".to_owned();
        let folders = [
            (f(format!(".vlmctl-push-{a}")), UNOWNED_AGE_S),
            (f(format!(".vlmctl-push-{a}.live-{live}")), 0),
            (f(format!(".vlmctl-push-{a}.live-{dead}")), 0),
            (f(format!(".vlmctl-push-{a}.live-{me}")), 0),
            (f(format!(".vlmctl-push-{b}.live-{dead}")), 0),
        ];
        assert_eq!(
            resumable(&a, &folders, &alive, &me),
            vec![
                format!(".vlmctl-push-{a}.live-{me}"),
                format!(".vlmctl-push-{a}.live-{dead}"),
                format!(".vlmctl-push-{a}"),
            ]
        );
        let recent = [(f(format!(".vlmctl-push-{a}")), 5)];
        assert!(resumable(&a, &recent, &alive, &me).is_empty());
    }

    #[test]
    fn a_tidy_listing_sums_bytes_and_finds_the_newest_change() {
        let a = "a".repeat(64);
        let out = format!(
            "now 5000\ndir .vlmctl-push-{a}.live-beef\ntop 100\nent 300 16\nent 200 4\ndir junk\nent 9999 1\n"
        );
        let (now, folders) = parse_listing(&out);
        assert_eq!(now, 5000);
        assert_eq!(folders.len(), 1);
        assert_eq!((folders[0].1, folders[0].2), (300, 20));
    }

    #[test]
    fn names_are_quoted_for_the_shell() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
