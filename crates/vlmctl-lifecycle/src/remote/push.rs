//! [`push`]: a file sent to the host in [`SEGMENT`]-sized pieces into a staging folder, joined
//! and verified there before it gets its name; [`tidy`]: the staging folders no push will resume,
//! removed; [`staging`]: the pure rules of who may use a staging folder.

use std::fmt::Write as _;
use std::path::Path;

use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::helper::{Helper, alive_helpers};
use super::stamp::stamp_path;
use super::want::{SEGMENT, Want, remote_failed};
use crate::LifecycleError;
use crate::shell::sh_quote;

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
    pub enum StagingVerdict {
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
    ) -> StagingVerdict {
        match &f.helper {
            Some(h) if alive.contains(h) => StagingVerdict::InUse,
            _ if !f.trash && keep.contains(&f.sha256) => StagingVerdict::Wanted,
            None if now_s.saturating_sub(newest_s) < super::UNOWNED_AGE_S => StagingVerdict::Recent,
            _ => StagingVerdict::Remove,
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
            staging::StagingVerdict::InUse if f.trash => {}
            staging::StagingVerdict::InUse => done.in_use.push(staged),
            staging::StagingVerdict::Remove => {
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
            staging::StagingVerdict::Wanted | staging::StagingVerdict::Recent => {}
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
        "./{}.vlmctl-partial-{}-{}-{}",
        want.name,
        std::process::id(),
        // Helpers of one process (a service's pushes) never share a partial file.
        helper.id.get(..12).unwrap_or(&helper.id),
        helper
            .joins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_folders_are_judged_by_lock_helper_and_age() {
        use staging::{StagingVerdict, judge, parse, resumable};
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
            StagingVerdict::Remove
        );
        // Another push writing it: never, however old.
        assert_eq!(
            j(format!(".vlmctl-push-{b}.live-{live}"), 0),
            StagingVerdict::InUse
        );
        // The lock names it: resumable.
        assert_eq!(
            j(format!(".vlmctl-push-{a}.live-{dead}"), 0),
            StagingVerdict::Wanted
        );
        // An earlier version's folder: only once it is old.
        assert_eq!(
            j(format!(".vlmctl-push-{b}"), fresh),
            StagingVerdict::Recent
        );
        assert_eq!(j(format!(".vlmctl-push-{b}"), old), StagingVerdict::Remove);
        // Trash of a tidy cut off.
        assert_eq!(
            j(format!(".vlmctl-trash-{dead}-3"), fresh),
            StagingVerdict::Remove
        );
        assert_eq!(
            j(format!(".vlmctl-trash-{live}-3"), fresh),
            StagingVerdict::InUse
        );
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
}
