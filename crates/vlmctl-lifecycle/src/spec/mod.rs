//! Deployment specs (`docker/*.toml`): parsed and validated into a [`Spec`] before any I/O, with
//! file, line and field in every error. This file holds the types; `parse` reads the TOML
//! (the `Raw*` twins with spans), `check` holds the rules (names, images, the refused
//! llama-server arguments), `server` the `[server]` rules (address, port, API key), `intent`
//! the `[model]` table, and `render` what derives from a validated spec (llama-server's
//! arguments, labels, the aimed health probe). The container itself is planned in
//! [`crate::containers::ContainerPlan`].

mod check;
mod conflict;
mod intent;
mod parse;
mod render;
mod server;

pub use check::{
    MAX_HEALTH_TIMEOUT_S, TUNE_PARKED_SUFFIX, is_container_name, refused_extra_arg, shown_extra_arg,
};
pub use conflict::{
    ConflictCheck, ConflictRule, DEFAULT_CHECK_TIMEOUT_S, RestoreWhen, check_probe_url, probe_parts,
};
pub use render::{HealthProbe, LLAMA_CPP_HEALTHCHECK, host_port, http_base};
pub use server::is_interface_name;

use serde::{Deserialize, Serialize};

/// Where a deployment's model files are, and what they are: the lock entry, resolved by the
/// caller (the weights crate is not a dependency of this one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelMount {
    /// Host directory mounted read-only at `/models`.
    pub dir: std::path::PathBuf,
    /// Model file, relative to `dir`.
    pub model_file: String,
    /// Vision projector, relative to `dir`, if the model has one.
    pub mmproj_file: Option<String>,
    /// sha256 of the lock entry, for the `org.vlmctl.lock-sha256` label.
    pub lock_sha256: String,
}

/// A validated deployment spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// `host` or `os/arch[/variant]`.
    pub platform: String,
    /// `weights.lock` entry mounted at `/models`.
    pub model: String,
    /// `[model]`: where the model comes from, when the spec says (pinned into the lock on first
    /// use); `None` for the `model = "name"` form, which names an entry already in the lock.
    /// Left out of the canonical form when absent, so that such specs keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_intent: Option<ModelIntent>,
    /// GPU request.
    pub gpus: Gpus,
    /// Docker restart policy.
    pub restart: RestartPolicy,
    /// The host's network, or a bridge publishing on the bind address only.
    pub network: Network,
    /// Whether binding a non-loopback address is allowed (needs an API key).
    pub expose: bool,
    /// llama-server settings.
    pub server: Server,
    /// Readiness.
    pub health: Health,
    /// Memory gate and ceiling.
    pub memory: Memory,
    /// Containers that may be stopped (with confirmation) and restored.
    pub conflicts: Vec<String>,
    /// What the `[[conflict]]` tables state beyond the name (a check after restore, whether a
    /// teardown restarts it), for the conflicts that state anything: [`Spec::conflict_rule`].
    /// Left out of the canonical form when empty, so that specs without any keep their hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflict_rules: Vec<ConflictRule>,
}

impl Spec {
    /// The rule for the container `name` stops: the spec's, else [`ConflictRule::plain`] (also
    /// for a container stopped with `--stop NAME` that the spec does not list).
    #[must_use]
    pub fn conflict_rule(&self, name: &str) -> ConflictRule {
        self.conflict_rules
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .unwrap_or_else(|| ConflictRule::plain(name))
    }
}

/// `[model]`: the files a deployment serves, named by their source: a hub repository, a
/// revision (branch, tag or commit) and file names. The lock entry `name` pins them (commit,
/// sizes, sha256) on first use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelIntent {
    /// Hub repository, `org/name`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    pub revision: String,
    /// The model file and, optionally, the vision projector.
    pub files: Vec<IntentFile>,
    /// Where the files live on the host (the lock entry's `dir`; `~/` is the home directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// One file of a [`ModelIntent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntentFile {
    /// Path in the repository (and in the model directory).
    pub path: String,
    /// What llama-server does with it: stated, else inferred from the name.
    pub role: FileRole,
}

/// What a model file is for (the lock's `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileRole {
    /// The language model (`--model`).
    Model,
    /// The vision projector (`--mmproj`).
    Mmproj,
}

impl FileRole {
    /// The role a file name implies, as `weights lock` infers it: a name containing "mmproj"
    /// is the projector.
    #[must_use]
    pub fn infer(path: &str) -> Self {
        if path.to_ascii_lowercase().contains("mmproj") {
            Self::Mmproj
        } else {
            Self::Model
        }
    }
}

/// Docker's restart policies, spelled as in `docker run --restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restarted.
    No,
    /// Always, also after a daemon restart.
    Always,
    /// Always, unless stopped by hand.
    UnlessStopped,
    /// When it exits non-zero.
    OnFailure,
}

impl RestartPolicy {
    /// The name `docker run --restart` takes.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Always => "always",
            Self::UnlessStopped => "unless-stopped",
            Self::OnFailure => "on-failure",
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the server's port lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network namespace: the server binds `server.host` itself.
    Host,
    /// Docker's bridge: the port is published on `server.host`.
    Bridge,
}

/// GPU request: `"all"`, `"none"`, a count, or device ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gpus {
    /// Every GPU (`--gpus all`).
    All,
    /// CPU only.
    None,
    /// This many GPUs.
    Count(u32),
    /// These device ids.
    Devices(Vec<String>),
}

/// `[server]`: becomes llama-server's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Bind address (`--host`): an IP address, or a network interface's name (`expose =
    /// true` only), which the deployment plan resolves to that interface's address on the
    /// machine vlmctl runs on, each time it runs (refused under `--host`).
    pub host: String,
    /// Port (`--port`), always explicit.
    pub port: u16,
    /// `--ctx-size`.
    #[serde(default = "default_ctx")]
    pub ctx_size: u32,
    /// `-ngl`.
    #[serde(default = "default_ngl")]
    pub n_gpu_layers: u32,
    /// `--jinja` (needed for `chat_template_kwargs`, i.e. to disable thinking).
    #[serde(default = "yes")]
    pub jinja: bool,
    /// `--threads`, when set.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Environment variable holding the API key (this or `api_key_file` is required with
    /// `expose = true` and on a bridge network).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A file holding the API key, instead of `api_key_env`: an absolute path or one under
    /// `~/`, on the machine vlmctl runs on, readable by its owner only (mode 0600 or 0400;
    /// `vlmctl key new --file PATH` makes one). Left out of the canonical form when unset, so
    /// that specs written before it keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<String>,
    /// Appended verbatim.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// Where a spec's API key comes from: `server.api_key_env` or `server.api_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// This environment variable of whoever runs vlmctl.
    Env(String),
    /// This file (`~/` already expanded).
    File(std::path::PathBuf),
}

impl std::fmt::Display for ApiKeySource {
    /// `$VAR`, or `the key file PATH`: where the key is, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(var) => write!(f, "${var}"),
            Self::File(path) => write!(f, "the key file {}", path.display()),
        }
    }
}

impl Server {
    /// The network interface `host` names, when it names one instead of an address.
    #[must_use]
    pub fn interface(&self) -> Option<&str> {
        self.host
            .parse::<std::net::IpAddr>()
            .is_err()
            .then_some(self.host.as_str())
    }

    /// Where the API key comes from, if the spec names one (`api_key_file` under `~/` is
    /// resolved against `$HOME`).
    #[must_use]
    pub fn api_key_source(&self) -> Option<ApiKeySource> {
        if let Some(var) = &self.api_key_env {
            return Some(ApiKeySource::Env(var.clone()));
        }
        self.api_key_file.as_ref().map(|f| {
            ApiKeySource::File(match f.strip_prefix("~/") {
                Some(rest) => std::path::PathBuf::from(
                    std::env::var_os(vlmctl_base::env::HOME).unwrap_or_default(),
                )
                .join(rest),
                None => std::path::PathBuf::from(f),
            })
        })
    }
}

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Seconds to wait for `/health` to answer 200.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Free GPU memory needed before launch.
    #[serde(default)]
    pub need_free_mib: Option<u64>,
    /// Ceiling for the server process's GPU memory after launch.
    #[serde(default)]
    pub max_process_mib: Option<u64>,
    /// Floor for the server process's GPU memory after launch (proof that the model is on the
    /// GPU); unset: 80 % of the locked files' sizes; 0: no floor, the server's log decides.
    /// Left out of the canonical form when unset, so that specs written before it keep their
    /// hash (and a relaunch finds their container unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_process_mib: Option<u64>,
}

fn default_ctx() -> u32 {
    4096
}
fn default_ngl() -> u32 {
    999
}
fn yes() -> bool {
    true
}
fn default_timeout() -> u64 {
    120
}

/// The span of `key = ...` in the table that starts at `table` (toml spans a table by its
/// header): searched up to the next table header. The table's span if the key is absent.
pub(super) fn key_span(
    text: &str,
    table: &std::ops::Range<usize>,
    key: &str,
) -> std::ops::Range<usize> {
    let body = text.get(table.start..).unwrap_or("");
    let mut offset = 0;
    for (i, line) in body.split_inclusive('\n').enumerate() {
        let t = line.trim_start();
        if i > 0 && t.starts_with('[') {
            break;
        }
        if t.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='))
        {
            let start = table.start + offset;
            return start..start + line.len();
        }
        offset += line.len();
    }
    table.clone()
}

#[cfg(test)]
mod intent_tests;
#[cfg(test)]
mod tests;
