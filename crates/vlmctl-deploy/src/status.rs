//! `status`: every container vlmctl created, its health, its drift from the given spec and
//! lock, and every restore journal (an unreadable one too: it may name stopped containers).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vlmctl_lifecycle::containers::{self, Managed};
use vlmctl_lifecycle::journal::{self, Journal};

use crate::DeployError;
use crate::plan::Plan;

/// How a running container differs from the spec and lock given. Serialized as the text
/// `status` shows (`none`, `spec changed (relaunch recreates it)`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// No spec for it was given: cannot tell.
    Unknown,
    /// Same spec hash and lock hash.
    None,
    /// Relaunch recreates it.
    Changed {
        /// The spec's canonical hash differs.
        spec: bool,
        /// The lock entry's hash differs.
        lock: bool,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("unknown (pass --spec)"),
            Self::None => f.write_str("none"),
            Self::Changed { spec, lock } => {
                let what: Vec<&str> = [(*spec, "spec changed"), (*lock, "lock changed")]
                    .into_iter()
                    .filter_map(|(on, s)| on.then_some(s))
                    .collect();
                write!(f, "{} (relaunch recreates it)", what.join(", "))
            }
        }
    }
}

impl Serialize for Drift {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Pure: the drift of `m` against `plan` (when the plan is for that container).
#[must_use]
pub fn drift(m: &Managed, plan: Option<&Plan>) -> Drift {
    let Some(p) = plan.filter(|p| p.spec.name == m.name) else {
        return Drift::Unknown;
    };
    let spec = m.spec_sha256.as_deref() != Some(p.spec.sha256().as_str());
    let lock = m.lock_sha256.as_deref() != Some(p.mount.lock_sha256.as_str());
    if spec || lock {
        Drift::Changed { spec, lock }
    } else {
        Drift::None
    }
}

/// One managed container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusRow {
    /// What Docker says.
    pub container: Managed,
    /// `/health` in a word (`ok`, `loading (503)`, `HTTP n`, `down`, `-` when not running).
    pub health: String,
    /// Against the spec and lock given.
    pub drift: Drift,
}

/// One restore journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum JournalState {
    /// Readable.
    Open {
        /// The file.
        path: PathBuf,
        /// Its content.
        journal: Journal,
    },
    /// Not readable: it may still name stopped containers.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

/// What `status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Every container vlmctl created.
    pub containers: Vec<StatusRow>,
    /// Every journal under the state dir.
    pub journals: Vec<JournalState>,
}

/// Every journal under `state`, readable or not.
#[must_use]
pub fn journals(state: &Path) -> Vec<JournalState> {
    journal::all(state)
        .into_iter()
        .filter_map(|path| match journal::read(&path) {
            Ok(Some(journal)) => Some(JournalState::Open { path, journal }),
            Ok(None) => None,
            Err(e) => Some(JournalState::Unreadable {
                error: vlmctl_lifecycle::error_chain(&e),
                path,
            }),
        })
        .collect()
}

/// Status of every managed container (drift judged against `plan` when given) and journal.
pub async fn status(plan: Option<&Plan>, state: &Path) -> Result<Status, DeployError> {
    status_on(vlmctl_lifecycle::hosts::selected(), plan, state).await
}

/// [`status`] of a given engine (`state` being that host's state dir).
pub async fn status_on(
    host: &vlmctl_lifecycle::hosts::Host,
    plan: Option<&Plan>,
    state: &Path,
) -> Result<Status, DeployError> {
    let engine = host;
    let docker = vlmctl_lifecycle::connect_to(engine).await?;
    let mut rows = Vec::new();
    for m in containers::managed(&docker).await? {
        let health = match &m.endpoint {
            Some((host, port)) if m.state == "running" => {
                match vlmctl_lifecycle::hosts::reach_on(engine, host, *port).await {
                    Ok((h, p)) => containers::probe_health(&h, p).await,
                    Err(_) => "unreachable (ssh forward failed)".to_owned(),
                }
            }
            _ => "-".to_owned(),
        };
        let drift = drift(&m, plan);
        rows.push(StatusRow {
            container: m,
            health,
            drift,
        });
    }
    Ok(Status {
        containers: rows,
        journals: journals(state),
    })
}

/// [`status_on`] of every host at once (each with its state folder under `base_state`), in
/// the order given: a host that does not answer costs its own wait (up to
/// [`vlmctl_lifecycle::hosts::SSH_TIMEOUT`] for `ssh`), not one after another's.
pub async fn status_all(
    hosts: &[vlmctl_lifecycle::hosts::Host],
    plan: Option<&Plan>,
    base_state: &Path,
) -> Vec<Result<Status, DeployError>> {
    futures::future::join_all(
        hosts
            .iter()
            .map(|h| async move { status_on(h, plan, &h.state_dir(base_state)).await }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed(name: &str, spec: Option<&str>, lock: Option<&str>) -> Managed {
        Managed {
            name: name.into(),
            state: "running".into(),
            status: "Up".into(),
            image: "i".into(),
            spec_sha256: spec.map(str::to_owned),
            lock_sha256: lock.map(str::to_owned),
            endpoint: None,
            docker_health: None,
        }
    }

    #[test]
    fn drift_compares_both_hashes_of_the_same_deployment_only() {
        let plan = Plan::fixture("L");
        let spec = &plan.spec;
        let s = spec.sha256();
        let m = |sp, lk| managed(&spec.name, sp, lk);
        assert_eq!(drift(&m(Some(&s), Some("L")), Some(&plan)), Drift::None);
        assert_eq!(
            drift(&m(Some("old"), Some("L")), Some(&plan)),
            Drift::Changed {
                spec: true,
                lock: false
            }
        );
        assert_eq!(
            drift(&m(Some(&s), None), Some(&plan)),
            Drift::Changed {
                spec: false,
                lock: true
            }
        );
        assert_eq!(drift(&m(Some(&s), Some("L")), None), Drift::Unknown);
        assert_eq!(
            drift(&managed("other", Some(&s), Some("L")), Some(&plan)),
            Drift::Unknown,
            "another deployment's container is not judged by this spec"
        );
    }

    #[test]
    fn drift_reads_as_status_shows_it() {
        assert_eq!(Drift::None.to_string(), "none");
        assert_eq!(Drift::Unknown.to_string(), "unknown (pass --spec)");
        assert_eq!(
            Drift::Changed {
                spec: true,
                lock: true
            }
            .to_string(),
            "spec changed, lock changed (relaunch recreates it)"
        );
        assert_eq!(
            serde_json::to_value(Drift::Changed {
                spec: false,
                lock: true
            })
            .unwrap(),
            "lock changed (relaunch recreates it)"
        );
    }
}
