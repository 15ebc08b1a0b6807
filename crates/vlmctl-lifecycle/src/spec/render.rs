//! What derives from a validated spec, purely: its hash, llama-server's arguments, the labels,
//! URLs, and the image's health check aimed at the server's port.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use sha2::{Digest, Sha256};

#[allow(clippy::wildcard_imports)]
use super::*;

/// `http://host:port`, with an IPv6 address in brackets.
#[must_use]
pub fn http_base(host: &str, port: u16) -> String {
    format!("http://{}", host_port(host, port))
}

/// `host:port`, with an IPv6 address in brackets (`[::1]:11435`), as URLs and `docker -p` want.
#[must_use]
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Spec {
    /// sha256 of the canonical form (comments and formatting do not count), for the
    /// `org.vlmctl.spec-sha256` label that makes relaunch idempotent.
    #[must_use]
    pub fn sha256(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }

    /// llama-server's arguments: model and projector under `/models`, explicit host and port.
    #[must_use]
    pub fn server_args(&self, mount: &ModelMount) -> Vec<String> {
        let s = &self.server;
        let mut args = vec![
            "--model".to_owned(),
            format!("/models/{}", mount.model_file),
        ];
        if let Some(mm) = &mount.mmproj_file {
            args.extend(["--mmproj".to_owned(), format!("/models/{mm}")]);
        }
        // On the host network the server binds the spec's address itself. On a bridge network
        // it has a namespace of its own, where loopback is unreachable from the host: it listens
        // on every address *inside* the container, and the published port binding (on
        // `server.host` only) decides who can reach it.
        let bind = if self.network == Network::Host {
            s.host.clone()
        } else {
            "0.0.0.0".to_owned()
        };
        args.extend([
            "--host".to_owned(),
            bind,
            "--port".to_owned(),
            s.port.to_string(),
            "--ctx-size".to_owned(),
            s.ctx_size.to_string(),
            "-ngl".to_owned(),
            s.n_gpu_layers.to_string(),
        ]);
        if s.jinja {
            args.push("--jinja".to_owned());
        }
        if let Some(t) = s.threads {
            args.extend(["--threads".to_owned(), t.to_string()]);
        }
        if alias_in(&s.extra_args).is_none() {
            args.extend(["--alias".to_owned(), self.served_model(mount)]);
        }
        args.extend(s.extra_args.iter().cloned());
        args
    }

    /// The model name clients send and `/v1/models` lists: the model file's own name
    /// (`gemma-4-E2B-it-Q4_K_M.gguf`, as the runbook's client sends it), which vlmctl passes
    /// as `--alias`; or the first name of an `--alias` in `extra_args`. Without an alias
    /// llama-server lists the path it loaded (`/models/...gguf`); it serves a request whatever
    /// its `model` says (one model per server), but a client that checks `/v1/models` or the
    /// answer's `model` needs the name to match.
    #[must_use]
    pub fn served_model(&self, mount: &ModelMount) -> String {
        if let Some(alias) = alias_in(&self.server.extra_args) {
            return alias;
        }
        mount
            .model_file
            .rsplit('/')
            .next()
            .unwrap_or(&mount.model_file)
            .to_owned()
    }

    /// Labels put on the container.
    #[must_use]
    pub fn labels(&self, mount: &ModelMount) -> BTreeMap<String, String> {
        BTreeMap::from([
            (crate::MANAGED_LABEL.to_owned(), "true".to_owned()),
            (crate::SPEC_LABEL.to_owned(), self.sha256()),
            (crate::LOCK_LABEL.to_owned(), mount.lock_sha256.clone()),
            (crate::NAME_LABEL.to_owned(), self.name.clone()),
        ])
    }
}

/// The first name of an `-a`/`--alias` in `extra_args` (llama.cpp takes a comma-separated
/// list; `/v1/models` lists the first as the model's id).
fn alias_in(extra_args: &[String]) -> Option<String> {
    let at = extra_args
        .iter()
        .position(|a| matches!(a.trim(), "-a" | "--alias"))?;
    let names = extra_args.get(at + 1)?;
    names
        .split(',')
        .map(str::trim)
        .find(|n| !n.is_empty())
        .map(str::to_owned)
}

/// The `HEALTHCHECK` of llama.cpp's published server images (its `.devops/*.Dockerfile`): it
/// probes port 8080 whatever `--port` says (llama.cpp issue 10262).
pub const LLAMA_CPP_HEALTHCHECK: [&str; 4] = ["CMD", "curl", "-f", "http://localhost:8080/health"];

/// What Docker's health check of a deployment's container is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HealthProbe {
    /// The image's own check, its URL aimed at the server's port and address: Docker's
    /// `test` (`CMD ...` or `CMD-SHELL ...`).
    Probe(Vec<String>),
    /// The image checks something we cannot aim at the server (no URL in it): switched off
    /// (`NONE`), because a check of the wrong port reports "unhealthy" for ever and restart
    /// tooling that trusts it would kill a healthy server.
    Disabled,
    /// The image has no check: none is added (only the image knows what tools it carries).
    None,
}

impl Spec {
    /// Pure: the image's health check (`image_test`, Docker's `Healthcheck.Test`), its URL
    /// pointed at this server's port: on the host network at `server.host`, on a bridge at the
    /// container's loopback (where the server listens on every address).
    #[must_use]
    pub fn health_probe(&self, image_test: Option<&[String]>) -> HealthProbe {
        let Some(test) = image_test.filter(|t| {
            t.first()
                .is_some_and(|k| matches!(k.as_str(), "CMD" | "CMD-SHELL"))
        }) else {
            return HealthProbe::None;
        };
        let host = if self.network == Network::Host {
            self.server.host.as_str()
        } else {
            "127.0.0.1"
        };
        let authority = host_port(host, self.server.port);
        let mut aimed = false;
        let probe = test
            .iter()
            .map(|part| {
                let (aimed_part, n) = aim_urls(part, &authority);
                aimed |= n > 0;
                aimed_part
            })
            .collect();
        if aimed {
            HealthProbe::Probe(probe)
        } else {
            HealthProbe::Disabled
        }
    }
}

/// Every `http://` URL in `text` (any case) with its host and port replaced by `authority`;
/// the path, query and what follows are kept, and so is a `user:pass@`. Returns the text and
/// how many URLs it rewrote.
pub(super) fn aim_urls(text: &str, authority: &str) -> (String, usize) {
    const SCHEME: &str = "http://";
    let mut out = String::new();
    let mut rest = text;
    let mut n = 0;
    while let Some(at) = rest.to_ascii_lowercase().find(SCHEME) {
        let after = &rest[at + SCHEME.len()..];
        // Host and port are made of these (`${VAR}` included); anything else ends them.
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || ".-_:[]@%${}".contains(c)))
            .unwrap_or(after.len());
        let userinfo = after[..end].rfind('@').map_or("", |i| &after[..=i]);
        let _ = write!(out, "{}{SCHEME}{userinfo}{authority}", &rest[..at]);
        rest = &after[end..];
        n += 1;
    }
    out.push_str(rest);
    (out, n)
}
