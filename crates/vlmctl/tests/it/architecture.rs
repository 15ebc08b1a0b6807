//! The architecture, enforced: bench and weights never depend on bollard (Docker); lifecycle
//! never depends on hf-hub (the network fetch); the store is a database only, and the CLI
//! reaches SQLite through it; the one reader of users' files (`vlmctl-files`) is shared by the
//! libraries and depends on none of them; the rules every crate shares (`vlmctl-base`) depend
//! on nothing at all. Checked over `cargo metadata`'s resolved graph, transitively. And in the
//! sources, since a call through a library's re-export is invisible to the graph: the
//! front-ends (the CLI, the service) never connect to Docker, call a container function or ask
//! the hub anything themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

#[derive(serde::Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    resolve: Resolve,
}
#[derive(serde::Deserialize)]
struct Package {
    id: String,
    name: String,
}
#[derive(serde::Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}
#[derive(serde::Deserialize)]
struct Node {
    id: String,
    deps: Vec<Dep>,
}
#[derive(serde::Deserialize)]
struct Dep {
    pkg: String,
    dep_kinds: Vec<DepKind>,
}
#[derive(serde::Deserialize)]
struct DepKind {
    kind: Option<String>,
}

/// Names of the crates `root` depends on at build/run time (not dev-dependencies): directly
/// only, or everything they pull in too (`transitive`).
fn deps(meta: &Metadata, root: &str, transitive: bool) -> BTreeSet<String> {
    let names: BTreeMap<&str, &str> = meta
        .packages
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let nodes: BTreeMap<&str, &Node> = meta
        .resolve
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n))
        .collect();
    let start = meta
        .packages
        .iter()
        .find(|p| p.name == root)
        .expect("workspace crate");
    let mut seen = BTreeSet::new();
    let mut stack = vec![start.id.as_str()];
    while let Some(id) = stack.pop() {
        for dep in &nodes[id].deps {
            let normal = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind.as_deref() != Some("dev"));
            if normal && seen.insert(dep.pkg.as_str()) && transitive {
                stack.push(dep.pkg.as_str());
            }
        }
    }
    seen.into_iter().map(|id| names[id].to_owned()).collect()
}

fn closure(meta: &Metadata, root: &str) -> BTreeSet<String> {
    deps(meta, root, true)
}

fn direct(meta: &Metadata, root: &str) -> BTreeSet<String> {
    deps(meta, root, false)
}

fn metadata() -> Metadata {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            // Not --offline: the full resolve includes other platforms' crates, which a fresh
            // machine has not downloaded.
            "--locked",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata json")
}

#[test]
fn crate_boundaries_hold() {
    let meta = metadata();
    for (krate, banned) in [
        ("vlmctl-bench", "bollard"),
        ("vlmctl-weights", "bollard"),
        ("vlmctl-lifecycle", "hf-hub"),
        ("vlmctl-bench", "vlmctl-lifecycle"),
        ("vlmctl-weights", "vlmctl-lifecycle"),
        ("vlmctl-lifecycle", "vlmctl-weights"),
        ("vlmctl-bench", "vlmctl-weights"),
        ("vlmctl-weights", "vlmctl-bench"),
        ("vlmctl-lifecycle", "vlmctl-bench"),
        ("vlmctl-weights", "vlmctl-deploy"),
        ("vlmctl-lifecycle", "vlmctl-deploy"),
        ("vlmctl-bench", "vlmctl-deploy"),
        // The history is a database, not a Docker or hub client.
        ("vlmctl-store", "bollard"),
        ("vlmctl-store", "hf-hub"),
        ("vlmctl-store", "vlmctl-deploy"),
        ("vlmctl-bench", "vlmctl-store"),
    ] {
        let deps = closure(&meta, krate);
        assert!(
            !deps.contains(banned),
            "{krate} must not depend on {banned} (DESIGN.md layout)"
        );
    }
    // The one bounded reader of users' files is a tiny shared crate: every library may use
    // it, and it uses none of them (nor Docker, the hub or HTTP).
    let files = closure(&meta, "vlmctl-files");
    assert!(
        !files.iter().any(|d| d.starts_with("vlmctl")
            || ["bollard", "hf-hub", "reqwest", "hyper", "rusqlite"].contains(&d.as_str())),
        "vlmctl-files depends on no vlmctl crate nor any client: {files:?}"
    );
    for lib in [
        "vlmctl-lifecycle",
        "vlmctl-weights",
        "vlmctl-bench",
        "vlmctl-deploy",
    ] {
        assert!(
            direct(&meta, lib).contains("vlmctl-files"),
            "{lib} reads users' files through vlmctl-files"
        );
    }
    // The jobs use the three capability crates; the CLI renders the jobs and never talks to
    // Docker or the hub itself.
    let deploy = direct(&meta, "vlmctl-deploy");
    for lib in ["vlmctl-weights", "vlmctl-lifecycle", "vlmctl-bench"] {
        assert!(deploy.contains(lib), "vlmctl-deploy uses {lib}: {deploy:?}");
    }
    let cli = direct(&meta, "vlmctl");
    // The history through vlmctl-store only: one schema, one place that writes SQL.
    for banned in ["bollard", "hf-hub", "reqwest", "hyper", "rusqlite"] {
        assert!(
            !cli.contains(banned),
            "the CLI must not use {banned} directly; the libraries do: {cli:?}"
        );
    }
    // The checks can fail: the CLI does reach bollard and hf-hub, through the libraries.
    let all = closure(&meta, "vlmctl");
    assert!(all.contains("bollard") && all.contains("hf-hub"));
    assert!(cli.contains("vlmctl-deploy") && cli.contains("vlmctl-store"));
    assert!(all.contains("rusqlite"));
    // The service is a front-end too: the jobs, the history and the bench through their crates,
    // never Docker, SQL or HTTP clients of its own.
    let serve = direct(&meta, "vlmctl-serve");
    for banned in ["bollard", "hf-hub", "reqwest", "rusqlite"] {
        assert!(
            !serve.contains(banned),
            "vlmctl-serve must not use {banned} directly: {serve:?}"
        );
    }
    assert!(serve.contains("vlmctl-deploy") && serve.contains("vlmctl-store"));
    for lib in [
        "vlmctl-deploy",
        "vlmctl-lifecycle",
        "vlmctl-bench",
        "vlmctl-store",
    ] {
        assert!(
            !closure(&meta, lib).contains("vlmctl-serve"),
            "{lib} must not depend on the service"
        );
    }
    test_support_is_a_dev_dependency_only(&meta);
}

/// No shipped crate links `vlmctl-test`: it is in `[dev-dependencies]` only.
fn test_support_is_a_dev_dependency_only(meta: &Metadata) {
    for p in meta
        .packages
        .iter()
        .filter(|p| p.name.starts_with("vlmctl"))
    {
        assert!(
            !direct(meta, &p.name).contains("vlmctl-test"),
            "{} depends on vlmctl-test outside [dev-dependencies]",
            p.name
        );
    }
}

/// The shared rules (env, redact, owner, chain) are std only, so every crate may use them.
#[test]
fn the_shared_rules_depend_on_nothing() {
    let meta = metadata();
    let base = closure(&meta, "vlmctl-base");
    assert!(base.is_empty(), "vlmctl-base depends on nothing: {base:?}");
    for user in [
        "vlmctl",
        "vlmctl-serve",
        "vlmctl-deploy",
        "vlmctl-lifecycle",
    ] {
        assert!(
            direct(&meta, user).contains("vlmctl-base"),
            "{user} reads its environment variables through vlmctl-base"
        );
    }
}

/// What a front-end's source may not do itself, with why: each is Docker or the hub reached
/// from the front-end rather than through a job of `vlmctl-deploy` (`crates/README.md`: "the
/// front-ends render the jobs and never talk to Docker or the hub themselves"). Types
/// (`containers::Launch`, `Managed`) may be named, to render them; calls may not. Building the
/// capability a job is handed (`HubClient::new`, the engine value) is the front-end's part.
const FRONT_END_BANNED: &[(&str, &str)] = &[
    ("vlmctl_lifecycle::connect", "connects to a Docker daemon"),
    (
        ".connect()",
        "connects to a Docker daemon (Engine::connect)",
    ),
    ("bollard::", "is the Docker client"),
    ("hf_hub::", "is the hub client"),
    (
        "containers::",
        "calls a container function (lowercase after `containers::`)",
    ),
    (
        ".resolve(",
        "asks the hub for a revision (HubClient::resolve)",
    ),
    (".fetch(", "downloads from the hub (HubClient::fetch)"),
    (
        ".commit_of(",
        "asks the hub for a commit (HubClient::commit_of)",
    ),
    (
        ".file_meta(",
        "asks the hub for a file's metadata (HubClient::file_meta)",
    ),
];

/// Each line of `text` (comments and `#[cfg(test)]` modules left out) that does what
/// [`FRONT_END_BANNED`] forbids, as `line: why`.
fn front_end_violations(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod ").next().unwrap_or_default();
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or_default();
        for (pattern, why) in FRONT_END_BANNED {
            let hit = line.match_indices(pattern).any(|(at, _)| {
                // `containers::Type` names a type; `containers::function(` calls Docker.
                *pattern != "containers::"
                    || line[at + pattern.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_lowercase())
            });
            if hit {
                out.push(format!("{}: `{}` {why}", n + 1, line.trim()));
            }
        }
    }
    out
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("source dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The rule can fail: each banned shape is caught, a type named under `containers::` is not.
#[test]
fn the_front_end_rule_catches_each_banned_call() {
    let text = "let d = vlmctl_lifecycle::connect().await?;\n\
                vlmctl_lifecycle::containers::ensure_image(&d, &i, None, &mut |_| {}).await?;\n\
                use vlmctl_lifecycle::containers::{ConflictInfo, Launch};\n\
                // vlmctl_lifecycle::connect() in a comment\n\
                let e = hub.resolve(&request).await?;\n\
                let o = hub.fetch(model, file, &dir, bar).await;\n\
                let docker = engine.connect().await?;\n";
    let found = front_end_violations(text);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert!(found[4].starts_with("7: ") && found[4].contains("Engine::connect"));
    assert!(found[1].starts_with("2: ") && found[1].contains("container function"));
}

/// The claim `crates/README.md` makes, checked in the sources (the Cargo graph above cannot
/// see calls made through the libraries' re-exports): the CLI and the service never connect to
/// Docker, call a container function, or ask the hub anything; the jobs do.
#[test]
fn front_ends_never_talk_to_docker_or_the_hub_in_their_sources() {
    let root = crate::common::repo_root();
    let mut files = Vec::new();
    for front_end in ["crates/vlmctl/src", "crates/vlmctl-serve/src"] {
        rust_files(&root.join(front_end), &mut files);
    }
    files.sort();
    assert!(files.len() > 10, "{files:?}");
    let mut wrong = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("utf-8 source");
        for v in front_end_violations(&text) {
            wrong.push(format!(
                "{}:{v}",
                f.strip_prefix(&root).unwrap_or(f).display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "front-ends must reach Docker and the hub through vlmctl-deploy's jobs:\n{}",
        wrong.join("\n")
    );
}

/// The writes in `text` that bypass the redactor: `print!`-family macros, or stdout/stderr
/// used for anything but asking whether it is a terminal.
fn unscrubbed_writes(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod ").next().unwrap_or_default();
    code.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.split("//").next().unwrap_or_default();
            ["print!(", "println!(", "eprint!(", "eprintln!("]
                .iter()
                .any(|m| l.contains(m))
                || ["io::stdout()", "io::stderr()"].iter().any(|s| {
                    l.match_indices(s)
                        .any(|(at, _)| !l[at + s.len()..].starts_with(".is_terminal()"))
                })
        })
        .map(|(n, l)| format!("{}: {}", n + 1, l.trim()))
        .collect()
}

/// Every line the CLI writes goes through `src/redact.rs` (scrubbed of secrets, control
/// characters made visible): no other file writes to stdout or stderr itself. The prompt and
/// the sweep's step lines did (review 2026-12-07, defect 10).
#[test]
fn the_cli_writes_only_through_the_redactor() {
    assert_eq!(
        unscrubbed_writes(
            "let mut err = std::io::stderr().lock();\nlet t = std::io::stderr().is_terminal();\neprintln!(\"x\");\n"
        ),
        [
            "1: let mut err = std::io::stderr().lock();",
            "3: eprintln!(\"x\");"
        ]
    );
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("redact.rs")) {
        let text = std::fs::read_to_string(f).expect("utf-8 source");
        for w in unscrubbed_writes(&text) {
            wrong.push(format!("{}:{w}", f.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "write through crate::redact (write_line, write_unfinished, output::Output):\n{}",
        wrong.join("\n")
    );
}
