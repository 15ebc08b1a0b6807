//! Secrets never reach the terminal or the log, at any verbosity. Each secret vlmctl reads (a
//! deployment's API key, the Hugging Face token) is registered here the moment it is read, and
//! everything the CLI writes (results, progress, errors, and every `tracing` line, including
//! what bollard and hyper log about request bodies at debug level) passes through [`scrub`].
//!
//! This is the last line of defence, not the only one: keys travel in the environment, never
//! in arguments, and the debug filter keeps bollard's request dumps out (see `init_logging`).
//! Written by hand: it is a substring replacement over a process-wide list, which no logging
//! crate offers as such.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Mutex;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Registers an API key as a secret ([`secret`]) when it is long enough to be one
/// ([`vlmctl_deploy::plan::MIN_API_KEY_LEN`]): a shorter one is refused before it is used, and
/// scrubbing it would mangle every message that happens to contain it.
pub fn api_key(value: &str) {
    if value.chars().count() >= vlmctl_deploy::plan::MIN_API_KEY_LEN {
        secret(value);
    }
}

/// Registers a secret; from now on [`scrub`] replaces it wherever it appears, also in the
/// escaped forms logs write it in: inside a JSON string (a request body), in Rust's `{:?}`, and
/// byte by byte as `\xNN` (an HTTP request line at trace level).
pub fn secret(value: &str) {
    if value.is_empty() {
        return;
    }
    let json = serde_json::to_string(value).unwrap_or_default();
    let debug = format!("{value:?}");
    let bytes: String = value
        .bytes()
        .flat_map(std::ascii::escape_default)
        .map(char::from)
        .collect();
    let forms = [
        value.to_owned(),
        json.get(1..json.len().saturating_sub(1))
            .unwrap_or_default()
            .to_owned(),
        debug
            .get(1..debug.len().saturating_sub(1))
            .unwrap_or_default()
            .to_owned(),
        bytes,
    ];
    if let Ok(mut s) = SECRETS.lock() {
        for f in forms {
            if !f.is_empty() && !s.contains(&f) {
                s.push(f);
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(secrets) = SECRETS.lock() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), REDACTED));
        }
    }
    out
}

/// Writes one line (or block) to stdout or stderr, scrubbed and with its control characters
/// made visible ([`crate::render::visible`]); a closed terminal (EPIPE or EIO
/// after SIGHUP) is ignored rather than panicking, as `println!` would, in the middle of a
/// restore.
pub fn write_line(to_stderr: bool, text: &str) {
    // Control characters from outside (an escape sequence in an imported file) made visible.
    let text = crate::render::visible(text);
    let text = scrub(&text);
    let _ = if to_stderr {
        writeln!(io::stderr().lock(), "{text}")
    } else {
        writeln!(io::stdout().lock(), "{text}")
    };
}

/// Writes the start of a line to stderr, as [`write_line`] does (a step whose end is written
/// when it ends).
pub fn write_part(text: &str) {
    let text = crate::render::visible(text);
    let text = scrub(&text);
    let mut err = io::stderr().lock();
    let _ = write!(err, "{text}");
    let _ = err.flush();
}

/// A `tracing` writer: stderr, scrubbed. The fmt layer writes each event with one
/// `write_all`, so a secret is never split across two calls.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        // Errors are swallowed for the same reason as in `write_line`.
        let _ = io::stderr().lock().write_all(scrub(&text).as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_replaced_everywhere_longest_first() {
        secret("sk-live-123");
        secret("sk-live-123-extended");
        secret("");
        assert_eq!(
            scrub("env=[\"LLAMA_API_KEY=sk-live-123-extended\"] key sk-live-123."),
            "env=[\"LLAMA_API_KEY=[REDACTED]\"] key [REDACTED]."
        );
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_forms_of_a_secret_are_scrubbed_too() {
        secret("pa\"ss\\wordZK91-clé");
        let json = serde_json::json!({"Env": ["LLAMA_API_KEY=pa\"ss\\wordZK91-clé"]}).to_string();
        assert_eq!(scrub(&json), r#"{"Env":["LLAMA_API_KEY=[REDACTED]"]}"#);
        assert_eq!(
            scrub(r#"GET /x?k=pa\"ss\\wordZK91-cl\xc3\xa9 HTTP/1.1"#),
            "GET /x?k=[REDACTED] HTTP/1.1"
        );
        assert_eq!(
            scrub(&format!("{:?}", "pa\"ss\\wordZK91-clé")),
            "\"[REDACTED]\""
        );
    }
}
