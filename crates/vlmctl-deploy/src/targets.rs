//! Where a bench plan's targets are, for every front-end that runs plans (`vlmctl bench`, plain
//! and sweep, and the service's queue).
//!
//! Each target's server runs on a host: the target's `host` (what `--host` takes: `local`, a
//! Docker context's name, `ssh://[user@]host[:port]`), else the default host (`bench --host`,
//! else this machine). Its URL is the one the plan wrote, as that host sees it, or, for a
//! target that names a `deployment`, the one of that deployment's container there (its labels
//! and `--host`/`--port`, as `status` finds them). A loopback URL on another host is reached
//! through a local SSH forward ([`Engine::reach`]); the results and the history name the URL
//! as the host sees it, never the forward's port ([`Placed::restore`]).
//!
//! [`check`] is pure (names, before any I/O); [`place`] asks each host's engine once and opens
//! the forwards, so that a deployment missing or stopped, or a host that cannot be reached, is
//! an error naming the plan's line before any request is sent.

use std::path::Path;
use std::time::Duration;

use vlmctl_bench::BenchError;
use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::run::Results;
use vlmctl_lifecycle::containers::{self, Managed};
use vlmctl_lifecycle::hosts::{self, Host};
use vlmctl_lifecycle::{Engine, LifecycleError};
use vlmctl_store::TargetLink;

use crate::DeployError;
use crate::history;
pub use crate::types::{DeploymentProblem, Unmeasurable};

/// How long [`place`] waits for a host's engine that no target needs (it only says which
/// deployment a URL is, for the history): a bench needs no Docker, so neither does recording
/// one, and bollard's own timeout is two minutes.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Pure (but for reading the Docker contexts in `docker_config`): each target's host, its
/// `host` as `--host` would take it, else `default`; and the name of each deployment a target
/// names, checked. Errors name the plan's line, as [`LoadedPlan::load`]'s do.
pub fn check(
    plan: &LoadedPlan,
    default: &Host,
    docker_config: &Path,
) -> Result<Vec<Host>, BenchError> {
    let mut out = Vec::new();
    for (i, t) in plan.plan.targets.iter().enumerate() {
        let lines = plan.lines_of(i);
        if let Some(d) = &t.deployment
            && !vlmctl_lifecycle::spec::is_container_name(d)
        {
            return Err(plan.invalid(
                lines.deployment,
                format!(
                    "target.deployment: {d:?} (target {:?}) is not a deployment name \
                     ([a-zA-Z0-9][a-zA-Z0-9_.-]*, a container's name); name one as its spec's \
                     `name` says (`vlmctl status` lists them)",
                    t.name
                ),
            ));
        }
        let host = match &t.host {
            None => default.clone(),
            Some(h) => hosts::resolve(Some(h), docker_config).map_err(|e| {
                plan.invalid(
                    lines.host,
                    format!("target.host: target {:?}: {e}; {}", t.name, plan_hint(&e)),
                )
            })?,
        };
        out.push(host);
    }
    Ok(out)
}

/// What to write instead of a host the plan names that is none.
fn plan_hint(e: &LifecycleError) -> String {
    match e {
        LifecycleError::HostUnknown { known, .. } => format!(
            "{}; add one with `docker context create NAME --docker host=ssh://user@host`, or \
             write host = \"ssh://[user@]host[:port]\"",
            if known.is_empty() {
                "there are no Docker contexts".to_owned()
            } else {
                format!("the Docker contexts are: {}", known.join(", "))
            }
        ),
        other => other.hint(),
    }
}

/// Pure: `http://HOST:PORT` for a server listening on `endpoint`, as its host reaches it; one
/// bound to every address is reached on loopback.
#[must_use]
pub fn endpoint_url(endpoint: &(String, u16)) -> String {
    let host = match endpoint.0.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    vlmctl_lifecycle::spec::http_base(host, endpoint.1)
}

/// Pure: whether it is `https`, host, port and path of an `http://` or `https://` URL on a
/// loopback address (127.x, `localhost`, `[::1]`; the scheme's port when it names none): the
/// URLs that are another host's own, reached through a forward (a TLS server too: its
/// certificate names the same loopback address at both ends).
#[must_use]
pub fn loopback_endpoint(url: &str) -> Option<(bool, String, u16, String)> {
    let (https, rest, default) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest, 443),
        None => (false, url.strip_prefix("http://")?, 80),
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |k| rest.split_at(k));
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default), |p| p.parse().ok())?;
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (authority.to_owned(), default),
        }
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| (https, host, port, path.to_owned()))
}

/// One target, placed.
#[derive(Debug, Clone)]
pub struct Place {
    /// The host its server runs on.
    pub host: Host,
    /// The container vlmctl manages that serves it there: the deployment it names, or the one
    /// found listening on its URL's port (`None`: none, or that host's engine did not answer
    /// within [`LINK_TIMEOUT`]).
    pub deployment: Option<Managed>,
    /// Measured through a local forward (`aimed`'s URL differs from `seen`'s).
    pub forwarded: bool,
}

/// A plan's targets placed: what to measure, and what to record.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The plan as each target's host sees it: every URL filled in (a deployment's from its
    /// container). What the history records as the plan.
    pub seen: LoadedPlan,
    /// The plan to measure: each loopback URL on another host aimed at a local SSH forward.
    pub aimed: LoadedPlan,
    /// Per target, in the plan's order.
    pub places: Vec<Place>,
}

impl Placed {
    /// Per target, which deployment it measures on which host, for the history; the model from
    /// that host's provision record (its state folder under `base_state`).
    #[must_use]
    pub fn links(&self, base_state: &Path) -> Vec<TargetLink> {
        self.seen
            .plan
            .targets
            .iter()
            .zip(&self.places)
            .map(|(t, p)| {
                history::link_one(
                    t,
                    p.deployment.as_ref(),
                    &p.host.state_dir(base_state),
                    &history::name_of(&p.host),
                )
            })
            .collect()
    }

    /// Results measured from [`Self::aimed`], made to say what the hosts see: each target's URL
    /// as its host sees it (never a forward's port, in the targets and in the plan), its host
    /// and its deployment.
    pub fn restore(&self, results: &mut Results) {
        for (i, (t, p)) in self.seen.plan.targets.iter().zip(&self.places).enumerate() {
            if let Some(r) = results.targets.get_mut(i) {
                r.url.clone_from(&t.url);
                r.host = Some(history::name_of(&p.host));
                r.deployment = p.deployment.as_ref().map(|m| m.name.clone());
            }
            if let Some(r) = results.plan.targets.get_mut(i) {
                r.url.clone_from(&t.url);
            }
        }
    }

    /// A preflight error about a forwarded target, made to name the URL as its host sees it
    /// and the forward it was asked through.
    #[must_use]
    pub fn explain(&self, e: BenchError) -> BenchError {
        match e {
            BenchError::Unreachable { target, url, why } => {
                let i = self
                    .aimed
                    .plan
                    .targets
                    .iter()
                    .position(|t| t.name == target);
                let url = match i.map(|i| (&self.seen.plan.targets[i], &self.places[i])) {
                    Some((seen, p)) if p.forwarded => format!(
                        "{} on host {} (through the SSH forward {url})",
                        seen.url,
                        p.host.name()
                    ),
                    _ => url,
                };
                BenchError::Unreachable { target, url, why }
            }
            other => other,
        }
    }
}

/// Places every target of `plan` ([`check`], then each host's engine asked once, then the
/// forwards), before any request: a deployment that is not on its host or not running, or a
/// host that cannot be reached, is an error naming the target's line. `default` is the engine
/// of the targets that name no host; another host's is built beside it (its pool shared).
pub async fn place(
    plan: &LoadedPlan,
    default: &Engine,
    docker_config: &Path,
) -> Result<Placed, DeployError> {
    let on = check(plan, default.host(), docker_config)?;
    let listed = list(plan, &on, default).await?;
    let mut seen = plan.clone();
    let mut aimed = plan.clone();
    let mut places = Vec::new();
    for (i, host) in on.iter().enumerate() {
        let managed = listed
            .iter()
            .find(|(h, _)| h == host)
            .and_then(|(_, m)| m.as_deref())
            .unwrap_or_default();
        let (url, deployment) = locate(plan, i, host, managed)?;
        let mut through = url.clone();
        let mut forwarded = false;
        if let (Host::Ssh { .. }, Some((https, h, p, path))) = (host, loopback_endpoint(&url)) {
            let (lh, lp) = engine_on(default, host)
                .reach(&h, p)
                .await
                .map_err(|e| unreachable(plan, i, host, e))?;
            let base = vlmctl_lifecycle::spec::http_base(&lh, lp);
            through = if https {
                format!("https{}{path}", base.trim_start_matches("http"))
            } else {
                format!("{base}{path}")
            };
            forwarded = true;
        }
        seen.plan.targets[i].url = url;
        aimed.plan.targets[i].url = through;
        places.push(Place {
            host: host.clone(),
            deployment,
            forwarded,
        });
    }
    Ok(Placed {
        seen,
        aimed,
        places,
    })
}

/// `host`'s engine: `default` itself, or one beside it sharing its pool.
fn engine_on(default: &Engine, host: &Host) -> Engine {
    if default.host() == host {
        default.clone()
    } else {
        default.on(host.clone())
    }
}

/// The managed containers of each host in `on` (once per host): required where a target names
/// a deployment there (a host that cannot be reached is then an error), else only said for the
/// history's links, and not waited for beyond [`LINK_TIMEOUT`].
async fn list(
    plan: &LoadedPlan,
    on: &[Host],
    default: &Engine,
) -> Result<Vec<(Host, Option<Vec<Managed>>)>, DeployError> {
    let mut listed: Vec<(Host, Option<Vec<Managed>>)> = Vec::new();
    for host in on {
        if listed.iter().any(|(h, _)| h == host) {
            continue;
        }
        let needed_by = plan
            .plan
            .targets
            .iter()
            .zip(on)
            .position(|(t, h)| h == host && t.deployment.is_some());
        let managed = if let Some(k) = needed_by {
            let docker = engine_on(default, host)
                .connect()
                .await
                .map_err(|e| unreachable(plan, k, host, e))?;
            Some(
                containers::managed(&docker)
                    .await
                    .map_err(|e| unreachable(plan, k, host, e))?,
            )
        } else {
            let ask = async {
                let docker = engine_on(default, host).connect().await.ok()?;
                containers::managed(&docker).await.ok()
            };
            tokio::time::timeout(LINK_TIMEOUT, ask).await.ok().flatten()
        };
        listed.push((host.clone(), managed));
    }
    Ok(listed)
}

/// Pure: target `i`'s URL as `host` sees it and the managed container serving it there, from
/// that host's `managed` containers: the deployment it names (which must run there), or the
/// one listening on its URL's port.
fn locate(
    plan: &LoadedPlan,
    i: usize,
    host: &Host,
    managed: &[Managed],
) -> Result<(String, Option<Managed>), DeployError> {
    let t = &plan.plan.targets[i];
    let Some(name) = &t.deployment else {
        let serving = managed.iter().find(|m| {
            m.state == "running"
                && m.endpoint
                    .as_ref()
                    .is_some_and(|e| history::serves(e, &t.url))
        });
        return Ok((t.url.clone(), serving.cloned()));
    };
    let m = deployment_on(managed, name).map_err(|problem| {
        DeployError::TargetDeployment(Box::new(Unmeasurable {
            plan: plan.path.clone(),
            line: plan.lines_of(i).deployment,
            target: t.name.clone(),
            deployment: name.clone(),
            host: host.name().to_owned(),
            problem,
        }))
    })?;
    let url = m.endpoint.as_ref().map(endpoint_url).unwrap_or_default();
    Ok((url, Some(m.clone())))
}

/// Target `i`'s host could not be reached.
fn unreachable(plan: &LoadedPlan, i: usize, host: &Host, e: LifecycleError) -> DeployError {
    DeployError::TargetHost {
        plan: plan.path.clone(),
        line: host_line(plan, i),
        target: plan.plan.targets[i].name.clone(),
        host: host.name().to_owned(),
        source: Box::new(e),
    }
}

/// The line to blame for target `i`'s host: its `host`, else the target's own (the default
/// host is the command line's).
fn host_line(plan: &LoadedPlan, i: usize) -> usize {
    let lines = plan.lines_of(i);
    if plan.plan.targets[i].host.is_some() {
        lines.host
    } else {
        lines.table
    }
}

/// Pure: the running deployment `name` among a host's managed containers, or why it cannot be
/// measured.
pub fn deployment_on<'a>(
    managed: &'a [Managed],
    name: &str,
) -> Result<&'a Managed, DeploymentProblem> {
    let m = managed
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| DeploymentProblem::Missing {
            known: managed.iter().map(|m| m.name.clone()).collect(),
        })?;
    if m.state != "running" {
        return Err(DeploymentProblem::NotRunning {
            state: m.state.clone(),
            status: m.status.clone(),
        });
    }
    if m.endpoint.is_none() {
        return Err(DeploymentProblem::NoEndpoint);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use vlmctl_bench::run::{Environment, TargetResult};

    use super::*;
    use std::path::PathBuf;

    /// A plan file in a temp folder with these `[[target]]` tables (prompts beside it), loaded.
    fn load(targets: &str) -> (tempfile::TempDir, LoadedPlan) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("prompts")).expect("prompts");
        for f in ["nav", "nav-short"] {
            std::fs::write(dir.path().join(format!("prompts/{f}.txt")), f).expect("prompt");
        }
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, format!("version = 1\ndescribe = false\n{targets}")).expect("plan");
        let plan = LoadedPlan::load(&path).expect("loads");
        (dir, plan)
    }

    /// A Docker config folder with a context `beast` at `ssh://me@beast:2222`.
    fn contexts() -> tempfile::TempDir {
        let config = tempfile::tempdir().expect("config");
        let meta = config.path().join("contexts/meta/0123");
        std::fs::create_dir_all(&meta).expect("meta");
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"beast","Metadata":{},"Endpoints":{"docker":{"Host":"ssh://me@beast:2222","SkipTLSVerify":false}}}"#,
        )
        .expect("meta.json");
        config
    }

    fn beast() -> Host {
        Host::Ssh {
            name: "beast".into(),
            target: hosts::parse_ssh("ssh://me@beast:2222").expect("ssh url"),
        }
    }

    #[test]
    fn each_target_is_on_its_host_or_the_default() {
        let config = contexts();
        let (_d, plan) = load(
            "[[target]]\nname = \"here\"\nurl = \"http://127.0.0.1:1\"\n\
             [[target]]\nname = \"ctx\"\ndeployment = \"beast-e4b\"\nhost = \"beast\"\n\
             [[target]]\nname = \"url\"\nurl = \"http://127.0.0.1:2\"\nhost = \"ssh://root@10.0.0.2:22\"\n\
             [[target]]\nname = \"local\"\ndeployment = \"panda-llamacpp\"\nhost = \"local\"\n",
        );
        let on = check(&plan, &Host::Local, config.path()).expect("valid");
        assert_eq!(on[0], Host::Local, "no host: the default");
        assert_eq!(on[1], beast(), "a Docker context's name");
        assert!(
            matches!(&on[2], Host::Ssh { name, target } if name == "ssh://root@10.0.0.2:22" && target.port == Some(22))
        );
        assert_eq!(on[3], Host::Local, "local, whatever the default");
        // --host beast: the default of the targets that name none, and only of those.
        let on = check(&plan, &beast(), config.path()).expect("valid");
        assert_eq!((&on[0], &on[3]), (&beast(), &Host::Local));
    }

    #[test]
    fn a_bad_host_or_deployment_name_is_a_plan_error_at_its_line() {
        let config = contexts();
        let cases = [
            (
                "host = \"ssh://root@h:0\"",
                "target.host: target \"a\": \"ssh://root@h:0\" is not a host: the port is not a \
                 number from 1 to 65535; write a host as ssh://[user@]host[:port], or name a \
                 Docker context (`docker context ls`), or `local`",
            ),
            (
                "host = \"ssh://-oProxyCommand=x\"",
                "target.host: target \"a\": \"ssh://-oProxyCommand=x\" is not a host: no host \
                 name, or one that starts with '-'",
            ),
            (
                "host = \"ssh://beast/var/run\"",
                "target.host: target \"a\": \"ssh://beast/var/run\" is not a host: nothing may \
                 follow host[:port]",
            ),
            (
                "host = \"ssh://root:pw@beast\"",
                "target.host: target \"a\": \"ssh://root:pw@beast\" is not a host: the user name \
                 is empty, has a password",
            ),
            (
                "host = \"tcp://beast:2375\"",
                "target.host: target \"a\": \"tcp://beast:2375 (tcp://beast:2375)\" is not a \
                 host: only ssh:// hosts and this machine's engine can be named",
            ),
            (
                "host = \"titan\"",
                "target.host: target \"a\": no host \"titan\": it is neither `local`, an ssh:// \
                 address, nor a Docker context; the Docker contexts are: beast; add one with \
                 `docker context create NAME --docker host=ssh://user@host`, or write host = \
                 \"ssh://[user@]host[:port]\"",
            ),
        ];
        for (line, want) in cases {
            // `host` on line 6: version, describe, [[target]], name, deployment, host.
            let (_d, plan) = load(&format!(
                "[[target]]\nname = \"a\"\ndeployment = \"d\"\n{line}\n"
            ));
            let err = check(&plan, &Host::Local, config.path()).expect_err(line);
            assert!(
                matches!(err, BenchError::PlanInvalid { line: 6, .. }),
                "{err:?}"
            );
            let got = err.to_string();
            let want = format!("{}:6: {want}", plan.path.display());
            assert!(got.starts_with(&want), "{line}: want {want:?} in {got:?}");
        }
        let (_d, plan) = load("[[target]]\nname = \"a\"\n\ndeployment = \"my server\"\n");
        let got = check(&plan, &Host::Local, config.path())
            .expect_err("not a name")
            .to_string();
        assert!(
            got.contains(
                ":6: target.deployment: \"my server\" (target \"a\") is not a deployment name"
            ),
            "{got}"
        );
    }

    fn managed(name: &str, state: &str, endpoint: Option<(&str, u16)>) -> Managed {
        Managed {
            name: name.into(),
            state: state.into(),
            status: if state == "running" {
                "Up 3 hours"
            } else {
                "Exited (0) 3 hours ago"
            }
            .into(),
            image: "i".into(),
            spec_sha256: Some("s".repeat(64)),
            lock_sha256: Some("l".repeat(64)),
            endpoint: endpoint.map(|(h, p)| (h.to_owned(), p)),
            model: None,
            docker_health: None,
        }
    }

    #[test]
    fn a_deployment_is_found_running_with_an_endpoint_or_said_why_not() {
        let there = [
            managed("panda-llamacpp", "running", Some(("127.0.0.1", 11435))),
            managed("old", "exited", Some(("127.0.0.1", 1))),
            managed("odd", "running", None),
        ];
        assert_eq!(
            deployment_on(&there, "panda-llamacpp").map(|m| &m.name),
            Ok(&"panda-llamacpp".to_owned())
        );
        let missing = deployment_on(&there, "nope").expect_err("not there");
        assert_eq!(
            missing.text("nope", "beast"),
            "no deployment \"nope\" on host beast (vlmctl manages panda-llamacpp, old, odd there)"
        );
        assert!(missing.is_plan_error());
        assert!(
            missing
                .hint("beast")
                .contains("`vlmctl status --host beast` lists")
        );
        assert_eq!(
            deployment_on(&[], "nope")
                .expect_err("none there")
                .text("nope", "local"),
            "no deployment \"nope\" on host local (vlmctl manages none there)"
        );
        let stopped = deployment_on(&there, "old").expect_err("exited");
        assert_eq!(
            stopped.text("old", "beast"),
            "deployment \"old\" on host beast is exited (Exited (0) 3 hours ago): nothing to measure"
        );
        assert!(!stopped.is_plan_error());
        assert!(
            stopped
                .hint("beast")
                .contains("vlmctl relaunch --host beast")
        );
        assert_eq!(
            deployment_on(&there, "odd"),
            Err(DeploymentProblem::NoEndpoint)
        );
    }

    #[test]
    fn an_endpoint_is_a_url_as_its_host_reaches_it() {
        let e = |h: &str, p| endpoint_url(&(h.to_owned(), p));
        assert_eq!(e("127.0.0.1", 18435), "http://127.0.0.1:18435");
        assert_eq!(
            e("0.0.0.0", 8080),
            "http://127.0.0.1:8080",
            "every address: loopback"
        );
        assert_eq!(e("", 8080), "http://127.0.0.1:8080");
        assert_eq!(e("::", 8080), "http://[::1]:8080");
        assert_eq!(e("::1", 8080), "http://[::1]:8080");
        assert_eq!(e("10.0.0.2", 8080), "http://10.0.0.2:8080");
    }

    #[test]
    fn loopback_targets_are_the_ones_forwarded() {
        let e = |h: &str, p, path: &str| Some((false, h.to_owned(), p, path.to_owned()));
        let tls = |h: &str, p, path: &str| Some((true, h.to_owned(), p, path.to_owned()));
        assert_eq!(
            loopback_endpoint("http://127.0.0.1:18435"),
            e("127.0.0.1", 18435, "")
        );
        assert_eq!(
            loopback_endpoint("http://localhost/v1"),
            e("localhost", 80, "/v1")
        );
        assert_eq!(loopback_endpoint("http://[::1]:8080"), e("::1", 8080, ""));
        assert_eq!(loopback_endpoint("http://10.0.0.2:18435"), None);
        assert_eq!(
            loopback_endpoint("https://127.0.0.1:8443/v1"),
            tls("127.0.0.1", 8443, "/v1")
        );
        assert_eq!(
            loopback_endpoint("https://localhost"),
            tls("localhost", 443, "")
        );
        assert_eq!(loopback_endpoint("https://[::1]"), tls("::1", 443, ""));
        assert_eq!(loopback_endpoint("https://10.0.0.2:8443"), None);
        assert_eq!(loopback_endpoint("ftp://127.0.0.1:21"), None);
        assert_eq!(loopback_endpoint("http://127.0.0.1:x"), None);
    }

    /// Two targets as [`place`] leaves them: `a` by URL on this machine, `b` the deployment
    /// `beast-e4b` on beast, measured through a forward at local port 40123.
    fn placed() -> (tempfile::TempDir, Placed) {
        let (dir, plan) = load(
            "[[target]]\nname = \"a\"\nurl = \"http://10.0.0.5:8080\"\n\
             [[target]]\nname = \"b\"\ndeployment = \"beast-e4b\"\nhost = \"beast\"\n",
        );
        let mut seen = plan.clone();
        seen.plan.targets[1].url = "http://127.0.0.1:11435".into();
        let mut aimed = seen.clone();
        aimed.plan.targets[1].url = "http://127.0.0.1:40123".into();
        let places = vec![
            Place {
                host: Host::Local,
                deployment: None,
                forwarded: false,
            },
            Place {
                host: beast(),
                deployment: Some(managed("beast-e4b", "running", Some(("127.0.0.1", 11435)))),
                forwarded: true,
            },
        ];
        (
            dir,
            Placed {
                seen,
                aimed,
                places,
            },
        )
    }

    #[test]
    fn results_and_links_name_what_the_hosts_see_never_the_forward() {
        let (_d, p) = placed();
        let target = |t: &vlmctl_bench::plan::Target| TargetResult {
            name: t.name.clone(),
            backend: t.backend,
            url: t.url.clone(),
            host: t.host.clone(),
            deployment: t.deployment.clone(),
            server_info: serde_json::Value::Null,
            models: serde_json::Value::Null,
            describe_answer: None,
            describe_error: None,
            configs: Vec::new(),
        };
        // What the run wrote, measuring `aimed`.
        let mut results = Results {
            format: vlmctl_bench::run::FORMAT.into(),
            started_unix: 0,
            plan: p.aimed.plan.clone(),
            plan_sha256: String::new(),
            prompt_sha256: std::collections::BTreeMap::new(),
            image_sha256: String::new(),
            environment: Environment {
                arch: "x86_64".into(),
                cpu: None,
                gpu: None,
                vlmctl: "0".into(),
            },
            targets: p.aimed.plan.targets.iter().map(target).collect(),
            sweep: Vec::new(),
        };
        p.restore(&mut results);
        let b = &results.targets[1];
        assert_eq!(b.url, "http://127.0.0.1:11435", "beast's own address");
        assert_eq!(
            (b.host.as_deref(), b.deployment.as_deref()),
            (Some("beast"), Some("beast-e4b"))
        );
        assert_eq!(results.plan.targets[1].url, "http://127.0.0.1:11435");
        assert_eq!(
            results.plan.targets[1].deployment.as_deref(),
            Some("beast-e4b")
        );
        assert!(
            !serde_json::to_string(&results)
                .expect("json")
                .contains("40123"),
            "the forward's port is recorded nowhere"
        );
        let a = &results.targets[0];
        assert_eq!(a.url, "http://10.0.0.5:8080");
        assert_eq!(a.host, Some(history::name_of(&Host::Local)));
        assert_eq!(a.deployment, None);

        let base = PathBuf::from("/nonexistent/state");
        let links = p.links(&base);
        assert_eq!(links[1].url, "http://127.0.0.1:11435");
        assert_eq!(links[1].host.as_deref(), Some("beast"));
        assert_eq!(links[1].deployment.as_deref(), Some("beast-e4b"));
        assert_eq!(links[1].spec_sha256, Some("s".repeat(64)));
        assert_eq!(
            (links[0].deployment.as_deref(), links[0].url.as_str()),
            (None, "http://10.0.0.5:8080")
        );
    }

    #[test]
    fn a_target_silent_through_a_forward_is_named_as_its_host_sees_it() {
        let (_d, p) = placed();
        let e = p.explain(BenchError::Unreachable {
            target: "b".into(),
            url: "http://127.0.0.1:40123".into(),
            why: "connection refused".into(),
        });
        assert_eq!(
            e.to_string(),
            "target b does not answer at http://127.0.0.1:11435 on host beast (through the SSH \
             forward http://127.0.0.1:40123): connection refused"
        );
        let e = p.explain(BenchError::Unreachable {
            target: "a".into(),
            url: "http://10.0.0.5:8080".into(),
            why: "timed out".into(),
        });
        assert_eq!(
            e.to_string(),
            "target a does not answer at http://10.0.0.5:8080: timed out",
            "a target reached directly is left as it is"
        );
    }

    #[tokio::test]
    async fn a_host_name_is_checked_before_any_engine_is_asked() {
        // An unknown context: refused without a connection to anything.
        let config = contexts();
        let (_d, plan) = load("[[target]]\nname = \"a\"\ndeployment = \"d\"\nhost = \"titan\"\n");
        let err = place(&plan, &Engine::local(config.path()), config.path())
            .await
            .expect_err("no such host");
        assert!(
            matches!(
                &err,
                DeployError::Bench(BenchError::PlanInvalid { line: 6, .. })
            ),
            "{err:?}"
        );
    }
}
