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

/// What the filter of the override that puts tests in `group` holds: crate name -> `None` for
/// the whole `it` binary, or the module names of that binary it lists (a line naming tests of
/// one module, `test(/^MODULE::(a|b)$/)`, counts as that module).
fn grouped(config: &str, group: &str) -> BTreeMap<String, Option<BTreeSet<String>>> {
    let end = config
        .find(&format!("'''\ntest-group = \"{group}\"\n"))
        .unwrap_or_else(|| panic!("an override that sets test-group = \"{group}\""));
    let start = config[..end]
        .rfind("filter = '''")
        .expect("the override's filter");
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
        let modules: Option<BTreeSet<String>> = if let Some(r) = line.split("test(/^(").nth(1) {
            Some(
                r.split(")::")
                    .next()
                    .expect("a module list")
                    .split('|')
                    .map(str::to_owned)
                    .collect(),
            )
        } else {
            line.split("test(/^")
                .nth(1)
                .map(|r| BTreeSet::from([r.split("::").next().expect("a module").to_owned()]))
        };
        match (out.get_mut(&krate), modules) {
            (None, m) => {
                out.insert(krate, m);
            }
            (Some(Some(have)), Some(more)) => have.extend(more),
            _ => panic!("a whole binary and its modules both listed: {line}"),
        }
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

/// The repository's `.config/nextest.toml`.
fn nextest_toml() -> String {
    std::fs::read_to_string(root().join(".config/nextest.toml")).expect("nextest.toml")
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
    let config = nextest_toml();
    let grouped = grouped(&config, "real-env");
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

/// The second lane (`real-env-apart`) takes some of those tests out of the first: its override
/// comes first and may name only gated modules (a module that is not gated at all there is a
/// typo, or a test that needs nothing held back for nothing).
#[test]
fn the_apart_lane_holds_only_gated_tests() {
    let config = nextest_toml();
    let apart = grouped(&config, "real-env-apart");
    let gated = gated();
    assert!(
        apart.contains_key("vlmctl"),
        "the reader finds the lane: {apart:?}"
    );
    for (krate, modules) in &apart {
        let Some(gate) = gated.get(krate) else {
            panic!("{krate}: no gated tests, yet in the real-env-apart lane")
        };
        if let (Some(listed), Some(gated_modules)) = (modules, gate) {
            let stray: Vec<_> = listed.difference(gated_modules).collect();
            assert!(
                stray.is_empty(),
                "{krate}: {stray:?} not gated, yet in the real-env-apart lane"
            );
        }
    }
    assert!(
        config.find("test-group = \"real-env-apart\"") < config.find("test-group = \"real-env\"\n"),
        "the apart lane's override comes first (the first override that sets the group wins)"
    );
}

#[test]
fn the_readers_see_modules_and_whole_binaries() {
    let config = "filter = '''\n    binary_id(a::it)\n  | (binary_id(b::it) & test(/^(x|y)::/))\n'''\ntest-group = \"real-env\"\n\
                  filter = '''\n    (binary_id(b::it) & test(/^z::(one|two)$/))\n'''\ntest-group = \"apart\"\n";
    let g = grouped(config, "real-env");
    assert_eq!(
        grouped(config, "apart")["b"],
        Some(BTreeSet::from(["z".to_owned()]))
    );
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
