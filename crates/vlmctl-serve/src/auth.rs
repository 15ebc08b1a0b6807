//! Who may talk to the service.
//!
//! - On loopback (the default) anyone on this machine may; but a request must name a loopback
//!   host in `Host` (a web page elsewhere that resolves its own name to 127.0.0.1, DNS
//!   rebinding, is refused), and an action (POST) must come as JSON without a foreign `Origin`
//!   (a cross-site form cannot send `application/json` without the browser asking first).
//! - On any other address, as llama-server's `--api-key` does: every request needs the key,
//!   as `Authorization: Bearer KEY`, or as the password of HTTP Basic (what a browser asks for).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::{App, ServeError};
use vlmctl_deploy::plan::MIN_API_KEY_LEN;

/// Pure: may the service listen on `addr` with `key`?
pub fn check_exposure(addr: SocketAddr, key: Option<&str>) -> Result<(), ServeError> {
    match key {
        Some(k) if k.chars().count() < MIN_API_KEY_LEN => Err(ServeError::WeakKey {
            min: MIN_API_KEY_LEN,
        }),
        None if !addr.ip().is_loopback() => Err(ServeError::ExposedWithoutKey { addr }),
        _ => Ok(()),
    }
}

/// Pure: `Host` names a loopback host (any port), and nothing else: the value is parsed as an
/// authority by `http`, and anything after the host name but a numeric port is refused: junk
/// after `[::1]` (`[::1]evil.example`), a user part (`127.0.0.1:80@evil.example`, whose host is
/// `evil.example`), a port that is not a number.
#[must_use]
pub fn loopback_host(host: &str) -> bool {
    let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    let name = authority.host();
    // What follows the host name must be a port and nothing else (`http` stops the host at
    // `]`, and takes a user part before `@`).
    let Some(rest) = authority.as_str().strip_prefix(name) else {
        return false;
    };
    let port_only = rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !port_only {
        return false;
    }
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Pure: do the headers carry `key`?
#[must_use]
pub fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return same(token.trim().as_bytes(), key.as_bytes());
    }
    if let Some(b64) = value.strip_prefix("Basic ") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let password = raw
            .iter()
            .position(|&c| c == b':')
            .map_or(&raw[..0], |i| &raw[i + 1..]);
        return same(password, key.as_bytes());
    }
    false
}

fn refuse(status: StatusCode, message: &str, basic: bool) -> Response {
    let mut r = crate::ApiError {
        status,
        message: message.to_owned(),
        hint: None,
    }
    .into_response();
    if basic {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"vlmctl\", charset=\"UTF-8\""),
        );
    }
    r
}

/// Pure: may this POST act? Only a JSON body (a cross-site form cannot send one without the
/// browser asking first, which this service never answers) and no `Origin` other than the
/// request's own host: with or without an API key, because a browser that has the key (typed
/// at its Basic prompt) sends it along with a foreign page's form too.
pub fn post_allowed(headers: &HeaderMap) -> Result<(), &'static str> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let foreign = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.split_once("://").map_or(o, |(_, h)| h) != host);
    if !json {
        Err("actions take a JSON body (Content-Type: application/json)")
    } else if foreign {
        Err("actions are taken only from this service's own pages (the Origin is another site)")
    } else {
        Ok(())
    }
}

/// The middleware in front of every route.
pub async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(key) = app.cfg.api_key.as_deref() {
        if !authorized(headers, key) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this vlmctl serve needs its API key (Authorization: Bearer KEY)",
                true,
            );
        }
    } else {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !loopback_host(host) {
            return refuse(
                StatusCode::FORBIDDEN,
                "this vlmctl serve answers loopback names only (Host: 127.0.0.1 or localhost)",
                false,
            );
        }
    }
    if req.method() == Method::POST
        && let Err(why) = post_allowed(headers)
    {
        return refuse(StatusCode::FORBIDDEN, why, false);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds_need_no_key_others_a_long_one() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(check_exposure(a("127.0.0.1:8787"), None).is_ok());
        assert!(check_exposure(a("[::1]:8787"), None).is_ok());
        assert!(matches!(
            check_exposure(a("0.0.0.0:8787"), None),
            Err(ServeError::ExposedWithoutKey { .. })
        ));
        assert!(matches!(
            check_exposure(a("0.0.0.0:8787"), Some("short")),
            Err(ServeError::WeakKey { .. })
        ));
        assert!(check_exposure(a("0.0.0.0:8787"), Some("0123456789abcdef")).is_ok());
    }

    #[test]
    fn hosts_are_loopback_names_only() {
        for h in [
            "127.0.0.1:8787",
            "localhost:1",
            "[::1]:8787",
            "localhost",
            "127.0.0.2",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8787",
            "",
            "10.0.0.1:80",
            "localhost.evil:80",
            "[::2]:1",
            "127.evil.example:80",
            "[::1]evil.example",
            "[::1]evil.example:80",
            "127.0.0.1:80@evil.example",
            "localhost@evil.example",
            "127.0.0.1:http",
            "127.0.0.1 evil",
            "127.0.0.1:",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn a_post_acts_only_as_json_from_its_own_origin() {
        let with = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:8787".parse().expect("header"));
            for (k, v) in pairs {
                h.insert(k.clone(), v.parse().expect("header"));
            }
            h
        };
        let json = (header::CONTENT_TYPE, "application/json");
        assert!(
            post_allowed(&with(std::slice::from_ref(&json))).is_ok(),
            "curl, a script"
        );
        assert!(
            post_allowed(&with(&[
                json.clone(),
                (header::ORIGIN, "http://127.0.0.1:8787")
            ]))
            .is_ok(),
            "the service's own page"
        );
        assert!(
            post_allowed(&with(&[
                json.clone(),
                (header::ORIGIN, "http://evil.example")
            ]))
            .is_err(),
            "another site's script"
        );
        assert!(
            post_allowed(&with(&[json, (header::ORIGIN, "http://127.0.0.1:9999")])).is_err(),
            "another port is another origin"
        );
        assert!(
            post_allowed(&with(&[(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded"
            )]))
            .is_err(),
            "a form"
        );
        assert!(post_allowed(&with(&[])).is_err(), "no body type");
    }

    #[test]
    fn the_key_is_accepted_as_bearer_or_basic_password_only() {
        let key = "0123456789abcdef";
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().expect("header"));
            h
        };
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(&with(&format!("Bearer {key}")), key));
        assert!(authorized(&with(&basic(&format!("anyone:{key}"))), key));
        assert!(
            !authorized(&with(&basic(key)), key),
            "a user name alone is not the key"
        );
        assert!(!authorized(&with("Bearer 0123456789abcdeX"), key));
        assert!(!authorized(&with("Bearer "), key));
        assert!(!authorized(&HeaderMap::new(), key));
    }
}
