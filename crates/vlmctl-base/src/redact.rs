//! Secrets never reach a terminal, a log, the history or a web page, at any verbosity. A
//! [`Secrets`] value is the set of secrets one front-end has read (a deployment's API key, the
//! Hugging Face token, a mirror's password); every text it writes passes through
//! [`Secrets::scrub`]. The CLI holds one, and so does the service (its own value: a clone
//! shares the set, so a key the service reads on the way is scrubbed from what it stores too).
//!
//! This is the last line of defence, not the only one: keys travel in the environment, never
//! in arguments. Written by hand: a substring replacement over a shared list, which no logging
//! crate offers as such.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The secrets one front-end has read. Cheap to clone; clones share the set. Its `Debug` says
/// how many forms it holds, never what they are.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Every form of every secret, longest first (so a secret containing another is replaced
    /// whole).
    forms: Arc<Mutex<Vec<String>>>,
}

impl Secrets {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret; from now on [`Secrets::scrub`] replaces it wherever it appears, also in
    /// the escaped forms logs write it in: inside a JSON string (a request body), in Rust's
    /// `{:?}`, and byte by byte as `\xNN` (an HTTP request line at trace level). An empty
    /// value is ignored.
    pub fn add(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        let debug = format!("{value:?}");
        let bytes: String = value
            .bytes()
            .flat_map(std::ascii::escape_default)
            .map(char::from)
            .collect();
        let forms = [
            value.to_owned(),
            json_escaped(value),
            debug
                .get(1..debug.len().saturating_sub(1))
                .unwrap_or_default()
                .to_owned(),
            bytes,
        ];
        let mut s = self.forms.lock().unwrap_or_else(PoisonError::into_inner);
        for f in forms {
            if !f.is_empty() && !s.contains(&f) {
                s.push(f);
            }
        }
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Adds an API key when it is long enough to be one (`min_chars`, the deployment's rule):
    /// a shorter one is refused before it is used, and scrubbing it would mangle every message
    /// that happens to contain it.
    pub fn add_key(&self, value: &str, min_chars: usize) {
        if value.chars().count() >= min_chars {
            self.add(value);
        }
    }

    /// `text` with every secret replaced by [`REDACTED`].
    #[must_use]
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = self.forms.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Cow::Borrowed(text);
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        out
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.forms.lock().map_or(0, |s| s.len());
        write!(f, "Secrets {{ forms: {n} }}")
    }
}

/// `value` as it appears between the quotes of a JSON string (`serde_json`'s escaping: `"`, `\`
/// and control characters; everything else as is).
fn json_escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_everywhere_longest_first() {
        let s = Secrets::new();
        s.add("sk-live-123");
        s.add("sk-live-123-extended");
        s.add("");
        assert_eq!(
            s.scrub("env=[\"LLAMA_API_KEY=sk-live-123-extended\"] key sk-live-123."),
            "env=[\"LLAMA_API_KEY=[REDACTED]\"] key [REDACTED]."
        );
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_forms_of_a_secret_are_scrubbed_too() {
        let s = Secrets::new();
        s.add("pa\"ss\\wordZK91-clé\t");
        assert_eq!(
            s.scrub(r#"{"Env":["LLAMA_API_KEY=pa\"ss\\wordZK91-clé\t"]}"#),
            r#"{"Env":["LLAMA_API_KEY=[REDACTED]"]}"#
        );
        assert_eq!(
            s.scrub(r#"GET /x?k=pa\"ss\\wordZK91-cl\xc3\xa9\t HTTP/1.1"#),
            "GET /x?k=[REDACTED] HTTP/1.1"
        );
        assert_eq!(
            s.scrub(&format!("{:?}", "pa\"ss\\wordZK91-clé\t")),
            "\"[REDACTED]\""
        );
    }

    #[test]
    fn clones_share_the_set_and_separate_values_do_not() {
        let cli = Secrets::new();
        let service = cli.clone();
        service.add_key("a-key-read-by-the-service", 16);
        service.add_key("short", 16);
        assert_eq!(cli.scrub("a-key-read-by-the-service"), REDACTED);
        assert_eq!(cli.scrub("short"), "short");
        assert_eq!(
            format!("{cli:?}"),
            "Secrets { forms: 1 }",
            "the count, never the secret"
        );
        let other = Secrets::new();
        assert_eq!(
            other.scrub("a-key-read-by-the-service"),
            "a-key-read-by-the-service"
        );
    }

    #[test]
    fn json_escaping_matches_a_json_encoder() {
        assert_eq!(json_escaped("a\"b\\c\u{1}d é"), "a\\\"b\\\\c\\u0001d é");
    }
}
