//! `status`: every container vlmctl created (its endpoint, model, health and drift from the
//! given specs and lock), a "not running" row for each deployment asked about that has no
//! container, every restore journal and every tune journal (running, interrupted or
//! unreadable: each may leave a deployment parked aside).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vlmctl_lifecycle::containers::{self, Managed};
use vlmctl_lifecycle::journal::{self, Journal};

use vlmctl_lifecycle::Engine;

use crate::DeployError;
use crate::plan::DeploymentPlan;
use crate::tune::journal::TuneJournal;

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

/// Pure: the drift of `m` against whichever of `plans` is for that container.
#[must_use]
pub fn drift_among(m: &Managed, plans: &[DeploymentPlan]) -> Drift {
    drift(m, plans.iter().find(|p| p.spec.name == m.name))
}

/// Pure: the drift of `m` against `plan` (when the plan is for that container).
#[must_use]
pub fn drift(m: &Managed, plan: Option<&DeploymentPlan>) -> Drift {
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
    /// `http://host:port` of its server, as clients on its host reach it (`None`: unknown).
    pub url: Option<String>,
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

/// A tune journal (`<state>/tunes/NAME.json`): a tune of that deployment is running, or one
/// died and left the deployment's container parked aside (`vlmctl restore` puts it back).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TuneState {
    /// A tune holds the deployment's tune lock now.
    Running {
        /// The deployment.
        deployment: String,
        /// The journal.
        path: PathBuf,
        /// Who holds the lock (pid, command, since).
        holder: String,
        /// Its content.
        journal: TuneJournal,
    },
    /// No tune holds the lock: one was interrupted (killed) before it put things back.
    Interrupted {
        /// The deployment.
        deployment: String,
        /// The journal.
        path: PathBuf,
        /// Its content.
        journal: TuneJournal,
    },
    /// Cannot be read: it may still name a parked container.
    Unreadable {
        /// The deployment (from the file's name).
        deployment: String,
        /// The journal.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

impl TuneState {
    /// What to do about it, in one sentence.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::Running { deployment, .. } => format!(
                "{deployment} is parked aside as {} until the tune ends; if that tune is stuck, stop it (Ctrl-C) and it puts {deployment} back, or `vlmctl restore` once it is gone",
                crate::tune::parked_name(deployment)
            ),
            Self::Interrupted { deployment, .. } => format!(
                "a tune of {deployment} died before it put things back: `vlmctl restore` puts                  {deployment} back"
            ),
            Self::Unreadable {
                deployment, path, ..
            } => format!(
                "check `docker ps -a` for {} and start it as {deployment}, then move {} aside; `vlmctl restore` refuses while it is there",
                crate::tune::parked_name(deployment),
                path.display()
            ),
        }
    }
}

/// What `status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Every container vlmctl created.
    pub containers: Vec<StatusRow>,
    /// The deployments asked about (`--spec`) that have no container at all: not running.
    pub missing: Vec<String>,
    /// Every journal under the state dir.
    pub journals: Vec<JournalState>,
    /// Every tune journal under the state dir.
    pub tunes: Vec<TuneState>,
}

/// Every tune journal under `state`: running (its lock held), interrupted, or unreadable.
#[must_use]
pub fn tunes(state: &Path) -> Vec<TuneState> {
    crate::tune::journal::all(state)
        .into_iter()
        .filter_map(|path| {
            let deployment = vlmctl_lifecycle::journal::deployment_of(&path);
            Some(match crate::tune::journal::read(&path) {
                Ok(Some(journal)) => {
                    // Probed by trying the tune's lock (released at once when free).
                    let lock = crate::tune::lock_name(&deployment);
                    match vlmctl_lifecycle::lockfile::try_acquire(state, &lock, "status") {
                        Err(vlmctl_lifecycle::LifecycleError::Busy { holder, .. }) => {
                            TuneState::Running {
                                deployment,
                                path,
                                holder,
                                journal,
                            }
                        }
                        _ => TuneState::Interrupted {
                            deployment,
                            path,
                            journal,
                        },
                    }
                }
                // Gone between the listing and the read: the tune just ended.
                Ok(None) => return None,
                Err(e) => TuneState::Unreadable {
                    deployment,
                    path,
                    error: vlmctl_base::chain::one_line(&e),
                },
            })
        })
        .collect()
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
                error: vlmctl_base::chain::one_line(&e),
                path,
            }),
        })
        .collect()
}

/// Every container vlmctl manages on `engine`'s host (running or not), without a `/health`
/// probe of each ([`status`] probes): what `teardown` names when the default deployment is not
/// there, and the service's list of what it may act on.
pub async fn managed(engine: &Engine) -> Result<Vec<Managed>, vlmctl_lifecycle::LifecycleError> {
    let docker = engine.connect().await?;
    containers::managed(&docker).await
}

/// Status of `engine`'s managed containers (drift judged against `plan` when given) and of the
/// journals in its state folder.
pub async fn status(engine: &Engine, plan: Option<&DeploymentPlan>) -> Result<Status, DeployError> {
    let plans: Vec<DeploymentPlan> = plan.into_iter().cloned().collect();
    status_of(engine, &plans).await
}

/// [`status`] with drift judged against each of `plans` (a deployment none of them names:
/// unknown), and a "not running" entry for each of them that has no container.
pub async fn status_of(engine: &Engine, plans: &[DeploymentPlan]) -> Result<Status, DeployError> {
    let state = engine.state_dir();
    let docker = engine.connect().await?;
    let mut rows = Vec::new();
    for m in containers::managed(&docker).await? {
        let health = match &m.endpoint {
            Some((host, port)) if m.state == "running" => match engine.reach(host, *port).await {
                Ok((h, p)) => containers::probe_health(&h, p).await,
                Err(_) => "unreachable (ssh forward failed)".to_owned(),
            },
            _ => "-".to_owned(),
        };
        let drift = drift_among(&m, plans);
        let url = m
            .endpoint
            .as_ref()
            .map(|(h, p)| vlmctl_lifecycle::spec::http_base(h, *p));
        rows.push(StatusRow {
            container: m,
            url,
            health,
            drift,
        });
    }
    Ok(Status {
        missing: missing(&rows, plans),
        containers: rows,
        journals: journals(state),
        tunes: tunes(state),
    })
}

/// Pure: the deployments of `plans` (in order, once each) that no row is for.
#[must_use]
pub fn missing(rows: &[StatusRow], plans: &[DeploymentPlan]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in plans {
        let name = &p.spec.name;
        if !rows.iter().any(|r| &r.container.name == name) && !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// [`status_of`] of every host at once (each an engine beside `engine`, sharing its pool and
/// base state folder), in the order given: a host that does not answer costs its own wait (up
/// to [`vlmctl_lifecycle::hosts::SSH_TIMEOUT`] for `ssh`), not one after another's.
pub async fn status_all(
    engine: &Engine,
    hosts: &[vlmctl_lifecycle::hosts::Host],
    plans: &[DeploymentPlan],
) -> Vec<Result<Status, DeployError>> {
    futures::future::join_all(hosts.iter().map(|h| async move {
        let on = engine.on(h.clone());
        status_of(&on, plans).await
    }))
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
            model: None,
            docker_health: None,
        }
    }

    #[test]
    fn drift_compares_both_hashes_of_the_same_deployment_only() {
        let plan = DeploymentPlan::fixture("L");
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
    fn a_deployment_asked_about_without_a_container_is_missing_once() {
        let plan = DeploymentPlan::fixture("L");
        let name = plan.spec.name.clone();
        let row = |n: &str| StatusRow {
            container: managed(n, None, None),
            url: None,
            health: "-".into(),
            drift: Drift::Unknown,
        };
        let plans = vec![plan.clone(), plan];
        assert_eq!(missing(&[row("other")], &plans), vec![name.clone()]);
        assert!(missing(&[row(&name)], &plans).is_empty());
        assert!(missing(&[row("other")], &[]).is_empty());
    }

    #[test]
    fn tune_journals_are_running_interrupted_or_unreadable() {
        use crate::tune::journal::{self as tj, TuneJournal, VERSION};
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path();
        let write = |d: &str| {
            tj::write(
                &tj::path(state, d),
                &TuneJournal {
                    version: VERSION,
                    deployment: d.into(),
                    original: None,
                    base_url: "http://127.0.0.1:9".into(),
                    health_timeout_s: 5,
                    created_unix: 1,
                },
            )
            .unwrap();
        };
        // Names no real deployment has: the host-wide lock is shared by the whole machine.
        let (busy, dead) = ("vlmctl-unit-tune-busy", "vlmctl-unit-tune-dead");
        write(busy);
        write(dead);
        std::fs::write(tj::path(state, "vlmctl-unit-tune-bad"), b"{ not json").unwrap();
        let _held =
            vlmctl_lifecycle::lockfile::try_acquire(state, &crate::tune::lock_name(busy), "tune")
                .unwrap();
        let got = tunes(state);
        let kind = |d: &str| {
            got.iter()
                .find_map(|t| match t {
                    TuneState::Running { deployment, .. } if deployment == d => Some("running"),
                    TuneState::Interrupted { deployment, .. } if deployment == d => {
                        Some("interrupted")
                    }
                    TuneState::Unreadable { deployment, .. } if deployment == d => {
                        Some("unreadable")
                    }
                    _ => None,
                })
                .unwrap_or("absent")
        };
        assert_eq!(kind(busy), "running", "{got:?}");
        assert_eq!(kind(dead), "interrupted", "{got:?}");
        assert_eq!(kind("vlmctl-unit-tune-bad"), "unreadable", "{got:?}");
        let dead_state = got
            .iter()
            .find(|t| matches!(t, TuneState::Interrupted { .. }))
            .unwrap();
        assert!(dead_state.hint().contains("`vlmctl restore`"));
        let json = serde_json::to_value(dead_state).unwrap();
        assert_eq!(json["state"], "interrupted");
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
