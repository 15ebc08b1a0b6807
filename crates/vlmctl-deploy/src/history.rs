//! What the front-ends record into the history (`vlmctl-store`) beside a bench run or a job:
//! which deployment each of a plan's targets measured, and the name of this host.

use std::path::Path;

use vlmctl_bench::plan::Target;
use vlmctl_lifecycle::containers::{self, Managed};
use vlmctl_store::TargetLink;

/// The name runs and jobs on this machine are recorded under: its host name (the runbooks'
/// `panda`, `beast`), `local` when it cannot be read.
#[must_use]
pub fn host_name() -> String {
    // A job on another host (`--host beast`) is that host's.
    if let vlmctl_lifecycle::hosts::Host::Ssh { name, .. } = vlmctl_lifecycle::hosts::selected() {
        return name.clone();
    }
    vlmctl_lifecycle::hosts::machine_name().unwrap_or_else(|| "local".to_owned())
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

/// Pure: each target linked to the running managed container that serves its URL, if any.
#[must_use]
pub fn link(targets: &[Target], managed: &[Managed], state: &Path) -> Vec<TargetLink> {
    targets
        .iter()
        .map(|t| {
            let m = managed.iter().find(|m| {
                m.state == "running" && m.endpoint.as_ref().is_some_and(|e| serves(e, &t.url))
            });
            TargetLink {
                target: t.name.clone(),
                url: t.url.clone(),
                deployment: m.map(|m| m.name.clone()),
                spec_sha256: m.and_then(|m| m.spec_sha256.clone()),
                lock_sha256: m.and_then(|m| m.lock_sha256.clone()),
                model: m.and_then(|m| recorded_model(state, &m.name)),
            }
        })
        .collect()
}

/// The lock entry's name from the deployment's provision record, when there is one.
fn recorded_model(state: &Path, deployment: &str) -> Option<String> {
    let text = std::fs::read(crate::record::path(state, deployment)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v.get("model")?.as_str().map(str::to_owned)
}

/// [`link`] against the containers Docker lists now. Without a daemon the targets are recorded
/// with their URLs only: a bench needs no Docker, so neither does recording one.
/// A daemon that does not answer within [`LINK_TIMEOUT`] is not waited for (bollard's own
/// timeout is two minutes, which would hold the bench up only to label its record).
pub async fn link_targets(targets: &[Target], state: &Path) -> Vec<TargetLink> {
    let ask = async {
        match vlmctl_lifecycle::connect().await {
            Ok(d) => containers::managed(&d).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    };
    let managed = tokio::time::timeout(LINK_TIMEOUT, ask)
        .await
        .unwrap_or_default();
    link(targets, &managed, state)
}

/// How long [`link_targets`] asks Docker.
pub const LINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
