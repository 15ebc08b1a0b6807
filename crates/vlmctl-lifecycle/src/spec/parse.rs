//! Reading a spec: the `Raw*` twins of the types with the spans that give every error its line,
//! their serde defaults, and [`Spec::load`]/[`Spec::parse`], which run the checks of
//! [`super::check`] and [`super::intent`].

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::LifecycleError;

use super::check::{check_deployment_name, check_image};
use super::conflict::{RawConflict, parse_conflicts};
use super::intent::parse_model;
use super::server::check_server;
#[allow(clippy::wildcard_imports)]
use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
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

pub(super) fn host_platform() -> Spanned<String> {
    Spanned::new(0..0, "host".to_owned())
}
pub(super) fn gpus_all() -> Spanned<toml::Value> {
    Spanned::new(0..0, toml::Value::String("all".to_owned()))
}
pub(super) fn restart_default() -> Spanned<toml::Value> {
    Spanned::new(0..0, toml::Value::String("unless-stopped".to_owned()))
}
pub(super) fn network_default() -> Spanned<toml::Value> {
    Spanned::new(0..0, toml::Value::String("host".to_owned()))
}
pub(super) const MIN_FIELD: &str = "memory.min_process_mib";

/// `[memory]`, checked: a floor above the ceiling is one no server could pass.
pub(super) fn memory(
    text: &str,
    raw: Spanned<Memory>,
) -> Result<Memory, (std::ops::Range<usize>, String)> {
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

pub(super) fn memory_default() -> Spanned<Memory> {
    Spanned::new(0..0, Memory::default())
}
pub(super) fn health_default() -> Spanned<Health> {
    Spanned::new(
        0..0,
        Health {
            timeout_s: default_timeout(),
        },
    )
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
        if network == Network::Bridge && server.api_key_source().is_none() {
            return Err(invalid(
                raw.network.span(),
                "network",
                "on a bridge network the server listens on the container's own address, which \
                 every other container on that network can reach whatever `server.host` says: \
                 name an API key (`server.api_key_env` or `server.api_key_file`), or use \
                 network = \"host\""
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
        let (conflicts, conflict_rules) =
            parse_conflicts(text, raw.conflict).map_err(|(at, field, m)| invalid(at, &field, m))?;
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
            conflicts,
            conflict_rules,
        })
    }
}

pub(super) fn parse_gpus(v: &toml::Value) -> Result<Gpus, String> {
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
