//! Secrets never reach the terminal or the log, at any verbosity. The CLI holds one
//! [`Secrets`] set ([`secrets`]): each secret vlmctl reads (a deployment's API key, the Hugging
//! Face token, a mirror's password) is added the moment it is read, and everything the CLI
//! writes (results, progress, errors, and every `tracing` line, including what bollard and
//! hyper log about request bodies at debug level) passes through [`scrub`]. `vlmctl serve`
//! hands the service a clone of the same set, which it scrubs what it stores and sends with.
//!
//! This is the last line of defence, not the only one: keys travel in the environment, never
//! in arguments, and the debug filter keeps bollard's request dumps out (see `init_logging`).
//! The rule itself (the escaped forms, longest first) is `vlmctl_base::redact`'s.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::LazyLock;

pub use vlmctl_base::redact::{REDACTED, Secrets};

/// The CLI's one set: its output is the process's stdout and stderr, so there is one.
static SECRETS: LazyLock<Secrets> = LazyLock::new(Secrets::new);

/// The CLI's secrets, for a front-end (the service) that must scrub with the same set.
#[must_use]
pub fn secrets() -> &'static Secrets {
    &SECRETS
}

/// Adds an API key to the CLI's secrets when it is long enough to be one
/// ([`vlmctl_deploy::plan::MIN_API_KEY_LEN`], [`Secrets::add_key`]).
pub fn api_key(value: &str) {
    SECRETS.add_key(value, vlmctl_deploy::plan::MIN_API_KEY_LEN);
}

/// Adds a secret to the CLI's set ([`Secrets::add`]).
pub fn secret(value: &str) {
    SECRETS.add(value);
}

/// `text` with every secret the CLI has read replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    SECRETS.scrub(text)
}

/// Writes one line (or block) to stdout or stderr, scrubbed and with its control characters
/// made visible ([`crate::render::visible`]); a closed terminal (EPIPE or EIO
/// after SIGHUP) is ignored rather than panicking, as `println!` would, in the middle of a
/// restore.
pub fn write_line(to_stderr: bool, text: &str) {
    // Control characters from outside (an escape sequence in an imported file) made visible.
    let text = visible(text);
    let text = scrub(&text);
    let _ = if to_stderr {
        writeln!(io::stderr().lock(), "{text}")
    } else {
        writeln!(io::stdout().lock(), "{text}")
    };
}

/// Writes the start of a line to stderr (a prompt, or a step whose end follows), scrubbed,
/// made visible and flushed, without ending the line; errors ignored as in [`write_line`].
pub fn write_unfinished(text: &str) {
    let text = visible(text);
    let text = scrub(&text);
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
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

/// `text` as it may reach a terminal: each control character other than `\n` and `\t` is
/// written visibly, in caret notation for C0 (`^[` for ESC, `^G` for BEL, `^M` for CR), and
/// DEL, C1 and the bidirectional overrides, isolates and marks ("Trojan Source") as JSON
/// escapes them (`\u007f`, `\u009b`, `\u202e`), so that JSON output stays valid (`serde_json`
/// escapes C0 itself but writes the others raw). The set is the bench tables' own,
/// [`vlmctl_bench::text::is_unsafe`]. So a string from outside (an imported results file, a
/// server's answer, a history written by someone else) cannot set the terminal's title, clear
/// the screen, colour what follows, overwrite a line or reorder what a reader sees. Every line
/// the CLI prints passes through it ([`write_line`]); tables apply it to their
/// cells first, so that columns stay aligned.
#[must_use]
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    // The bench tables' set (`vlmctl_bench::text::is_unsafe`), so that the two cannot drift.
    let hidden = vlmctl_bench::text::is_unsafe;
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match u32::from(c) {
            _ if !hidden(c) => out.push(c),
            n @ 0..=0x1f => {
                out.push('^');
                out.push(char::from(b'@' + u8::try_from(n).unwrap_or(0)));
            }
            // DEL, C1 and the bidirectional overrides as JSON writes them: `--json` output
            // stays valid JSON.
            n => {
                let _ = write!(out, "\\u{n:04x}");
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI's set is the one the service is handed: a key either adds is scrubbed by both.
    #[test]
    fn the_cli_and_the_service_scrub_with_one_set() {
        let service = secrets().clone();
        service.add("sk-added-by-the-service-0001");
        api_key("sk-added-by-the-cli-000000002");
        api_key("short");
        assert_eq!(scrub("sk-added-by-the-service-0001"), REDACTED);
        assert_eq!(service.scrub("sk-added-by-the-cli-000000002"), REDACTED);
        assert_eq!(scrub("short"), "short");
    }
}
