//! The `[server]` rules ([`check_server`]): `host` an IP address or a network interface's name,
//! an explicit port, loopback unless exposed on purpose with an API key (a variable or a key
//! file, never both, never the key as an argument), a valid variable name and key file path,
//! and `extra_args` through [`super::check::refused_extra_arg`].

use std::net::IpAddr;

use crate::LifecycleError;

use super::Server;
use super::check::{refused_extra_arg, shown_extra_arg};

/// `[server]` rules: an IP address, an explicit port, loopback unless exposed on purpose with
/// an API key, and never the key on the command line.
pub(super) fn check_server(
    server: &Server,
    expose: bool,
    invalid: &dyn Fn(&str, &str, String) -> LifecycleError,
) -> Result<(), LifecycleError> {
    let ip: Option<IpAddr> = server.host.parse().ok();
    if ip.is_none() && !is_interface_name(&server.host) {
        return Err(invalid(
            "host",
            "server.host",
            format!(
                "{:?} is not an IP address or a network interface's name (e.g. \"eth0\", \
                 resolved to its address when vlmctl runs)",
                server.host
            ),
        ));
    }
    // What the server would bind, in words: an interface's address is never loopback.
    let bound = ip.map_or_else(
        || format!("the address of interface {}", server.host),
        |ip| ip.to_string(),
    );
    if server.port == 0 {
        return Err(invalid(
            "port",
            "server.port",
            "port 0 is not allowed: give an explicit port".to_owned(),
        ));
    }
    if !ip.is_some_and(|ip| ip.is_loopback()) {
        if !expose {
            return Err(invalid(
                "host",
                "server.host",
                format!(
                    "binding {bound} exposes the server beyond this host; set `expose = true` and \
                 `server.api_key_env` (or `server.api_key_file`) to do that on purpose"
                ),
            ));
        }
        if server.api_key_source().is_none() {
            return Err(invalid(
                "host",
                "server.api_key_env",
                "`expose = true` needs an API key: name the environment variable that holds it \
                 (`api_key_env`), or a file with mode 0600 that does (`api_key_file`; `vlmctl \
                 key new --file PATH` makes one)"
                    .to_owned(),
            ));
        }
    }
    check_api_key_file(server, invalid)?;
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

/// Whether `name` can be a Linux network interface's name as `server.host` takes one: 1 to 15
/// characters (the kernel's `IFNAMSIZ` less its NUL) of letters, digits, `_`, `.` and `-`, not
/// starting with `-` or `.` (never read as an option or a path). An address alias's label
/// (`eth0:1`) is not an interface.
#[must_use]
pub fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `server.api_key_file`: not beside `api_key_env`, an absolute (or `~/`) path without control
/// characters.
fn check_api_key_file(
    server: &Server,
    invalid: &dyn Fn(&str, &str, String) -> LifecycleError,
) -> Result<(), LifecycleError> {
    if server.api_key_env.is_some() && server.api_key_file.is_some() {
        return Err(invalid(
            "api_key_file",
            "server.api_key_file",
            "give the API key one way: `api_key_env` (a variable) or `api_key_file` (a file), \
             not both"
                .to_owned(),
        ));
    }
    if let Some(file) = &server.api_key_file
        && !(file.starts_with('/') || file.starts_with("~/"))
    {
        return Err(invalid(
            "api_key_file",
            "server.api_key_file",
            format!(
                "{file:?} is not an absolute path: give the key file as /path or ~/path (it is \
                 read on the machine vlmctl runs on, whatever the working directory)"
            ),
        ));
    }
    if let Some(file) = &server.api_key_file
        && file.chars().any(char::is_control)
    {
        return Err(invalid(
            "api_key_file",
            "server.api_key_file",
            "a control character in the key file's path".to_owned(),
        ));
    }
    Ok(())
}
