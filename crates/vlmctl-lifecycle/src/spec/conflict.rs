//! `[[conflict]]`: a container a deployment may stop (after confirmation, journalled), what
//! proves it alive again after it is restored (its check), and whether a teardown restarts it
//! (`restore`). Here the types and their parsing, with the line and field in every error; the
//! checks themselves run in the deploy crate (`liveness`), from what the journal recorded at
//! the stop, so that `vlmctl restore` needs no spec.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::check::{MAX_HEALTH_TIMEOUT_S, is_container_name};
use super::key_span;

/// Seconds a restored conflict's check may take to pass (its Docker health check to report
/// healthy, its HTTP probe to answer, its command to exit 0) when the spec says nothing.
pub const DEFAULT_CHECK_TIMEOUT_S: u64 = 60;

/// One `[[conflict]]` as the spec states it. Only the conflicts that state more than their name
/// are kept as rules ([`super::Spec::conflict_rules`]); the others take [`ConflictRule::plain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRule {
    /// Container name.
    pub name: String,
    /// Whether a teardown starts it again.
    #[serde(default)]
    pub restore: RestoreWhen,
    /// What proves it works once started again, beyond its Docker health check (always
    /// waited for when the container has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<ConflictCheck>,
    /// Seconds the checks may take to pass.
    #[serde(default = "default_check_timeout")]
    pub check_timeout_s: u64,
}

impl ConflictRule {
    /// The rule of a conflict that states nothing but its name (or of one stopped with
    /// `--stop NAME`): restored always, its Docker health check waited for if it has one.
    #[must_use]
    pub fn plain(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            restore: RestoreWhen::Always,
            check: None,
            check_timeout_s: DEFAULT_CHECK_TIMEOUT_S,
        }
    }

    fn is_plain(&self) -> bool {
        *self == Self::plain(&self.name)
    }
}

fn default_check_timeout() -> u64 {
    DEFAULT_CHECK_TIMEOUT_S
}

/// `restore = ...`: whether `teardown` starts a stopped conflict again. Every other undo (a
/// failed or interrupted run, `vlmctl restore` after a crash) always does: the world goes back
/// as it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreWhen {
    /// Always started again.
    #[default]
    Always,
    /// Asked at teardown ("was it production?"); `--yes` answers yes; without a terminal and
    /// without `--yes` it is left stopped (recorded; `vlmctl restore --start NAME` later).
    Ask,
    /// Left stopped at teardown (recorded; `vlmctl restore --start NAME` later).
    Never,
}

/// What proves a restored conflict alive, beside its Docker health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ConflictCheck {
    /// `GET url` answers `status`. The URL is the host's own (loopback, or an address of
    /// that host); the request is made from that host (through the SSH session under
    /// `--host`).
    Http {
        /// `http://host:port/path`.
        url: String,
        /// The status that means alive.
        status: u16,
    },
    /// A command run inside the container (`docker exec`) exits 0.
    Exec {
        /// The command and its arguments (no shell unless it names one).
        command: Vec<String>,
    },
}

impl std::fmt::Display for ConflictCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { url, status } => write!(f, "GET {url} answers {status}"),
            Self::Exec { command } => write!(f, "`{}` exits 0 in it", command.join(" ")),
        }
    }
}

/// A `[[conflict]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConflict {
    name: Spanned<toml::Value>,
    #[serde(default)]
    restore: Option<Spanned<toml::Value>>,
    #[serde(default)]
    check_http: Option<Spanned<toml::Value>>,
    #[serde(default)]
    check_status: Option<Spanned<toml::Value>>,
    #[serde(default)]
    check_exec: Option<Spanned<toml::Value>>,
    #[serde(default)]
    check_timeout_s: Option<Spanned<toml::Value>>,
}

/// An error: where (a span of the spec's text), which field, and what.
pub(super) type Bad = (std::ops::Range<usize>, String, String);

/// Parses the `[[conflict]]` tables: the names (unique, container names) and the rules of the
/// ones that state more than their name.
pub(super) fn parse_conflicts(
    text: &str,
    raw: Vec<Spanned<RawConflict>>,
) -> Result<(Vec<String>, Vec<ConflictRule>), Bad> {
    let mut names: Vec<String> = Vec::new();
    let mut rules = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let table = c.span();
        let c = c.into_inner();
        let field = |key: &str| format!("conflict[{i}].{key}");
        let at = |v: &Spanned<toml::Value>, key: &str| {
            if v.span().is_empty() {
                key_span(text, &table, key)
            } else {
                v.span()
            }
        };
        let name = match c.name.get_ref() {
            toml::Value::String(s) if is_container_name(s) => s.clone(),
            other => {
                return Err((
                    at(&c.name, "name"),
                    field("name"),
                    format!(
                        "{other}: not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, as \
                         `docker ps` shows it)"
                    ),
                ));
            }
        };
        if names.contains(&name) {
            return Err((
                at(&c.name, "name"),
                field("name"),
                format!("{name:?} is listed twice: one [[conflict]] per container"),
            ));
        }
        let restore = match &c.restore {
            None => RestoreWhen::Always,
            Some(v) => RestoreWhen::deserialize(v.get_ref().clone()).map_err(|_| {
                (
                    at(v, "restore"),
                    field("restore"),
                    format!(
                        "{}: expected \"always\" (teardown starts it again), \"ask\" (teardown \
                         asks; --yes answers yes) or \"never\" (left stopped, recorded)",
                        v.get_ref()
                    ),
                )
            })?,
        };
        let check_timeout_s = match &c.check_timeout_s {
            None => DEFAULT_CHECK_TIMEOUT_S,
            Some(v) => match v.get_ref() {
                toml::Value::Integer(n) if *n >= 1 && n.unsigned_abs() <= MAX_HEALTH_TIMEOUT_S => {
                    n.unsigned_abs()
                }
                other => {
                    return Err((
                        at(v, "check_timeout_s"),
                        field("check_timeout_s"),
                        format!(
                            "{other}: must be a whole number of seconds between 1 and \
                             {MAX_HEALTH_TIMEOUT_S} (default {DEFAULT_CHECK_TIMEOUT_S})"
                        ),
                    ));
                }
            },
        };
        let check = parse_check(&c, &at, &field)?;
        names.push(name.clone());
        let rule = ConflictRule {
            name,
            restore,
            check,
            check_timeout_s,
        };
        if !rule.is_plain() {
            rules.push(rule);
        }
    }
    Ok((names, rules))
}

/// `check_http` (+ `check_status`) or `check_exec`, at most one.
fn parse_check(
    c: &RawConflict,
    at: &dyn Fn(&Spanned<toml::Value>, &str) -> std::ops::Range<usize>,
    field: &dyn Fn(&str) -> String,
) -> Result<Option<ConflictCheck>, Bad> {
    if let (Some(_), Some(e)) = (&c.check_http, &c.check_exec) {
        return Err((
            at(e, "check_exec"),
            field("check_exec"),
            "one check per conflict: check_http or check_exec, not both".to_owned(),
        ));
    }
    if let (None, Some(s)) = (&c.check_http, &c.check_status) {
        return Err((
            at(s, "check_status"),
            field("check_status"),
            "check_status is the status check_http expects: set check_http too".to_owned(),
        ));
    }
    if let Some(u) = &c.check_http {
        let url = match u.get_ref() {
            toml::Value::String(s) => s.clone(),
            other => {
                return Err((
                    at(u, "check_http"),
                    field("check_http"),
                    format!(
                        "{other}: expected a URL string, e.g. \"http://127.0.0.1:8772/health\""
                    ),
                ));
            }
        };
        check_probe_url(&url).map_err(|why| (at(u, "check_http"), field("check_http"), why))?;
        let status = match &c.check_status {
            None => 200,
            Some(s) => match s.get_ref() {
                toml::Value::Integer(n) if (100..=599).contains(n) => {
                    u16::try_from(*n).unwrap_or(200)
                }
                other => {
                    return Err((
                        at(s, "check_status"),
                        field("check_status"),
                        format!(
                            "{other}: expected an HTTP status between 100 and 599 (default 200)"
                        ),
                    ));
                }
            },
        };
        return Ok(Some(ConflictCheck::Http { url, status }));
    }
    if let Some(e) = &c.check_exec {
        let command = match e.get_ref() {
            toml::Value::Array(a) if !a.is_empty() && a.len() <= 64 => a
                .iter()
                .map(|w| match w {
                    toml::Value::String(s)
                        if !s.is_empty() && s.len() <= 4096 && !s.contains('\0') =>
                    {
                        Some(s.clone())
                    }
                    _ => None,
                })
                .collect::<Option<Vec<String>>>(),
            _ => None,
        };
        let Some(command) = command else {
            return Err((
                at(e, "check_exec"),
                field("check_exec"),
                format!(
                    "{}: expected the command as a list of non-empty strings, e.g. \
                     [\"curl\", \"-fsS\", \"http://127.0.0.1:8772/health\"] (run inside the \
                     container with `docker exec`; it must exit 0)",
                    e.get_ref()
                ),
            ));
        };
        return Ok(Some(ConflictCheck::Exec { command }));
    }
    Ok(None)
}

/// A probe URL: `http://HOST:PORT/path` where HOST is loopback (`127.0.0.0/8`, `::1`,
/// `localhost`) or an IP address (checked to be the host's own when probed). No names (they
/// resolve elsewhere), no credentials, no https (the services probed are the host's own).
pub fn check_probe_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url:?}: expected http://HOST:PORT/path (plain HTTP to the host's own address)")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("{url:?}: no credentials in a probe URL"));
    }
    let (host, _, _) = probe_parts(url)
        .ok_or_else(|| format!("{url:?}: expected http://HOST:PORT/path with a port"))?;
    if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{url:?}: the host must be loopback (127.0.0.1, ::1, localhost) or one of the \
             host's own IP addresses, not a name that resolves elsewhere"
        ))
    }
}

/// `http://HOST:PORT/path` (HOST a name, an IPv4 address or `[v6]`) as (host, port, the rest
/// from the first `/`, `?` or `#`); `None` without `http://`, a host, or a numeric port above 0.
/// The one reading of a probe URL: the spec's check ([`check_probe_url`]) and the probe made
/// after a restore both use it.
#[must_use]
pub fn probe_parts(url: &str) -> Option<(&str, u16, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        r.split_once("]:")?
    } else {
        authority.rsplit_once(':')?
    };
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    (!host.is_empty()).then_some((host, port, path))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Spec;
    use super::*;

    fn spec(conflict: &str) -> Result<Spec, String> {
        let text = format!(
            "name = \"d\"\nimage = \"i:1\"\nmodel = \"m\"\n[server]\nhost = \"127.0.0.1\"\nport = 1\n\
             [[conflict]]\nname = \"a\"\n[[conflict]]\n{conflict}\n"
        );
        Spec::parse(&text, Path::new("docker/x.toml")).map_err(|e| e.to_string())
    }

    fn err(conflict: &str) -> String {
        spec(conflict).unwrap_err()
    }

    #[test]
    fn every_field_parses_and_plain_conflicts_keep_no_rule() {
        let s = spec(
            "name = \"chatterbox\"\nrestore = \"ask\"\ncheck_http = \"http://127.0.0.1:8772/health\"\n\
             check_status = 204\ncheck_timeout_s = 90",
        )
        .unwrap();
        assert_eq!(s.conflicts, ["a", "chatterbox"]);
        assert_eq!(
            s.conflict_rules,
            [ConflictRule {
                name: "chatterbox".into(),
                restore: RestoreWhen::Ask,
                check: Some(ConflictCheck::Http {
                    url: "http://127.0.0.1:8772/health".into(),
                    status: 204
                }),
                check_timeout_s: 90,
            }]
        );
        assert_eq!(s.conflict_rule("a"), ConflictRule::plain("a"));
        let s = spec("name = \"b\"\ncheck_exec = [\"sh\", \"-c\", \"true\"]").unwrap();
        assert_eq!(
            s.conflict_rule("b").check,
            Some(ConflictCheck::Exec {
                command: vec!["sh".into(), "-c".into(), "true".into()]
            })
        );
        // Stated but default: no rule, so the spec's hash is the one it had before rules.
        let s = spec("name = \"b\"\nrestore = \"always\"\ncheck_timeout_s = 60").unwrap();
        assert!(s.conflict_rules.is_empty());
    }

    #[test]
    fn bad_values_name_the_line_and_the_field() {
        // Line 10 is the second [[conflict]]'s first key.
        let cases = [
            (
                "name = \"b\"\ncheck_timeout_s = 0",
                "docker/x.toml:11: conflict[1].check_timeout_s: 0:",
            ),
            (
                "name = \"b\"\ncheck_timeout_s = -5",
                "docker/x.toml:11: conflict[1].check_timeout_s: -5:",
            ),
            (
                "name = \"b\"\ncheck_timeout_s = 99999999999999",
                "conflict[1].check_timeout_s: 99999999999999:",
            ),
            (
                "name = \"b\"\ncheck_timeout_s = \"60\"",
                "conflict[1].check_timeout_s: \"60\":",
            ),
            (
                "name = \"b\"\nrestore = \"sometimes\"",
                "docker/x.toml:11: conflict[1].restore:",
            ),
            ("name = \"b\"\nrestore = true", "conflict[1].restore: true:"),
            (
                "name = 5",
                "docker/x.toml:10: conflict[1].name: 5: not a container name",
            ),
            ("name = \"a\"", "conflict[1].name: \"a\" is listed twice"),
            (
                "name = \"b\"\ncheck_http = 8772",
                "conflict[1].check_http: 8772: expected a URL",
            ),
            (
                "name = \"b\"\ncheck_http = \"http://chatterbox.lan:8772/\"",
                "must be loopback",
            ),
            (
                "name = \"b\"\ncheck_http = \"https://127.0.0.1:1/\"",
                "expected http://",
            ),
            (
                "name = \"b\"\ncheck_http = \"http://127.0.0.1/\"",
                "with a port",
            ),
            (
                "name = \"b\"\ncheck_http = \"http://u:p@127.0.0.1:1/\"",
                "no credentials",
            ),
            (
                "name = \"b\"\ncheck_http = \"http://127.0.0.1:1/\"\ncheck_status = 0",
                "docker/x.toml:12: conflict[1].check_status: 0:",
            ),
            (
                "name = \"b\"\ncheck_http = \"http://127.0.0.1:1/\"\ncheck_status = 70000",
                "conflict[1].check_status: 70000",
            ),
            ("name = \"b\"\ncheck_status = 200", "set check_http too"),
            (
                "name = \"b\"\ncheck_exec = []",
                "conflict[1].check_exec: []:",
            ),
            (
                "name = \"b\"\ncheck_exec = \"true\"",
                "conflict[1].check_exec: \"true\":",
            ),
            (
                "name = \"b\"\ncheck_exec = [\"\"]",
                "conflict[1].check_exec:",
            ),
            (
                "name = \"b\"\ncheck_exec = [\"true\"]\ncheck_http = \"http://127.0.0.1:1/\"",
                "not both",
            ),
            ("name = \"b\"\ncheck = \"x\"", "unknown field `check`"),
        ];
        for (conflict, want) in cases {
            let got = err(conflict);
            assert!(got.contains(want), "{conflict:?}: {got}");
        }
    }

    #[test]
    fn probe_urls() {
        for ok in [
            "http://127.0.0.1:8772/health",
            "http://[::1]:80/",
            "http://localhost:1",
            "http://10.0.0.5:8772/h?x=1",
        ] {
            assert_eq!(check_probe_url(ok), Ok(()), "{ok}");
        }
        assert_eq!(probe_parts("http://[::1]:80"), Some(("::1", 80, "")));
        assert_eq!(probe_parts("http://127.0.0.1:0"), None);
        assert_eq!(probe_parts("http://127.0.0.1:x"), None);
        assert_eq!(
            probe_parts("http://10.0.0.5:8772/h?x=1"),
            Some(("10.0.0.5", 8772, "/h?x=1"))
        );
        assert_eq!(probe_parts("https://127.0.0.1:1/"), None);
    }
}
