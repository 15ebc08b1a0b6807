//! Restored conflicts proven alive: after a restore (teardown, `vlmctl restore`, the undo of a
//! failed or interrupted run) every container that came back must still be running, its Docker
//! health check (when it has one) must report healthy, and the spec's check (an HTTP probe
//! made from the container's host, or a command run in it) must pass, all within the
//! conflict's `check_timeout_s`. The checks run at once, each polled until it passes or its
//! deadline; one failing never stops the others. Failures are kept in the journal (shown by
//! `status`, checked again by `vlmctl restore`) and end the command with
//! [`DeployError::ConflictCheckFailed`] (exit 12).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt as _;
use vlmctl_lifecycle::journal::{self, CheckOutcome, Restored, ToCheck};
use vlmctl_lifecycle::spec::{ConflictCheck, probe_parts};
use vlmctl_lifecycle::{Docker, Engine};

use crate::DeployError;

/// What to do about a restored container that is not proven alive.
pub const HINT: &str = "look at it (`docker logs NAME`, `docker inspect NAME`) and bring it back \
                        to work; `vlmctl restore` checks it again (exit 0 once it passes), and \
                        `vlmctl status` lists it until then";

impl DeployError {
    /// The hints of the conflicts' errors: a restored container not alive, a stop declined;
    /// an undone run's cause otherwise.
    pub(crate) fn conflict_hint(&self) -> Option<String> {
        match self {
            Self::Undone { undone, .. } if undone.failed_checks().next().is_some() => {
                Some(HINT.to_owned())
            }
            Self::Undone { cause, .. } => cause.hint(),
            Self::ConflictCheckFailed { .. } => Some(HINT.to_owned()),
            Self::Declined { name } => Some(format!(
                "answer y at the prompt, or pass --yes (stops what the spec's [[conflict]] \
                 tables list) or --stop {name}; to run beside it, take its [[conflict]] out of \
                 the spec"
            )),
            _ => None,
        }
    }
}

/// Pause between two tries of a check that did not pass yet.
const RETRY: Duration = Duration::from_millis(500);

/// Runs the checks of what `restored` lists ([`Restored::to_check`]), puts their outcomes in
/// `restored.checks` and keeps the failures in the journal `jpath` (a pass forgets an earlier
/// failure). A journal that cannot be written is said in `restored.journal_error`.
pub async fn check_restored(
    engine: &Engine,
    docker: &Docker,
    jpath: &Path,
    restored: &mut Restored,
) {
    if restored.to_check.is_empty() {
        return;
    }
    let targets = std::mem::take(&mut restored.to_check);
    let outcomes =
        futures::future::join_all(targets.iter().map(|t| check_one(engine, docker, t))).await;
    let checked: Vec<(ToCheck, CheckOutcome)> = targets.into_iter().zip(outcomes).collect();
    let deployment = journal::deployment_of(jpath);
    if let Err(e) = journal::record_checks(jpath, &deployment, &checked) {
        restored
            .journal_error
            .get_or_insert_with(|| vlmctl_base::chain::one_line(&e));
    }
    restored.checks = checked.into_iter().map(|(_, o)| o).collect();
}

/// The error for a restore whose checks failed (`None` when all passed). `done` says what the
/// command did otherwise (e.g. "removed panda-llamacpp-e4b").
#[must_use]
pub fn failure(restored: &Restored, done: String, journal: &Path) -> Option<DeployError> {
    let failed: Vec<CheckOutcome> = restored.failed_checks().cloned().collect();
    (!failed.is_empty()).then(|| DeployError::ConflictCheckFailed {
        failed,
        done,
        journal: journal.to_owned(),
    })
}

/// One container: running, healthy if it has a health check, and the spec's check, polled
/// until they pass or the deadline. Without either check it must stay running (not restarted)
/// for [`settle_window`]. Nothing in it can take much longer than `check_timeout_s`: each try
/// (an exec, a Docker call) is bounded by the time left, and the whole check by the timeout
/// and [`MARGIN`].
async fn check_one(engine: &Engine, docker: &Docker, t: &ToCheck) -> CheckOutcome {
    let started = Instant::now();
    let timeout = Duration::from_secs(t.check_timeout_s);
    let deadline = started + timeout;
    let mut what = "running".to_owned();
    let checks = async {
        let health = wait_healthy(docker, t, deadline).await?;
        if health {
            what.push_str(", Docker health check healthy");
        }
        if let Some(check) = &t.check {
            what = format!("{what}, {check}");
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let tried = tokio::time::timeout(left, probe(engine, docker, t, check))
                    .await
                    .unwrap_or_else(|_| Err(format!("timed out after {} s", t.check_timeout_s)));
                match tried {
                    Ok(()) => break,
                    Err(why) if Instant::now() + RETRY >= deadline => {
                        return Err(format!(
                            "{check}: not within {} s (last: {why})",
                            t.check_timeout_s
                        ));
                    }
                    Err(_) => tokio::time::sleep(RETRY).await,
                }
                // Still running? A crash loop is said as one.
                running(docker, t).await?;
            }
        } else if !health {
            let settle = settle_window(t.check_timeout_s);
            stays_running(docker, t, settle).await?;
            what = format!("running for {} s without a restart", settle.as_secs_f64());
        }
        Ok::<_, String>(())
    };
    let result = tokio::time::timeout(timeout + MARGIN, checks)
        .await
        .unwrap_or_else(|_| Err(format!("its check timed out after {} s", t.check_timeout_s)));
    CheckOutcome {
        name: t.name.clone(),
        what,
        passed: result.is_ok(),
        why: result.err(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Beyond `check_timeout_s`, what a check may take before it is cut off (a Docker call that
/// hangs, an exec that never ends).
const MARGIN: Duration = Duration::from_secs(2);

/// How long a restored container with neither a Docker health check nor a spec check must stay
/// running, not restarted, to count as alive: min(3 s, `check_timeout_s`). Short, so that a
/// restore stays quick, long enough to see a container that dies right after its start.
#[must_use]
pub fn settle_window(check_timeout_s: u64) -> Duration {
    Duration::from_secs(check_timeout_s.min(3))
}

/// Err when the container stops, or restarts (its start time or restart count changes), within
/// `settle` from now.
async fn stays_running(docker: &Docker, t: &ToCheck, settle: Duration) -> Result<(), String> {
    let until = Instant::now() + settle;
    let first = look(docker, t).await?.started;
    loop {
        let now = look(docker, t).await?.started;
        if now != first {
            return Err(format!(
                "restarted within {} s of its restore (restart count {} -> {}): it does not stay \
                 up",
                settle.as_secs_f64(),
                first.1,
                now.1
            ));
        }
        if Instant::now() >= until {
            return Ok(());
        }
        tokio::time::sleep(SETTLE_POLL.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

/// Pause between two looks during the settle window.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// A running container, as one inspect saw it.
struct Look {
    /// Its Docker health check's status, when it has one.
    health: Option<String>,
    /// Its start time and restart count.
    started: (String, i64),
}

/// Err when the container is not running (with its exit code and last log lines).
async fn running(docker: &Docker, t: &ToCheck) -> Result<Option<String>, String> {
    Ok(look(docker, t).await?.health)
}

/// One inspect of the container: Err when it is not running (with its exit code and last log
/// lines).
async fn look(docker: &Docker, t: &ToCheck) -> Result<Look, String> {
    let inspect = docker
        .inspect_container(&t.id, None)
        .await
        .map_err(|e| format!("cannot inspect it: {e}"))?;
    let started = (
        inspect
            .state
            .as_ref()
            .and_then(|s| s.started_at.clone())
            .unwrap_or_default(),
        inspect.restart_count.unwrap_or(0),
    );
    let state = inspect.state.unwrap_or_default();
    if !state.running.unwrap_or(false) {
        let logs = vlmctl_lifecycle::containers::log_tail(docker, &t.name, 5).await;
        return Err(format!(
            "not running ({}, exit code {}){}",
            state.status.map(|s| s.to_string()).unwrap_or_default(),
            state.exit_code.unwrap_or(-1),
            if logs.trim().is_empty() {
                String::new()
            } else {
                format!("; its log ends: {}", logs.trim())
            }
        ));
    }
    let has_check = inspect
        .config
        .and_then(|c| c.healthcheck)
        .and_then(|h| h.test)
        .is_some_and(|t| !t.is_empty() && t.first().is_some_and(|w| w != "NONE"));
    let health = has_check.then(|| {
        state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .unwrap_or_default()
    });
    Ok(Look { health, started })
}

/// Waits for the Docker health check to say healthy, when the container has one; returns
/// whether it has one.
async fn wait_healthy(docker: &Docker, t: &ToCheck, deadline: Instant) -> Result<bool, String> {
    loop {
        let Some(status) = running(docker, t).await? else {
            return Ok(false);
        };
        if status == "healthy" {
            return Ok(true);
        }
        if Instant::now() + RETRY >= deadline {
            return Err(format!(
                "its Docker health check says {status:?}, not healthy, after {} s",
                t.check_timeout_s
            ));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One try of the spec's check.
async fn probe(
    engine: &Engine,
    docker: &Docker,
    t: &ToCheck,
    check: &ConflictCheck,
) -> Result<(), String> {
    match check {
        ConflictCheck::Http { url, status } => http_probe(engine, url, *status).await,
        ConflictCheck::Exec { command } => exec_probe(docker, t, command).await,
    }
}

/// `GET url` from the container's host: directly on this machine (the address must be one
/// of its own), through the SSH session on another host (loopback only: this machine cannot
/// tell that host's addresses).
async fn http_probe(engine: &Engine, url: &str, want: u16) -> Result<(), String> {
    let (host, port, path) =
        probe_parts(url).ok_or_else(|| format!("{url}: not http://HOST:PORT/path"))?;
    own_address(engine, host)?;
    let (h, p) = engine
        .reach(host, port)
        .await
        .map_err(|e| vlmctl_base::chain::one_line(&e))?;
    let there = format!("{}{path}", vlmctl_lifecycle::spec::http_base(&h, p));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    match http.get(&there).send().await {
        Ok(r) if r.status().as_u16() == want => Ok(()),
        Ok(r) => Err(format!("answered {}", r.status())),
        Err(e) => Err(format!("no answer ({})", vlmctl_base::chain::one_line(&e))),
    }
}

/// Refuses an address that is not the host's own: loopback always is; another IP only on
/// this machine, where binding it proves it.
fn own_address(engine: &Engine, host: &str) -> Result<(), String> {
    if host == "localhost" {
        return Ok(());
    }
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("{host}: not an IP address"))?;
    if ip.is_loopback() {
        return Ok(());
    }
    if engine.is_remote() {
        return Err(format!(
            "{ip} is not loopback, and vlmctl cannot tell from here that it is {}'s own \
             address: probe a loopback URL, or use check_exec",
            engine.name()
        ));
    }
    std::net::TcpListener::bind((ip, 0))
        .map(drop)
        .map_err(|e| format!("{ip} is not an address of this host ({e}): probe its own address"))
}

/// `docker exec` of `command` in the container: exit 0 passes.
async fn exec_probe(docker: &Docker, t: &ToCheck, command: &[String]) -> Result<(), String> {
    let exec = docker
        .create_exec(
            &t.id,
            CreateExecOptions {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot exec in it: {e}"))?;
    let mut out = String::new();
    if let Ok(StartExecResults::Attached { mut output, .. }) =
        docker.start_exec(&exec.id, None).await
    {
        while let Some(Ok(chunk)) = output.next().await {
            if out.len() < 2000 {
                out.push_str(&chunk.to_string());
            }
        }
    }
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(|e| e.to_string())?
        .exit_code
        .unwrap_or(-1);
    if code == 0 {
        Ok(())
    } else {
        let out = out.trim();
        let tail: String = out
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(format!(
            "exited {code}{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        ))
    }
}
