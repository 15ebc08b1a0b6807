//! What a client of a deployment needs to reach it: the robot's settings (`NAV_VLLM_URL`,
//! `NAV_VLLM_MODEL`, the API key's variable and how it is sent), true for the client the spec
//! serves. `provision` and `relaunch` print them, `vlmctl client` prints them again for a
//! running deployment; both render them here, from the spec and the model id the server lists.
//!
//! Who can be a client follows from `server.host`: a loopback address serves clients on the
//! same host only (the settings say so, and the README shows the SSH tunnel a LAN client uses);
//! an interface address (`expose = true`) serves whoever reaches that address, with the key;
//! every address (`0.0.0.0`, `::`) leaves the address to the client. The key is never part of
//! the settings: they name where it is (`$VAR` or the key file) and the variable the client
//! keeps it in.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;
use vlmctl_lifecycle::spec::{ApiKeySource, Spec};

/// The client's variable for the server's `OpenAI` base URL (the runbook's robot reads it).
pub const URL_VAR: &str = "NAV_VLLM_URL";
/// The client's variable for the model name it sends.
pub const MODEL_VAR: &str = "NAV_VLLM_MODEL";
/// The client's variable for the API key, sent as `Authorization: Bearer $NAV_VLLM_API_KEY`.
pub const KEY_VAR: &str = "NAV_VLLM_API_KEY";

/// Who can reach the server at the address the spec binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Reach {
    /// Loopback: clients on the server's own host only (`host`: that host's name).
    SameHost {
        /// The host the server runs on.
        host: String,
    },
    /// An interface address: whoever can route to it.
    Address,
    /// Every address of the host: the client picks the one it reaches.
    AllAddresses,
}

/// A client's settings for one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSettings {
    /// `NAV_VLLM_URL`: the `OpenAI` base URL (`http://host:port/v1`).
    pub url: String,
    /// `NAV_VLLM_MODEL`: the model name, as `/v1/models` lists it.
    pub model: String,
    /// Who can use the URL.
    pub reach: Reach,
    /// Where the key is on the server's side (`$VAR` or `the key file PATH`), when the server
    /// needs one; the client keeps it in [`KEY_VAR`].
    pub key_from: Option<String>,
}

impl ClientSettings {
    /// The settings for `spec` serving `model` (the id `/v1/models` lists) on the host named
    /// `host` (as the history names it: this machine's name, or the `--host`).
    #[must_use]
    pub fn of(spec: &Spec, model: &str, host: &str) -> Self {
        let s = &spec.server;
        let ip: Option<IpAddr> = s.host.parse().ok();
        let (reach, addr) = match ip {
            Some(ip) if ip.is_loopback() => (
                Reach::SameHost {
                    host: host.to_owned(),
                },
                s.host.clone(),
            ),
            Some(ip) if ip.is_unspecified() => {
                (Reach::AllAddresses, "<this host's address>".to_owned())
            }
            _ => (Reach::Address, s.host.clone()),
        };
        Self {
            url: format!("{}/v1", vlmctl_lifecycle::spec::http_base(&addr, s.port)),
            model: model.to_owned(),
            reach,
            key_from: s.api_key_source().map(|k| match k {
                ApiKeySource::Env(var) => format!("${var}"),
                ApiKeySource::File(path) => format!("the key file {}", path.display()),
            }),
        }
    }

    /// The settings as `provision` prints them: a line saying which client they are for, then
    /// one `VAR=value` line each (the key's line names where it is, never its value) and how
    /// the key is sent.
    #[must_use]
    pub fn render(&self) -> String {
        let who = match &self.reach {
            Reach::SameHost { host } => format!(
                "for a client on {host} only: the server listens on its loopback; a client on \
                 another machine uses an SSH tunnel (README, \"Clients on other machines\") or \
                 a spec with `expose = true`"
            ),
            Reach::Address => "for a client that reaches this address (e.g. on the LAN)".to_owned(),
            Reach::AllAddresses => "the server listens on every address of its host: put the \
                                    one the client reaches in the URL"
                .to_owned(),
        };
        let key = if self.key_from.is_some() {
            "; every request needs the API key (401 without it)"
        } else {
            ""
        };
        let mut out = format!(
            "client settings ({who}{key}):\n{URL_VAR}={}\n{MODEL_VAR}={}",
            self.url, self.model
        );
        if let Some(from) = &self.key_from {
            let _ = write!(
                out,
                "\n{KEY_VAR}=<the API key in {from}; not shown>\nsend it as: Authorization: \
                 Bearer ${KEY_VAR}"
            );
        }
        out
    }

    /// The settings as the `--json` outputs give them: the client's variables by name (the
    /// key's as where it is), and who they are for.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let mut env = serde_json::Map::new();
        env.insert(URL_VAR.to_owned(), self.url.clone().into());
        env.insert(MODEL_VAR.to_owned(), self.model.clone().into());
        if let Some(from) = &self.key_from {
            env.insert(
                KEY_VAR.to_owned(),
                format!("<the API key in {from}>").into(),
            );
        }
        serde_json::json!({
            "env": env,
            "reach": self.reach,
            "api_key_from": self.key_from,
            "auth_header": self.key_from.as_ref().map(|_| format!("Authorization: Bearer ${KEY_VAR}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn spec(server: &str, expose: bool) -> Spec {
        let text = format!(
            "name = \"d\"\nimage = \"i\"\nmodel = \"m\"\nexpose = {expose}\n[server]\n{server}\nport = 11435\n"
        );
        Spec::parse(&text, Path::new("d.toml")).unwrap()
    }

    #[test]
    fn loopback_settings_say_they_are_for_the_same_host_and_name_no_key() {
        let s = ClientSettings::of(&spec("host = \"127.0.0.1\"", false), "m.gguf", "panda");
        let text = s.render();
        assert!(text.contains("for a client on panda only"), "{text}");
        assert!(text.contains("SSH tunnel"), "{text}");
        assert!(
            text.contains("\nNAV_VLLM_URL=http://127.0.0.1:11435/v1\n"),
            "{text}"
        );
        assert!(text.ends_with("\nNAV_VLLM_MODEL=m.gguf"), "{text}");
        assert!(!text.contains(KEY_VAR), "{text}");
    }

    #[test]
    fn an_exposed_address_gives_its_url_and_the_key_variable_never_the_key() {
        let s = ClientSettings::of(
            &spec(
                "host = \"192.0.2.10\"\napi_key_env = \"PANDA_VLM_KEY\"",
                true,
            ),
            "gemma-4-E2B-it-Q4_K_M.gguf",
            "panda",
        );
        let text = s.render();
        assert!(
            text.contains("NAV_VLLM_URL=http://192.0.2.10:11435/v1"),
            "{text}"
        );
        assert!(
            text.contains("NAV_VLLM_MODEL=gemma-4-E2B-it-Q4_K_M.gguf"),
            "{text}"
        );
        assert!(
            text.contains("NAV_VLLM_API_KEY=<the API key in $PANDA_VLM_KEY; not shown>"),
            "{text}"
        );
        assert!(
            text.contains("Authorization: Bearer $NAV_VLLM_API_KEY"),
            "{text}"
        );
        assert!(text.contains("401 without it"), "{text}");
        let file = ClientSettings::of(
            &spec("host = \"::\"\napi_key_file = \"/etc/k\"", true),
            "m",
            "panda",
        );
        assert_eq!(file.reach, Reach::AllAddresses);
        assert!(
            file.render()
                .contains("NAV_VLLM_URL=http://<this host's address>:11435/v1"),
            "{}",
            file.render()
        );
        assert_eq!(
            file.to_json()["env"]["NAV_VLLM_API_KEY"],
            "<the API key in the key file /etc/k>"
        );
    }
}
