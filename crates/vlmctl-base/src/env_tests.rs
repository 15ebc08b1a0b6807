//! The declarations checked against themselves, against every crate's sources, and against
//! the reference page.

use std::path::{Path, PathBuf};

use super::{ALL, markdown_table};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `crates/*/src`, with its text up to its first `#[cfg(test)]` module
/// (tests may set and read variables of their own; production code may not). The test-support
/// crate (`vlmctl-test`, the tests' required environment) is not vlmctl and is left out.
fn production_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir)
            .expect("readable source dir")
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .flatten()
    {
        if krate.file_name() == "vlmctl-test" {
            continue;
        }
        let src = krate.path().join("src");
        if src.is_dir() {
            walk(&src, &mut files);
        }
    }
    files.sort();
    files
        .into_iter()
        .filter(|p| !p.ends_with("vlmctl-base/src/env.rs") && !p.ends_with("env_tests.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("utf-8 source");
            let text = without_test_modules(&text);
            let name = p
                .strip_prefix(root().join("crates"))
                .unwrap_or(&p)
                .display()
                .to_string();
            (name, text)
        })
        .collect()
}

/// `text` up to its first `#[cfg(test)]` module (a `#[cfg(test)]` function in the middle is
/// kept).
fn without_test_modules(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim() == "#[cfg(test)]"
                && lines[i + 1..]
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| !l.starts_with("#["))
                    .is_some_and(|l| l.starts_with("mod ") || l.starts_with("pub(crate) mod "))
        })
        .unwrap_or(lines.len());
    lines[..end].join("\n")
}

/// Reads by a name the user's file chooses (`api_key_env`), or helpers that take a declared
/// [`super::Var`] as their argument: `(file, argument)`.
const DYNAMIC: &[(&str, &str)] = &[
    // The bench plan's `api_key_env`.
    ("vlmctl-bench/src/plan/load.rs", "var"),
    // The spec's `server.api_key_env` (read where key files are read too).
    ("vlmctl-deploy/src/apikey.rs", "var"),
    // `xdg_dir(var: Var, ..)` and `env_path(var: Var)`.
    ("vlmctl/src/commands/mod.rs", "var"),
];

/// The argument of each call to `std::env::var`/`var_os` (and `EnvFilter::try_from_env`) and
/// each clap `env = ...`, as written in the source.
fn reads(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for call in ["env::var(", "env::var_os(", "try_from_env(", ", env = "] {
        for (at, _) in text.match_indices(call) {
            let rest = &text[at + call.len()..];
            let end = rest.find([')', ',', ']']).unwrap_or(rest.len());
            out.push(rest[..end].trim().to_owned());
        }
    }
    out
}

fn declared(name: &str) -> bool {
    ALL.iter().any(|v| v.name == name)
}

/// The rule of this module: no crate reads a variable by a literal name, or one not declared.
#[test]
fn every_variable_a_crate_reads_is_declared_and_read_through_its_declaration() {
    let mut wrong = Vec::new();
    let mut seen = 0;
    for (file, text) in production_sources() {
        for arg in reads(&text) {
            seen += 1;
            // `env::X`, `env_vars::X`, `vlmctl_base::env::X`, optionally `.name` (clap).
            let path = arg.strip_suffix(".name").unwrap_or(&arg);
            let last = path.rsplit("::").next().unwrap_or(path);
            let ok = if arg.starts_with('"') {
                false
            } else if last.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                declared(last)
            } else {
                DYNAMIC.contains(&(file.as_str(), last))
            };
            if !ok {
                wrong.push(format!("{file}: reads {arg}"));
            }
        }
        // Compile-time variables are cargo's own.
        for (at, _) in text.match_indices("env!(\"") {
            let name = &text[at + 6..];
            if !name.starts_with("CARGO_") {
                wrong.push(format!("{file}: env!({})", &name[..name.len().min(30)]));
            }
        }
    }
    assert!(seen > 20, "the scan found the reads ({seen})");
    assert!(
        wrong.is_empty(),
        "read an undeclared variable or by a literal name (declare it in vlmctl-base/src/env.rs \
         and read it through its constant):\n{}",
        wrong.join("\n")
    );
}

/// The scan above can fail: a literal read and an undeclared constant are both caught, and a
/// declared one passes.
#[test]
fn the_scan_catches_a_literal_and_an_undeclared_name() {
    let text = "let a = std::env::var(\"DOCKER_HOST\");\n\
                let env = |s: &str| s;\n\
                let b = std::env::var_os(env::NOT_DECLARED);\n\
                #[arg(long, env = env_vars::VLMCTL_STORE.name, value_name = \"FILE\")]";
    assert_eq!(
        reads(text),
        [
            "\"DOCKER_HOST\"",
            "env::NOT_DECLARED",
            "env_vars::VLMCTL_STORE.name"
        ]
    );
    assert!(!declared("NOT_DECLARED") && declared("VLMCTL_STORE"));
}

/// Each declared variable is read somewhere (through its constant): no stale declarations.
#[test]
fn every_declared_variable_is_read_somewhere() {
    let sources = production_sources();
    for v in ALL {
        let used = sources
            .iter()
            .any(|(_, text)| text.contains(&format!("::{}", v.name)));
        assert!(used, "{} is declared but no crate reads it", v.name);
    }
}

/// Reads this file's own declarations, so that one left out of [`ALL`] fails here.
#[test]
fn all_lists_every_declared_variable_once() {
    let source = include_str!("env.rs");
    let declared: Vec<&str> = source
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| l.strip_suffix(": Var = Var {"))
        .collect();
    assert!(declared.len() > 10, "{declared:?}");
    for (name, v) in declared.iter().zip(ALL) {
        assert_eq!(
            *name, v.name,
            "ALL in the order declared; each constant named after its variable"
        );
    }
    assert_eq!(
        declared.len(),
        ALL.len(),
        "ALL lists every declared variable once"
    );
}

/// The reference page's table is [`markdown_table`]: names, readers and meanings as declared.
#[test]
fn the_reference_pages_table_is_the_declarations() {
    let page =
        std::fs::read_to_string(root().join("docs/reference.md")).expect("docs/reference.md");
    let table = page
        .split("<!-- env table: generated from vlmctl-base/src/env.rs -->\n")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .map(|s| format!("{s}\n"))
        .expect("docs/reference.md has the environment table after its marker");
    assert_eq!(
        table,
        markdown_table(),
        "docs/reference.md's environment table differs from the declarations; paste this:\n{}",
        markdown_table()
    );
}
