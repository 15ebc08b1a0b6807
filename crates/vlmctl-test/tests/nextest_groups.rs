//! `.config/nextest.toml` puts the tests that use the real components in the `real-env` group
//! (one at a time) by naming their modules. A module gated by a `test-env` / `test-docker`
//! feature in a `tests/it/main.rs` and missing from that list would run beside the others and
//! fight them for dockerd; a listed module that is no longer gated would be serialised for
//! nothing. This test reads both and fails on either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The workspace root.
fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// What the `real-env` filter holds: crate name -> `None` for the whole `it` binary, or the
/// module names of that binary it lists.
fn grouped(config: &str) -> BTreeMap<String, Option<BTreeSet<String>>> {
    let start = config
        .find("filter = '''")
        .expect("the real-env override's filter");
    let end = start
        + config[start..]
            .find("'''\ntest-group = \"real-env\"")
            .expect("its end");
    let mut out = BTreeMap::new();
    for line in config[start..end].lines().skip(1) {
        let line = line.trim().trim_start_matches('|').trim();
        if line.is_empty() {
            continue;
        }
        let krate = line
            .split("binary_id(")
            .nth(1)
            .and_then(|r| r.split("::it)").next())
            .unwrap_or_else(|| panic!("one binary per line: {line}"))
            .to_owned();
        let modules = line.split("test(/^(").nth(1).map(|r| {
            r.split(")::/)")
                .next()
                .expect("a module list")
                .split('|')
                .map(str::to_owned)
                .collect()
        });
        assert!(
            out.insert(krate, modules).is_none(),
            "a binary twice: {line}"
        );
    }
    out
}

/// The gated test modules of every crate's `tests/it/main.rs`: crate -> `None` when the whole
/// binary is gated, else the gated modules.
fn gated() -> BTreeMap<String, Option<BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).expect("crates") {
        let dir = entry.expect("entry").path();
        let Ok(main) = std::fs::read_to_string(dir.join("tests/it/main.rs")) else {
            continue;
        };
        let krate = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if gated_binary(&main) {
            out.insert(krate, None);
            continue;
        }
        let mut modules = BTreeSet::new();
        let mut gate = false;
        for line in main.lines().map(str::trim) {
            if line.starts_with("#[cfg(") {
                gate = is_env_gate(line);
            } else if let Some(m) = line.strip_prefix("mod ") {
                // `common` holds helpers, no test (STYLE.md: one shared `common` module).
                if gate && m != "common;" {
                    modules.insert(m.trim_end_matches(';').to_owned());
                }
                gate = false;
            }
        }
        if !modules.is_empty() {
            out.insert(krate, Some(modules));
        }
    }
    out
}

fn is_env_gate(cfg: &str) -> bool {
    cfg.contains("feature = \"test-env\"") || cfg.contains("feature = \"test-docker\"")
}

fn gated_binary(main: &str) -> bool {
    main.lines()
        .any(|l| l.trim().starts_with("#![cfg(") && is_env_gate(l))
}

#[test]
fn every_gated_test_module_is_in_the_real_env_group() {
    let config =
        std::fs::read_to_string(root().join(".config/nextest.toml")).expect("nextest.toml");
    let grouped = grouped(&config);
    let gated = gated();
    assert!(
        gated.contains_key("vlmctl") && gated.contains_key("vlmctl-deploy"),
        "the reader finds the gates: {gated:?}"
    );
    assert_eq!(
        grouped, gated,
        "the real-env group of .config/nextest.toml (left) and the modules gated by test-env / \
         test-docker in the tests/it/main.rs files (right) differ: update the filter"
    );
}

#[test]
fn the_readers_see_modules_and_whole_binaries() {
    let config = "filter = '''\n    binary_id(a::it)\n  | (binary_id(b::it) & test(/^(x|y)::/))\n'''\ntest-group = \"real-env\"\n";
    let g = grouped(config);
    assert_eq!(g["a"], None);
    assert_eq!(
        g["b"],
        Some(BTreeSet::from(["x".to_owned(), "y".to_owned()]))
    );
    assert!(gated_binary(
        "//! doc\n#![cfg(feature = \"test-env\")]\nmod jobs;\n"
    ));
    assert!(!gated_binary(
        "#![cfg(feature = \"fake-hub\")]\nmod jobs;\n"
    ));
}
