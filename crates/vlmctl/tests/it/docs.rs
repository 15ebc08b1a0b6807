//! The documentation checked against the code: the reference's exit-code table against
//! `src/exit_codes.rs` (the environment table is checked in `vlmctl-base`, against its
//! declarations), the README kept a front page, and every relative link in the README,
//! `CONTRIBUTING.md` and `docs/` pointing at a file that exists.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `pub const NAME: u8 = N;` in `exit_codes.rs`, by code.
fn exit_codes_in_code(source: &str) -> BTreeMap<u8, String> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| {
            let (name, value) = l.strip_suffix(';')?.split_once(": u8 = ")?;
            Some((value.parse().ok()?, name.to_owned()))
        })
        .collect()
}

/// The codes of the table under `## Exit codes` (`| 3 | meaning |` rows).
fn exit_codes_in_docs(page: &str) -> Vec<u8> {
    page.split("\n## Exit codes\n")
        .nth(1)
        .expect("docs/reference.md has `## Exit codes`")
        .split("\n## ")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next()?.trim().parse().ok())
        .collect()
}

/// Each code the binary can exit with has one row in the reference, and each row is a code
/// the binary has.
#[test]
fn the_references_exit_codes_are_the_binarys() {
    let code = exit_codes_in_code(&read("crates/vlmctl/src/exit_codes.rs"));
    assert!(code.len() >= 12, "the parse found the constants: {code:?}");
    let docs = exit_codes_in_docs(&read("docs/reference.md"));
    let mut sorted = docs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        docs.len(),
        "a code documented twice: {docs:?}"
    );
    let code_set: Vec<u8> = code.keys().copied().collect();
    assert_eq!(
        sorted, code_set,
        "docs/reference.md's exit codes differ from src/exit_codes.rs ({code:?})"
    );
}

/// The check above can fail: a code missing from the table, or one the binary lacks.
#[test]
fn the_exit_code_check_sees_a_missing_and_an_extra_row() {
    let page = "x\n## Exit codes\n\n| code | meaning |\n|---|---|\n| 0 | ok |\n| 12 | new |\n\n## Next\n| 5 | not here |";
    assert_eq!(exit_codes_in_docs(page), [0, 12]);
    let code = exit_codes_in_code("pub const SUCCESS: u8 = 0;\npub const HUB: u8 = 6;\n");
    assert_eq!(code.keys().copied().collect::<Vec<_>>(), [0, 6]);
}

/// The README is a front page (issue #22: at most about 250 lines) whose table of contents
/// reaches every page under `docs/`.
#[test]
fn the_readme_is_a_front_page_linking_every_docs_page() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; move detail under docs/"
    );
    let mut pages: Vec<String> = std::fs::read_dir(repo_root().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(n).extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 7, "{pages:?}");
    for page in pages {
        assert!(
            readme.contains(&format!("](docs/{page}")),
            "README.md links docs/{page}"
        );
    }
    assert!(readme.contains("](CONTRIBUTING.md)"));
}

/// Relative links `](path)` or `](path#anchor)` in `text` (not `http`, not `#anchor` alone).
fn relative_links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            let path = target.split('#').next().unwrap_or_default();
            (!path.is_empty() && !path.contains("://") && !path.starts_with("mailto:"))
                .then_some(path)
        })
        .collect()
}

/// Every relative link in the README, CONTRIBUTING.md and docs/ names a file that exists.
#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut files = vec![
        "README.md".to_owned(),
        "CONTRIBUTING.md".to_owned(),
        "crates/README.md".to_owned(),
        "examples/README.md".to_owned(),
    ];
    for e in std::fs::read_dir(repo_root().join("docs"))
        .expect("docs/")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if Path::new(&name).extension().is_some_and(|x| x == "md") {
            files.push(format!("docs/{name}"));
        }
    }
    let mut broken = Vec::new();
    let mut seen = 0;
    for f in &files {
        let dir = Path::new(f).parent().unwrap_or(Path::new(""));
        for link in relative_links(&read(f)) {
            seen += 1;
            if !repo_root().join(dir).join(link).exists() {
                broken.push(format!("{f}: {link}"));
            }
        }
    }
    assert!(seen > 10, "the scan found the links ({seen})");
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
    assert_eq!(
        relative_links("[a](docs/x.md#y) [b](https://e.org) [c](#top) [d](../README.md)"),
        ["docs/x.md", "../README.md"]
    );
}
