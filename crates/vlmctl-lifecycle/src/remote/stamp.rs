//! The stamps that spare a hash on the host (pure): what `stat` says of a file, what a first
//! look and a hash found, and when a stamp is written (the trust rule itself, the racy window,
//! is [`vlmctl_base::stamp`], shared with the local verify cache).

use std::collections::HashMap;

use super::want::{Found, Want};

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
/// and just after it was hashed, and whose last change was settled when the hash started
/// ([`vlmctl_base::stamp::settled`]: timestamps come from a coarse clock, so a same-size change
/// within one tick of the previous one would leave them as they were). A file that does not verify loses its
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

/// `stat` format of a [`HostStat`]: GNU coreutils' and busybox's `stat` both print `%y` and
/// `%z` with nanoseconds (`2026-01-02 03:04:05.123456789 +0000`), where `%.9Y` is GNU's alone.
pub(super) const STAT_FORMAT: &str = "%s %Y %y %Z %z %i %d";

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
pub(super) struct Looked {
    pub(super) stat: Option<String>,
    pub(super) stamp: Option<String>,
}

/// What hashing found of one file: the file system's clock when it started (the mtime of a
/// file created then), `stat` before and after, and the sha256.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Hashed {
    pub(super) clock: Option<String>,
    pub(super) before: Option<String>,
    pub(super) sha256: Option<String>,
    pub(super) after: Option<String>,
}

/// Pure: lines `INDEX KEY REST` as a map from index to the `KEY REST` pairs.
pub(super) fn by_index(out: &str) -> HashMap<usize, HashMap<String, String>> {
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
pub(super) enum FirstLook {
    /// Decided: missing, of another size (not worth hashing), or stamped.
    Known(Found),
    /// To hash.
    Hash,
}

/// Pure: the first look at a file judged: trusted by its stamp only when every field of the
/// stamp is the file's now and the sha256 it verified is the wanted one.
pub(super) fn judge_look(want: &Want, look: &Looked) -> FirstLook {
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
/// when it verified, nothing moved while it was hashed, and its last change was settled when the
/// hash started ([`vlmctl_base::stamp::settled`]).
pub(super) fn judge_hash(want: &Want, h: &Hashed) -> (Found, Option<HostStamp>) {
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
            if a == b && vlmctl_base::stamp::settled(b.mtime_ns, b.ctime_ns, clock) =>
        {
            Some(HostStamp::of(b, &want.sha256))
        }
        _ => None,
    };
    (Found::Verified, stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
