//! Where command results go: results on stdout, progress on stderr, both scrubbed of secrets.

use crate::redact;

/// Where command results go: results on stdout, progress on stderr.
pub struct Output;

impl Output {
    /// A result line (table, JSON).
    pub fn stdout(&mut self, text: &str) {
        redact::write_line(false, text);
    }

    /// A progress note for a person watching; never part of the result.
    pub fn progress(&mut self, text: &str) {
        redact::write_line(true, text);
    }

    /// A job's event as a progress note: its line ([`crate::render::event`]), on stderr.
    pub fn event(&mut self, e: &vlmctl_deploy::events::Event) {
        self.progress(&crate::render::event(e));
    }
}
