//! Words for a POSIX shell (what the helper container runs and what a hint tells a user to
//! paste), and where the host-wide lock files live (a hint names the folder). Pure, and at the bottom of the crate (it imports nothing of it), so that the error
//! type's hints can use it without a circle.

use std::path::{Path, PathBuf};

/// Pure: `s` quoted for a POSIX shell.
#[must_use]
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Pure: `s` as one word of a command a user may paste into a POSIX shell: as it is when it has
/// only characters no shell treats specially (an address, a name), else [`sh_quote`]d.
#[must_use]
pub fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '+' | ',' | '=' | '%')
        });
    if plain { s.to_owned() } else { sh_quote(s) }
}

/// Where the host-wide lock files live.
#[must_use]
pub fn host_dir() -> PathBuf {
    let run_lock = Path::new("/run/lock");
    if run_lock.is_dir() {
        run_lock.join("vlmctl")
    } else {
        std::env::temp_dir().join("vlmctl-locks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_for_the_shell() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
