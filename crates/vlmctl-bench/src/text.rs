//! Text from outside (a server's answer, `/props` strings, names and URLs in an imported results
//! file) made safe for where it is shown: [`printable`] for a terminal, [`markdown`] for
//! report.md. Hand-written rather than a crate's: each is a few lines over `char`, and none of
//! the well-kept crates does exactly this (`strip-ansi-escapes` drops sequences, losing what
//! they were; Markdown crates render rather than escape).

use std::borrow::Cow;

/// Whether `c` must not reach a terminal or a document raw: control characters (C0, DEL, C1:
/// escape sequences start with ESC or CSI) other than `\n` and `\t`, and the bidirectional
/// overrides and isolates that reorder what a reader sees ("Trojan Source": U+202A..U+202E,
/// U+2066..U+2069), and the invisible direction marks (LRM U+200E, RLM U+200F, ALM U+061C),
/// which reorder the punctuation and digits around them just as unseen. The CLI's
/// `render::visible` uses this same set, so that tables and every other line agree.
#[must_use]
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_bidi(c)
}

/// Whether `c` is a bidirectional override, isolate or mark (see [`is_unsafe`]).
#[must_use]
pub fn is_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
    )
}

/// `s` with every [`is_unsafe`] character written as its Rust escape (`\u{1b}`), so that a
/// terminal shows what the text held instead of obeying it (`ESC ]0;title BEL` would retitle
/// the window, `ESC [2J` clear the screen). Borrows when there is nothing to replace.
#[must_use]
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` as literal text on one line of Markdown (a table cell, a heading, a sentence): unsafe
/// characters as in [`printable`], line breaks as spaces, and each character Markdown or HTML
/// would act on escaped with a backslash, which `CommonMark` and GitHub render as the character
/// itself: `` \ ` * _ [ ] | ~ # `` always, `<` before what would open a tag (a letter, `/`, `!`,
/// `?`), `&` before what would make an entity, `!` before `[`. `</script><b>x</b>` stays text,
/// and `p95 <= 40 ms` stays as it is.
#[must_use]
pub fn markdown(s: &str) -> String {
    let text = printable(s);
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        let next = chars.peek().copied().unwrap_or(' ');
        let escape = match c {
            '\n' | '\r' => {
                out.push(' ');
                prev = ' ';
                continue;
            }
            '\\' | '`' | '*' | '[' | ']' | '|' | '~' | '#' => true,
            // Inside a word (`x86_64`) an underscore never emphasises.
            '_' => !(prev.is_alphanumeric() && next.is_alphanumeric()),
            '<' => next.is_ascii_alphabetic() || matches!(next, '/' | '!' | '?'),
            '&' => next.is_ascii_alphanumeric() || next == '#',
            '!' => next == '[',
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// `s` as a Markdown code span (shown as it is, in a fixed font) when it can be one: no
/// backtick and nothing [`is_unsafe`] in it; else as [`markdown`] text.
#[must_use]
pub fn markdown_code(s: &str) -> String {
    if s.contains('`') || s.chars().any(is_unsafe) || s.contains('\n') {
        markdown(s)
    } else {
        format!("`{s}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let hostile =
            "T\u{1b}]0;HIJACKED-TITLE\u{7}\u{1b}[2J\u{1b}[31mRED\u{9b}1m\u{202e}cba\u{200f}";
        let p = printable(hostile);
        assert!(!p.chars().any(is_unsafe), "{p}");
        assert_eq!(
            p,
            "T\\u{1b}]0;HIJACKED-TITLE\\u{7}\\u{1b}[2J\\u{1b}[31mRED\\u{9b}1m\\u{202e}cba\\u{200f}"
        );
        // Lines and tabs stay; plain text is borrowed as it is.
        assert!(matches!(printable("a\tb\nc é"), Cow::Borrowed("a\tb\nc é")));
    }

    #[test]
    fn markdown_keeps_text_text() {
        let md = markdown("</script><script>alert(1)</script> | *x* [l](u) `c`\n# h \u{1b}[5m");
        assert_eq!(
            md,
            "\\</script>\\<script>alert(1)\\</script> \\| \\*x\\* \\[l\\](u) \\`c\\` \\# h \\\\u{1b}\\[5m"
        );
        assert_eq!(markdown("p95 <= 40 ms & 3 < 4"), "p95 <= 40 ms & 3 < 4");
        assert_eq!(markdown("&amp; ![i](u)"), "\\&amp; \\!\\[i\\](u)");
        assert_eq!(markdown("x86_64 _a_"), "x86_64 \\_a\\_");
        assert_eq!(markdown_code("ab12"), "`ab12`");
        assert_eq!(markdown_code("a`b"), "a\\`b");
        assert!(!md.contains('\n') && !md.contains('\u{1b}'));
    }
}
