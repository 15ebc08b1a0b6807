//! Which engine the user named, as the docker CLI would pick it: `--host` (`local`, an
//! `ssh://` URL or a context's name), `DOCKER_HOST`, the current Docker context, else this
//! machine. Pure but for reading the docker CLI's configuration folder and its variables.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::host::{DEFAULT_SOCKET, Host, SshHost};
use crate::LifecycleError;

/// Pure: parses `ssh://[user@]host[:port]` (IPv6 in brackets); anything after the authority
/// (a path) is refused, as the docker CLI does.
pub fn parse_ssh(url: &str) -> Result<SshHost, LifecycleError> {
    let bad = |why: &str| LifecycleError::HostInvalid {
        value: url.to_owned(),
        why: why.to_owned(),
    };
    let rest = url
        .strip_prefix("ssh://")
        .ok_or_else(|| bad("an SSH host is ssh://[user@]host[:port]"))?;
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(bad("nothing may follow host[:port] (no path)"));
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    if let Some(u) = user
        && (u.is_empty() || u.contains(':') || u.starts_with('-'))
    {
        return Err(bad(
            "the user name is empty, has a password (user:pass), or starts with '-'",
        ));
    }
    // The address goes into ssh's command line and into hints a user copies into a shell:
    // letters, digits and `._-` (and `@+` in a user name) only, as OpenSSH >= 9.6 itself refuses
    // shell metacharacters in user and host names.
    if let Some(u) = user
        && !u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
    {
        return Err(bad(
            "the user name may have only letters, digits and . _ - @ + (no shell \
             metacharacters, spaces or control characters)",
        ));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing ']'"))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.starts_with('-') || host.chars().any(char::is_whitespace) {
        return Err(bad(
            "no host name, or one that starts with '-' or has spaces",
        ));
    }
    let v6 = hostport.starts_with('[');
    if !host.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (v6 && matches!(c, ':' | '%'))
    }) {
        return Err(bad(
            "a host name may have only letters, digits and . _ - (an IPv6 address goes in \
             [brackets]; no shell metacharacters)",
        ));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))
        })
        .transpose()?;
    Ok(SshHost {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
    })
}

/// A Docker context: its name and its engine's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    /// `docker context ls`'s NAME.
    pub name: String,
    /// Its docker endpoint (`ssh://...`, `unix://...`, `tcp://...`).
    pub endpoint: String,
}

/// The docker CLI's configuration folder: `DOCKER_CONFIG`, else `~/.docker`.
#[must_use]
pub fn docker_config_dir() -> PathBuf {
    std::env::var_os(vlmctl_base::env::DOCKER_CONFIG)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || {
                std::env::var_os(vlmctl_base::env::HOME)
                    .map_or_else(|| PathBuf::from("."), PathBuf::from)
                    .join(".docker")
            },
            PathBuf::from,
        )
}

/// Every context under `config/contexts/meta/*/meta.json` (those that do not parse are left
/// out), by name.
#[must_use]
pub fn contexts(config: &Path) -> Vec<Context> {
    let Ok(dirs) = std::fs::read_dir(config.join("contexts").join("meta")) else {
        return Vec::new();
    };
    let mut out: Vec<Context> = dirs
        .filter_map(Result::ok)
        .filter_map(|d| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.path().join("meta.json")).ok()?).ok()?;
            Some(Context {
                name: meta.get("Name")?.as_str()?.to_owned(),
                endpoint: meta
                    .get("Endpoints")?
                    .get("docker")?
                    .get("Host")?
                    .as_str()?
                    .to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The docker CLI's current context: `DOCKER_CONTEXT`, else `currentContext` in `config.json`.
#[must_use]
pub fn current_context(config: &Path) -> Option<String> {
    std::env::var(vlmctl_base::env::DOCKER_CONTEXT)
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(config.join("config.json")).ok()?).ok()?;
            v.get("currentContext")?.as_str().map(str::to_owned)
        })
        .filter(|c| c != "default")
}

/// Which engine, as the docker CLI would pick it: `--host` (`local`, `ssh://...`, or a
/// context's name), else `DOCKER_HOST`, else the current context, else this machine.
pub fn resolve(flag: Option<&str>, config: &Path) -> Result<Host, LifecycleError> {
    let from_endpoint = |name: &str, endpoint: &str| -> Result<Host, LifecycleError> {
        if endpoint.starts_with("ssh://") {
            Ok(Host::Ssh {
                name: name.to_owned(),
                target: parse_ssh(endpoint)?,
            })
        } else if endpoint == DEFAULT_SOCKET {
            Ok(Host::Local)
        } else {
            // Never this machine's engine in its place: a teardown or restore would act on
            // the wrong daemon.
            Err(LifecycleError::HostInvalid {
                value: format!("{name} ({endpoint})"),
                why: "only ssh:// hosts and this machine's engine can be named; for another \
                      engine set DOCKER_HOST to it and leave --host out"
                    .to_owned(),
            })
        }
    };
    if let Some(f) = flag.filter(|f| !f.is_empty()) {
        if f == "local" || f == "default" {
            return Ok(Host::Local);
        }
        if f.contains("://") {
            return from_endpoint(f, f);
        }
        let all = contexts(config);
        return match all.iter().find(|c| c.name == f) {
            Some(c) => from_endpoint(&c.name, &c.endpoint),
            None => Err(LifecycleError::HostUnknown {
                name: f.to_owned(),
                known: all.into_iter().map(|c| c.name).collect(),
            }),
        };
    }
    if let Some(h) = std::env::var(vlmctl_base::env::DOCKER_HOST)
        .ok()
        .filter(|h| !h.is_empty())
    {
        // Any other DOCKER_HOST (tcp://, another socket) is bollard's own to follow.
        return if h.starts_with("ssh://") {
            from_endpoint(&h, &h)
        } else {
            Ok(Host::Local)
        };
    }
    match current_context(config) {
        Some(name) => resolve(Some(&name), config),
        None => Ok(Host::Local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_parse_as_the_docker_cli_takes_them() {
        let p = |s: &str| parse_ssh(s);
        assert_eq!(
            p("ssh://root@127.0.0.1:2222").expect("ok"),
            SshHost {
                user: Some("root".into()),
                host: "127.0.0.1".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            p("ssh://beast").expect("ok"),
            SshHost {
                user: None,
                host: "beast".into(),
                port: None
            }
        );
        assert_eq!(
            p("ssh://me@[::1]:22").expect("ok").to_string(),
            "ssh://me@[::1]:22"
        );
        for bad in [
            "ssh://",
            "beast",
            "ssh://root@",
            "ssh://:22",
            "ssh://root@host:0",
            "ssh://root@host:70000",
            "ssh://root@host:x",
            "ssh://root:pw@host",
            "ssh://-oProxyCommand=x",
            "ssh://host/path",
            "ssh://[::1",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    /// F14 of the adversarial pass: a user or host name that a shell would run is refused at
    /// parse time (it would reach ssh's command line and the hints a user pastes).
    #[test]
    fn shell_metacharacters_in_user_and_host_names_are_refused() {
        for bad in [
            "ssh://$(touch${IFS}x)@127.0.0.1:22",
            "ssh://`id`@127.0.0.1",
            "ssh://a;b@127.0.0.1",
            "ssh://a'b@127.0.0.1",
            "ssh://a\"b@host",
            "ssh://a|b@host",
            "ssh://a&b@host",
            "ssh://a\nb@host",
            "ssh://me@$(id)",
            "ssh://me@ho;st:22",
            "ssh://me@host$x",
            "ssh://me@[::1;id]:22",
        ] {
            let err = parse_ssh(bad).expect_err(bad);
            assert!(
                matches!(err, LifecycleError::HostInvalid { .. }),
                "{bad}: {err:?}"
            );
        }
        for good in [
            "ssh://first.last@beast-01.lan",
            "ssh://me@[fe80::1%eth0]:22",
            "ssh://ci_user+x@host_1",
            "ssh://a@b@host",
        ] {
            parse_ssh(good).expect(good);
        }
    }

    #[test]
    fn contexts_are_read_from_the_docker_cli_folder() {
        let dir = std::env::temp_dir().join(format!("vlmctl-ctx-test-{}", std::process::id()));
        let meta = dir.join("contexts/meta/abc");
        std::fs::create_dir_all(&meta).expect("dir");
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"beast","Metadata":{},"Endpoints":{"docker":{"Host":"ssh://me@beast:2200","SkipTLSVerify":false}}}"#,
        )
        .expect("meta");
        std::fs::create_dir_all(dir.join("contexts/meta/broken")).expect("dir");
        std::fs::write(dir.join("contexts/meta/broken/meta.json"), "{").expect("meta");
        assert_eq!(
            contexts(&dir),
            vec![Context {
                name: "beast".into(),
                endpoint: "ssh://me@beast:2200".into()
            }]
        );
        assert_eq!(
            resolve(Some("beast"), &dir).expect("a context"),
            Host::Ssh {
                name: "beast".into(),
                target: SshHost {
                    user: Some("me".into()),
                    host: "beast".into(),
                    port: Some(2200)
                }
            }
        );
        assert_eq!(resolve(Some("local"), &dir).expect("local"), Host::Local);
        // Another engine than this machine's or an ssh:// one is refused, never taken for
        // this machine's.
        let desk = dir.join("contexts/meta/def");
        std::fs::create_dir_all(&desk).expect("dir");
        std::fs::write(
            desk.join("meta.json"),
            r#"{"Name":"desk","Endpoints":{"docker":{"Host":"unix:///run/user/1000/docker.sock"}}}"#,
        )
        .expect("meta");
        assert!(matches!(
            resolve(Some("desk"), &dir),
            Err(LifecycleError::HostInvalid { .. })
        ));
        assert!(matches!(
            resolve(Some("tcp://beast:2375"), &dir),
            Err(LifecycleError::HostInvalid { .. })
        ));
        match resolve(Some("titan"), &dir) {
            Err(LifecycleError::HostUnknown { known, .. }) => {
                assert_eq!(known, vec!["beast", "desk"]);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
