//! What the front-ends record into the history (`vlmctl-store`) beside a bench run or a job:
//! which deployment each of a plan's targets measured on which host
//! ([`crate::targets::Placed::links`]), and the names hosts are recorded under.

use std::path::Path;

use vlmctl_bench::plan::Target;
use vlmctl_lifecycle::containers::Managed;
use vlmctl_lifecycle::hosts::Host;
use vlmctl_store::TargetLink;

/// The name runs and jobs of `engine`'s host are recorded under ([`name_of`]).
#[must_use]
pub fn host_name(engine: &vlmctl_lifecycle::Engine) -> String {
    name_of(engine.host())
}

/// The name a host's runs, jobs and bench targets are recorded under: another host's own
/// (`beast`, or its `ssh://` URL), this machine's host name for this machine (the runbooks'
/// `panda`), `local` when it cannot be read.
#[must_use]
pub fn name_of(host: &Host) -> String {
    match host {
        Host::Ssh { name, .. } => name.clone(),
        Host::Local => {
            vlmctl_lifecycle::hosts::machine_name().unwrap_or_else(|| "local".to_owned())
        }
    }
}

/// Pure: is a server listening on `endpoint` the one `url` reaches? Loopback names are one
/// address; a server bound to every address (`0.0.0.0`) answers on loopback too.
#[must_use]
pub fn serves(endpoint: &(String, u16), url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(port) = u.port_or_known_default() else {
        return false;
    };
    let loopback = |h: &str| matches!(h, "127.0.0.1" | "localhost" | "::1" | "[::1]");
    let host = u.host_str().unwrap_or_default();
    port == endpoint.1
        && (host == endpoint.0
            || (loopback(host) && (loopback(&endpoint.0) || endpoint.0 == "0.0.0.0")))
}

/// Pure: each target linked to the running managed container that serves its URL, if any,
/// on `host` (the host `managed` were listed on; `state` is its state folder).
#[must_use]
pub fn link(targets: &[Target], managed: &[Managed], state: &Path, host: &str) -> Vec<TargetLink> {
    targets
        .iter()
        .map(|t| {
            let m = managed.iter().find(|m| {
                m.state == "running" && m.endpoint.as_ref().is_some_and(|e| serves(e, &t.url))
            });
            link_one(t, m, state, host)
        })
        .collect()
}

/// Pure: one target linked to `m`, the managed container that serves it on `host` (`state`:
/// that host's state folder, where its provision records are).
#[must_use]
pub fn link_one(t: &Target, m: Option<&Managed>, state: &Path, host: &str) -> TargetLink {
    TargetLink {
        target: t.name.clone(),
        url: t.url.clone(),
        host: Some(host.to_owned()),
        deployment: m.map(|m| m.name.clone()),
        spec_sha256: m.and_then(|m| m.spec_sha256.clone()),
        lock_sha256: m.and_then(|m| m.lock_sha256.clone()),
        model: m.and_then(|m| recorded_model(state, &m.name)),
    }
}

/// The lock entry's name from the deployment's provision record, when there is one.
fn recorded_model(state: &Path, deployment: &str) -> Option<String> {
    let text = std::fs::read(crate::record::path(state, deployment)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v.get("model")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_served_by_the_endpoint_on_its_port_loopback_names_alike() {
        let e = |h: &str, p| (h.to_owned(), p);
        assert!(serves(&e("127.0.0.1", 18435), "http://127.0.0.1:18435"));
        assert!(serves(&e("127.0.0.1", 18435), "http://localhost:18435/"));
        assert!(serves(&e("0.0.0.0", 18435), "http://127.0.0.1:18435"));
        assert!(!serves(&e("127.0.0.1", 18436), "http://127.0.0.1:18435"));
        assert!(!serves(&e("10.0.0.2", 18435), "http://127.0.0.1:18435"));
        assert!(serves(&e("127.0.0.1", 80), "http://127.0.0.1"));
        assert!(!serves(&e("127.0.0.1", 80), "not a url"));
    }
}
