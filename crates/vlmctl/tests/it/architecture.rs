//! The architecture, enforced: bench and weights never depend on bollard (Docker); lifecycle
//! never depends on hf-hub (the network fetch); the store is a database only, and the CLI
//! reaches SQLite through it; the one reader of users' files (`vlmctl-files`) is shared by the
//! libraries and depends on none of them. Checked over `cargo metadata`'s resolved graph,
//! transitively.

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

#[test]
fn crate_boundaries_hold() {
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
    let meta: Metadata = serde_json::from_slice(&out.stdout).expect("metadata json");
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
