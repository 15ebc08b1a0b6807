//! What an engine is ([`Host`]: this machine's, or another's over SSH at an [`SshHost`]) and
//! where a host's state lives ([`Host::state_dir`]). Pure but for reading this machine's name.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshHost {
    /// Login name (`ssh`'s own default when absent).
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Port (`ssh`'s own default when absent).
    pub port: Option<u16>,
}

impl std::fmt::Display for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// A Docker engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Host {
    /// This machine's daemon (`DOCKER_HOST` when it is not `ssh://`, else the local socket).
    Local,
    /// Another host's daemon over SSH.
    Ssh {
        /// What the user called it (`beast`, or the URL).
        name: String,
        /// Where it is.
        target: SshHost,
    },
}

impl Host {
    /// The name runs, jobs and state are kept under: `local`, a context's name, or the URL.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Local => "local",
            Self::Ssh { name, .. } => name,
        }
    }

    /// Where this host's journals, records and deployment locks live: `state` itself for this
    /// machine (as before there were hosts), `state/hosts/<address>-<hash>` for another, named
    /// after its address (`ssh://root@10.0.0.2:2222` is `root-10.0.0.2-2222-…`), not after
    /// what the user called it: a context, its URL and `DOCKER_HOST` naming one host share one
    /// folder (one lock per deployment), and the hash of the exact address keeps two hosts
    /// whose made-safe names agree apart.
    #[must_use]
    pub fn state_dir(&self, state: &Path) -> PathBuf {
        match self {
            Self::Local => state.to_owned(),
            Self::Ssh { target, .. } => {
                let address = target.to_string();
                let bare = address.trim_start_matches("ssh://");
                state.join(HOSTS_FOLDER).join(format!(
                    "{}-{}",
                    path_safe(bare),
                    short_sha256(&address, 8)
                ))
            }
        }
    }
}

/// The folder of a state folder that holds the other hosts' ([`Host::state_dir`]); the
/// host-wide locks mirror it (`crate::lockfile`).
pub(crate) const HOSTS_FOLDER: &str = "hosts";

/// The first `hex_chars` hex digits of `text`'s sha256: a short tag that keeps two names apart
/// where a made-safe or bare name could meet another.
pub(crate) fn short_sha256(text: &str, hex_chars: usize) -> String {
    let mut hex = hex::encode(Sha256::digest(text.as_bytes()));
    hex.truncate(hex_chars);
    hex
}

/// This machine's host name (`/proc/sys/kernel/hostname`), when it has one.
#[must_use]
pub fn machine_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// This machine's engine, as contexts name it.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Pure: `name` with everything but letters, digits, `.`, `_` and `-` made `-`, runs of them
/// squeezed, and never `.` or `..`.
#[must_use]
pub fn path_safe(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let c = if keep { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() || out == "." || out == ".." {
        format!("host-{}", short_sha256(name, 12))
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::parse_ssh;

    #[test]
    fn host_names_are_safe_state_folders() {
        assert_eq!(path_safe("beast"), "beast");
        assert_eq!(
            path_safe("ssh://root@10.0.0.2:2222"),
            "ssh-root-10.0.0.2-2222"
        );
        assert!(path_safe("..").starts_with("host-"));
        assert!(path_safe("/").starts_with("host-"));
        let l = Host::Local;
        assert_eq!(l.state_dir(Path::new("/s")), Path::new("/s"));
        let by = |name: &str, url: &str| Host::Ssh {
            name: name.into(),
            target: parse_ssh(url).expect("ok"),
        };
        let b = by("beast", "ssh://me@beast:2200");
        let dir = b.state_dir(Path::new("/s"));
        assert!(dir.starts_with("/s/hosts"), "{dir:?}");
        assert!(
            dir.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("me-beast-2200-")),
            "{dir:?}"
        );
        assert_eq!(
            by("ssh://me@beast:2200", "ssh://me@beast:2200").state_dir(Path::new("/s")),
            dir,
            "a context and its URL are one host, one folder"
        );
        assert_ne!(
            by("x", "ssh://a-b@h").state_dir(Path::new("/s")),
            by("y", "ssh://a@b-h").state_dir(Path::new("/s")),
            "made-safe names that agree are still two hosts"
        );
    }
}
