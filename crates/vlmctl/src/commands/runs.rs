//! `vlmctl runs import | list | show`: the history of bench runs. The read commands never create
//! a database: where there is none they say so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;
use vlmctl_store::{Imported, RunFilter, RunRow, State, Store, TargetLink};

use crate::cli::{RunsImportArgs, RunsListArgs, RunsShowArgs, StateDirArgs, StoreArgs};
use crate::failure::Failure;
use crate::history::store_path;
use crate::render;
use crate::{Output, exit_codes};

/// What to run when the history is empty.
const HOW_TO_RECORD: &str = "`vlmctl bench --plan FILE` records each run; `vlmctl runs import DIR` loads earlier results.json files";

/// The database of `--store`/`--state-dir`, opened only when it exists and is not empty
/// (`None`: no history yet; a 0-byte file is left as it is, [`Store::is_absent_or_empty`]):
/// checked before anything is changed (a newer one, another program's, is refused untouched),
/// and read-only where it cannot be written ([`Store::open_read`]).
fn existing(store: &StoreArgs, state: &StateDirArgs) -> Result<(PathBuf, Option<Store>), Failure> {
    let path = store_path(store, &state.dir());
    if Store::is_absent_or_empty(&path) {
        return Ok((path, None));
    }
    let s = Store::open_read(&path)?;
    Ok((path, Some(s)))
}

/// `vlmctl runs import PATH...`.
pub fn import(args: &RunsImportArgs, out: &mut Output) -> Result<u8, Failure> {
    let path = store_path(&args.store, &args.state.dir());
    let mut store = Store::open(&path)?;
    let host = args
        .host
        .clone()
        .unwrap_or_else(|| vlmctl_deploy::history::name_of(&vlmctl_lifecycle::hosts::Host::Local));
    let mut outcomes = Vec::new();
    let mut failed: Vec<Failure> = Vec::new();
    for given in &args.paths {
        let files = match results_files(given) {
            Ok(files) => files,
            Err(f) => {
                failed.push(failure(f, given, &mut outcomes, args.json, out));
                continue;
            }
        };
        for file in files {
            let results = match vlmctl_bench::load_results(&file) {
                Ok(r) => r,
                Err(e) => {
                    failed.push(failure(e.into(), &file, &mut outcomes, args.json, out));
                    continue;
                }
            };
            // A results.json does not carry its plan's path: the file names the run instead.
            let plan = file.display().to_string();
            let targets: Vec<TargetLink> = results
                .targets
                .iter()
                .map(|t| TargetLink {
                    target: t.name.clone(),
                    url: t.url.clone(),
                    // As the file names them (files written before hosts name none).
                    host: t.host.clone(),
                    deployment: t.deployment.clone(),
                    ..TargetLink::default()
                })
                .collect();
            // The database failing is not this file's fault: it ends the import.
            let done = store.import(&results, &host, &plan, &targets)?;
            let (id, new) = match done {
                Imported::New(id) => (id, true),
                Imported::Already(id) => (id, false),
            };
            if !args.json {
                out.stdout(&if new {
                    format!("imported run {id} from {}", file.display())
                } else {
                    format!("already in the history as run {id}: {}", file.display())
                });
            }
            outcomes.push(json!({"path": file, "run": id, "new": new}));
        }
    }
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&outcomes).unwrap_or_default());
    }
    let message = crate::failure::some_failed(failed.len(), outcomes.len(), "file", "imported");
    Failure::of_many(failed, message).map_or(Ok(exit_codes::SUCCESS), Err)
}

/// One file that could not be imported: said at once (it names the file), kept for the end.
fn failure(
    f: Failure,
    file: &Path,
    outcomes: &mut Vec<serde_json::Value>,
    json: bool,
    out: &mut Output,
) -> Failure {
    if !json {
        out.progress(&f.render());
    }
    outcomes.push(json!({"path": file, "error": format!("{:#}", f.error), "hint": f.hint}));
    f
}

/// A `results.json` file as given, or every `results.json` under a directory (sorted).
fn results_files(path: &Path) -> Result<Vec<PathBuf>, Failure> {
    let meta = std::fs::metadata(path).map_err(|source| {
        Failure::from(vlmctl_bench::BenchError::Read {
            path: path.to_owned(),
            source,
        })
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| {
            Failure::from(vlmctl_bench::BenchError::Read {
                path: dir.clone(),
                source,
            })
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p);
            } else if p.file_name().is_some_and(|n| n == "results.json") {
                found.push(p);
            }
        }
    }
    if found.is_empty() {
        return Err(Failure::new(
            anyhow::anyhow!("no results.json under {}", path.display()),
            Some("`vlmctl bench` writes results.json into its --out directory".to_owned()),
            exit_codes::INVALID_INPUT,
        ));
    }
    found.sort();
    Ok(found)
}

/// `vlmctl runs list`.
pub fn list(args: &RunsListArgs, out: &mut Output) -> Result<u8, Failure> {
    let (path, store) = existing(&args.store, &args.state)?;
    let rows = match &store {
        Some(s) => s.runs(&RunFilter {
            deployment: args.deployment.clone(),
            host: args.host.clone(),
            config: args.config.clone(),
            limit: Some(args.limit),
        })?,
        None => Vec::new(),
    };
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else if store.is_none() {
        out.stdout(&format!(
            "no history yet at {}\nhint: {HOW_TO_RECORD}",
            path.display()
        ));
    } else if rows.is_empty() {
        let filtered = args.deployment.is_some() || args.host.is_some() || args.config.is_some();
        out.stdout(&if filtered {
            format!("no run in {} matches", path.display())
        } else {
            format!("no runs in {} yet\nhint: {HOW_TO_RECORD}", path.display())
        });
    } else {
        out.stdout(&runs_table(&rows));
    }
    Ok(exit_codes::SUCCESS)
}

/// Pure: the list as a table, newest first as given.
#[must_use]
pub fn runs_table(rows: &[RunRow]) -> String {
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            // Hosts, deployments, plans and configs come from outside (an imported file):
            // made visible before the widths are measured.
            [
                r.id.to_string(),
                vlmctl_store::utc_minute(r.started_unix),
                r.state.to_string(),
                render::visible(&r.host).into_owned(),
                render::visible(&r.deployments()).into_owned(),
                render::visible(&r.plan).into_owned(),
                render::visible(&p50s(r)).into_owned(),
            ]
        })
        .collect();
    render::table(
        &[
            "ID",
            "STARTED (UTC)",
            "STATE",
            "HOST",
            "DEPLOYMENT",
            "PLAN",
            "P50",
        ],
        &cells,
    )
}

/// `A 18.4 ms, C 20.1 ms`, each config prefixed with its target when there are several.
fn p50s(r: &RunRow) -> String {
    let several = r
        .points
        .iter()
        .any(|p| r.points.first().is_some_and(|f| f.target != p.target));
    let text: Vec<String> = r
        .points
        .iter()
        .map(|p| {
            let name = if several {
                format!("{}/{}", p.target, p.config)
            } else {
                p.config.clone()
            };
            match p.p50_ms {
                Some(ms) => format!("{name} {ms:.1} ms"),
                None => format!("{name} -"),
            }
        })
        .collect();
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.join(", ")
    }
}

/// `vlmctl runs show ID`.
pub fn show(args: &RunsShowArgs, out: &mut Output) -> Result<u8, Failure> {
    let (path, store) = existing(&args.store, &args.state)?;
    let Some(store) = store else {
        return Err(Failure::new(
            anyhow::anyhow!("no run {}: no history yet at {}", args.id, path.display()),
            Some(HOW_TO_RECORD.to_owned()),
            exit_codes::INVALID_INPUT,
        ));
    };
    let run = store.run(args.id)?;
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&run).unwrap_or_default());
        return Ok(exit_codes::SUCCESS);
    }
    let mut text = header(&run.row);
    if let Some(results) = run
        .results
        .as_ref()
        .filter(|_| run.row.state == State::Done)
    {
        text.push_str("\n\n");
        if results.sweep.is_empty() {
            text.push_str(&vlmctl_bench::report::table(results));
        } else {
            text.push_str(&vlmctl_bench::sweep::table(&results.sweep));
        }
    }
    out.stdout(&text);
    Ok(exit_codes::SUCCESS)
}

/// Pure: where and what a run measured, a line per fact.
#[must_use]
pub fn header(r: &RunRow) -> String {
    let short = |h: &Option<String>| h.as_deref().map(|h| h.chars().take(12).collect::<String>());
    let mut text = format!(
        "run {}: {} (recorded by {})\nstarted:  {} UTC",
        r.id,
        r.state,
        serde_json::to_value(r.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        vlmctl_store::utc_minute(r.started_unix)
    );
    if let Some(end) = r.finished_unix {
        let _ = write!(
            text,
            ", ended {} UTC ({} s)",
            vlmctl_store::utc_minute(end),
            end - r.started_unix
        );
    }
    let _ = write!(text, "\nhost:     {}\nplan:     {}", r.host, r.plan);
    for t in &r.targets {
        let _ = write!(text, "\ntarget:   {} {}", t.target, t.url);
        // A target on another host than the run's (a plan may measure several hosts).
        if let Some(h) = t.host.as_ref().filter(|h| **h != r.host) {
            let _ = write!(text, " on {h}");
        }
        match &t.deployment {
            Some(d) => {
                let facts: Vec<String> = [
                    short(&t.spec_sha256).map(|h| format!("spec {h}")),
                    short(&t.lock_sha256).map(|h| format!("lock {h}")),
                    t.model.as_ref().map(|m| format!("model {m}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                let _ = write!(text, " -> {d}");
                if !facts.is_empty() {
                    let _ = write!(text, " ({})", facts.join(", "));
                }
            }
            None => text.push_str(" (no managed deployment known)"),
        }
    }
    if let Some(e) = &r.error {
        let _ = write!(text, "\nerror:    {e}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlmctl_store::{Point, Source};

    fn point(target: &str, config: &str, p50: Option<f64>) -> Point {
        Point {
            target: target.to_owned(),
            config: config.to_owned(),
            description: String::new(),
            ok: 3,
            errors: 0,
            p50_ms: p50,
            p95_ms: None,
            p99_ms: None,
            ttft_p50_ms: None,
            server_tokens_per_s: None,
            schema_pass: None,
        }
    }

    fn row(points: Vec<Point>, targets: Vec<TargetLink>) -> RunRow {
        RunRow {
            id: 7,
            started_unix: 1_700_000_000,
            finished_unix: Some(1_700_000_042),
            state: State::Done,
            source: Source::Cli,
            host: "panda".to_owned(),
            plan: "examples/nav-bench.toml".to_owned(),
            error: None,
            targets,
            points,
        }
    }

    #[test]
    fn the_list_shows_each_configs_p50_and_the_target_only_when_there_are_several() {
        let one = row(
            vec![point("t", "A", Some(18.44)), point("t", "C", None)],
            vec![TargetLink {
                target: "t".to_owned(),
                deployment: Some("panda-llamacpp".to_owned()),
                ..TargetLink::default()
            }],
        );
        assert_eq!(p50s(&one), "A 18.4 ms, C -");
        assert_eq!(one.deployments(), "panda-llamacpp");
        let two = row(
            vec![point("a", "A", Some(1.0)), point("b", "A", Some(2.0))],
            Vec::new(),
        );
        assert_eq!(p50s(&two), "a/A 1.0 ms, b/A 2.0 ms");
        assert_eq!(two.deployments(), "-");
        assert_eq!(p50s(&row(Vec::new(), Vec::new())), "-");
    }

    #[test]
    fn the_header_names_the_deployment_with_short_hashes() {
        let r = row(
            Vec::new(),
            vec![TargetLink {
                target: "t".to_owned(),
                url: "http://127.0.0.1:8080".to_owned(),
                deployment: Some("panda-llamacpp".to_owned()),
                spec_sha256: Some("ab".repeat(32)),
                lock_sha256: Some("cd".repeat(32)),
                model: Some("gemma".to_owned()),
                host: Some("panda".to_owned()),
            }],
        );
        assert_eq!(
            header(&r),
            "run 7: done (recorded by cli)\nstarted:  2023-11-14 22:13 UTC, ended 2023-11-14 22:14 UTC (42 s)\n\
             host:     panda\nplan:     examples/nav-bench.toml\n\
             target:   t http://127.0.0.1:8080 -> panda-llamacpp (spec abababababab, lock cdcdcdcdcdcd, model gemma)"
        );
        // A target on another host than the run's says so.
        let mut two_hosts = r.clone();
        two_hosts.targets.push(TargetLink {
            target: "ollama".to_owned(),
            url: "http://127.0.0.1:11434".to_owned(),
            host: Some("beast".to_owned()),
            ..TargetLink::default()
        });
        assert!(
            header(&two_hosts).ends_with(
                "\ntarget:   ollama http://127.0.0.1:11434 on beast (no managed deployment known)"
            ),
            "{}",
            header(&two_hosts)
        );
    }
}
