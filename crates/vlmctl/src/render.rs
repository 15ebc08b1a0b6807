//! How results look on a terminal, shared by every command: aligned tables, sizes, what a
//! fetch did, the gates table, download bars, pull spinners and bench progress. Only the CLI
//! draws.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use vlmctl_lifecycle::gates::{GateResult, GateStatus};
use vlmctl_weights::{FetchOutcome, FetchProgress};

pub use vlmctl_deploy::human_bytes;

pub use crate::redact::visible;

/// Left-aligned columns separated by two spaces; the last column is not padded.
#[must_use]
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The gates as one table, with each non-passing gate's hint below it.
#[must_use]
pub fn gates_table(results: &[GateResult]) -> String {
    let rows: Vec<[String; 3]> = results
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                format!("{:?}", r.status).to_uppercase(),
                r.evidence.clone(),
            ]
        })
        .collect();
    let mut out = table(&["GATE", "STATUS", "EVIDENCE"], &rows);
    for r in results.iter().filter(|r| r.status != GateStatus::Pass) {
        if let Some(h) = &r.hint {
            let _ = write!(out, "\nhint ({}): {h}", r.name);
        }
    }
    out
}

/// What a fetch did to one file, in words (the [`Event::Fetched`] line's).
///
/// [`Event::Fetched`]: vlmctl_deploy::events::Event::Fetched
#[must_use]
pub fn describe(outcome: &FetchOutcome, size: u64) -> String {
    vlmctl_deploy::events::fetched(outcome, size)
}

/// What pinning wrote into the lock: the entry, each file's size and hash, and the reminder to
/// commit the lock.
#[must_use]
pub fn pinned(p: &vlmctl_deploy::pin::Pinned) -> String {
    use vlmctl_deploy::pin::Change;
    let e = &p.entry;
    let (what, was) = match &p.change {
        Change::Added => ("pinned", String::new()),
        Change::Updated { previous } if previous.revision == e.revision => {
            ("re-pinned", String::new())
        }
        Change::Updated { previous } => ("re-pinned", format!(" (was {})", previous.revision)),
        Change::Unchanged => ("already pinned", " (nothing written)".to_owned()),
    };
    let from = e
        .tracks
        .as_ref()
        .map(|t| format!("{t} -> "))
        .unwrap_or_default();
    let mut out = format!(
        "{what} {} in {}: {}@{from}{}{was}",
        e.name,
        p.lock.display(),
        e.repo,
        e.revision
    );
    let rows: Vec<[String; 4]> = e
        .files
        .iter()
        .map(|f| {
            [
                f.path.clone(),
                f.role.to_string(),
                human_bytes(f.size),
                format!("sha256 {}", f.sha256),
            ]
        })
        .collect();
    for line in table(&["FILE", "ROLE", "SIZE", "CONTENT"], &rows).lines() {
        let _ = write!(out, "\n  {line}");
    }
    // A local pin checked against the hub's answer now: same bytes or not, file by file.
    if let Change::Updated { previous } = &p.change
        && previous.pinned_from.as_deref() == Some(vlmctl_weights::PINNED_FROM_LOCAL)
        && e.pinned_from.is_none()
    {
        let differ: Vec<&str> = e
            .files
            .iter()
            .filter(|f| {
                !previous
                    .files
                    .iter()
                    .any(|o| o.path == f.path && o.sha256 == f.sha256 && o.size == f.size)
            })
            .map(|f| f.path.as_str())
            .collect();
        let _ = if differ.is_empty() {
            write!(
                out,
                "\nthe hub's files are the ones pinned from local files before (same sizes and sha256)"
            )
        } else {
            write!(
                out,
                "\nthe hub's files DIFFER from the ones pinned from local files before: {} \
                 (`vlmctl weights verify` now fails for the local copies: fetch the hub's)",
                differ.join(", ")
            )
        };
    }
    if e.pinned_from.as_deref() == Some(vlmctl_weights::PINNED_FROM_LOCAL) {
        let revision = if e.revision == vlmctl_weights::UNKNOWN_REVISION {
            format!(
                "the commit is unknown (written as all zeros, tracking {})",
                e.tracks.as_deref().unwrap_or("main")
            )
        } else {
            format!("the commit {} is as given", e.revision)
        };
        let _ = write!(
            out,
            "\npinned from local files (sizes and sha256 computed here, GGUF checked), NOT checked \
             against the hub: {revision}; once the hub is reachable, `vlmctl weights lock {} {} \
             --name {}` pins it from the hub's answer (and says if the files differ)",
            e.repo,
            e.files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            e.name
        );
    }
    if p.change != Change::Unchanged {
        let _ = write!(
            out,
            "\ncommit {}: every host then serves exactly these files (--locked enforces it)",
            p.lock.display()
        );
    }
    out
}

/// A progress bar per download on stderr (hidden when stderr is not a terminal).
#[derive(Default)]
pub struct Bar(Mutex<Option<ProgressBar>>);

impl Bar {
    /// Removes the bar.
    pub fn clear(&self) {
        if let Some(b) = self.0.lock().ok().and_then(|mut b| b.take()) {
            b.finish_and_clear();
        }
    }
}

impl FetchProgress for Bar {
    fn start(&self, file: &str, total: u64, resumed: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(file.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        if resumed > 0 {
            bar.println(format!("{file}: resuming after {}", human_bytes(resumed)));
        }
        if let Ok(mut b) = self.0.lock() {
            *b = Some(bar);
        }
    }
    fn advance(&self, bytes: u64) {
        if let Some(b) = self.0.lock().ok().as_ref().and_then(|b| b.as_ref()) {
            b.inc(bytes);
        }
    }
    fn finish(&self, _file: &str) {}
}

/// A spinner on stderr for steps without a known size (an image pull).
#[must_use]
pub fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A spinner on stderr with the time spent so far (`stopping X 12s`), for a wait of unknown
/// length; hidden when stderr is not a terminal.
#[must_use]
pub fn spinner_elapsed() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Bench progress on stderr. On a terminal, a bar per config (target, config, requests done,
/// elapsed, ETA). Anywhere else (a log file, CI, a pipe) no bar and no `\r`: one line per config
/// when it finishes, so a log says how far a long run got, one config per line.
pub struct BenchProgress {
    bar: Mutex<Option<ProgressBar>>,
    terminal: bool,
}

impl BenchProgress {
    /// Bars when stderr is a terminal, lines otherwise.
    #[must_use]
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// `done` of `total` requests (warm-up included) of `config` on `target`.
    pub fn update(&self, target: &str, config: &str, done: usize, total: usize) {
        if !self.terminal {
            if done == total {
                crate::redact::write_line(
                    true,
                    &format!("{target} {config}: {total}/{total} requests"),
                );
            }
            return;
        }
        let Ok(mut slot) = self.bar.lock() else {
            return;
        };
        let bar = slot.get_or_insert_with(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} {elapsed} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(format!("{target} {config}"));
            bar
        });
        bar.set_position(done as u64);
        if done >= total {
            bar.finish();
            *slot = None;
        }
    }
}

impl Default for BenchProgress {
    fn default() -> Self {
        Self::new()
    }
}

/// `(stamp: ...)` or `(hashed there)`.
#[must_use]
pub fn how_verified(stamped: bool) -> &'static str {
    vlmctl_deploy::events::how_verified(stamped)
}

/// An event's line as a plain progress note: its own line (`Display`, the one the service's
/// pages show too). Commands that draw a table, a bar or a spinner for some events show every
/// other event through this, and a forward's link notice (`Event::Link`) goes the same way.
#[must_use]
pub fn event(e: &vlmctl_deploy::events::Event) -> String {
    e.to_string()
}

/// The line for an event of the weights on another host (pushed, verified there, a staging
/// folder removed or left); `None` for any other event.
#[must_use]
pub fn on_host(e: &vlmctl_deploy::events::Event) -> Option<String> {
    use vlmctl_deploy::events::Event;
    matches!(
        e,
        Event::PushedToHost { .. }
            | Event::VerifiedOnHost { .. }
            | Event::StagingRemoved { .. }
            | Event::StagingInUse { .. }
    )
    .then(|| e.to_string())
}

/// The line of an event of the weights jobs and of pin-on-first-use, as the commands show it
/// while they go (`None` for the other events): the event's own line, and for a pin the
/// entry's files as a table.
#[must_use]
pub fn job_line(e: &vlmctl_deploy::events::Event) -> Option<String> {
    use vlmctl_deploy::events::Event;
    match e {
        Event::Pinned { pinned: p } => Some(pinned(p)),
        Event::Pinning { .. }
        | Event::Resolving { .. }
        | Event::Verifying { .. }
        | Event::Adopting { .. }
        | Event::PushingTo { .. } => Some(e.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forward's link notice is shown as an event (`Event::Link`), with the words the terminal
    /// showed before it was one.
    #[test]
    fn a_link_event_is_the_notices_line() {
        use vlmctl_deploy::events::Event;
        use vlmctl_lifecycle::hosts::{LinkNotice, REOPEN_TRIES};
        let s = |v: &str| v.to_owned();
        let lines = [
            (
                LinkNotice::Ended {
                    host: s("beast"),
                    forward: s("/tmp/d.sock:/run/docker.sock"),
                    said: s("exit status 255"),
                },
                s(
                    "warning: the SSH forward to beast (/tmp/d.sock:/run/docker.sock) ended: \
                   exit status 255; opening it again",
                ),
            ),
            (
                LinkNotice::Reopened {
                    host: s("beast"),
                    forward: s("f"),
                    tries: 2,
                },
                format!(
                    "warning: the SSH forward to beast is open again (try 2 of {REOPEN_TRIES})"
                ),
            ),
            (
                LinkNotice::Lost {
                    host: s("beast"),
                    forward: s("f"),
                    tries: 4,
                    said: s("Connection refused"),
                },
                s(
                    "warning: the SSH forward to beast could not be opened again in 4 tries: \
                   Connection refused",
                ),
            ),
        ];
        for (notice, line) in lines {
            assert_eq!(notice.to_string(), line);
            assert_eq!(event(&Event::Link { notice }), line);
        }
    }

    #[test]
    fn control_characters_are_made_visible_and_plain_text_kept() {
        assert_eq!(
            visible("T\u{1b}]0;HIJACKED\u{7}\u{1b}[2J\u{1b}[31mRED"),
            "T^[]0;HIJACKED^G^[[2J^[[31mRED"
        );
        assert_eq!(
            visible("a\rb\u{8}c\u{7f}d\u{9b}31m"),
            "a^Mb^Hc\\u007fd\\u009b31m"
        );
        // Bidirectional overrides, isolates and marks cannot reorder what follows.
        assert_eq!(
            visible("run\u{202e}1 \u{202a}\u{202d}\u{2066}\u{2069}\u{200e}\u{200f}"),
            "run\\u202e1 \\u202a\\u202d\\u2066\\u2069\\u200e\\u200f"
        );
        assert!(matches!(
            visible("run 1: done\n\tplain, é, 漢"),
            std::borrow::Cow::Borrowed("run 1: done\n\tplain, é, 漢")
        ));
    }
}
