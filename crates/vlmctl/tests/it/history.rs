//! The history from the command line: `vlmctl bench` records its runs (and jobs record
//! themselves), `vlmctl runs import | list | show` read them, a history that cannot be written
//! never fails the work, and a bench killed mid-run shows up `interrupted`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use vlmctl_bench::fake_server::{DEFAULT_ANSWER, FakeServer, Options, Reply};

use crate::common::{poll_until, redact, run, vlmctl};

/// A plan in `dir` against `url`: configs A and C, 3 runs, no warm-up.
fn plan(dir: &Path, url: &str) -> PathBuf {
    crate::common::fake_plan(dir, url, 120, "")
}

/// `vlmctl bench --plan PLAN --out DIR/out` with `--state-dir DIR/state` and `extra`.
fn bench(dir: &Path, plan: &Path, extra: &[&str]) -> (i32, String, String) {
    run(vlmctl()
        .args(["bench", "--plan"])
        .arg(plan)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra))
}

/// `vlmctl runs ARGS --state-dir DIR/state`.
fn runs(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run(vlmctl()
        .arg("runs")
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state")))
}

/// `runs list --json`, parsed.
fn listed(dir: &Path) -> Vec<Value> {
    let (code, out, err) = runs(dir, &["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bench_is_recorded_done_with_its_p50s_and_runs_show_prints_it() {
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path(), &server.endpoint());
    let (code, _, err) = bench(tmp.path(), &plan, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    // The default place: <state>/history.sqlite.
    assert!(tmp.path().join("state/history.sqlite").is_file());

    let rows = listed(tmp.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["source"], "cli", "{r}");
    assert_eq!(r["plan"], plan.display().to_string(), "{r}");
    assert_eq!(r["targets"][0]["target"], "fake", "{r}");
    assert_eq!(r["targets"][0]["url"], server.endpoint(), "{r}");
    let configs: Vec<&str> = r["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["p50_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{p}");
            assert_eq!(p["ok"], 3, "{p}");
            p["config"].as_str().unwrap()
        })
        .collect();
    assert_eq!(configs, ["A", "C"]);

    let (code, out, err) = runs(tmp.path(), &["list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("ID  STARTED (UTC)"), "{out}");
    assert!(lines[1].starts_with("1 "), "{out}");
    assert!(lines[1].contains(" done "), "{out}");
    assert!(
        lines[1].contains(" A ") && lines[1].contains(" ms, C "),
        "{out}"
    );

    let (code, out, err) = runs(tmp.path(), &["show", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("run 1: done (recorded by cli)\n"), "{out}");
    assert!(
        out.contains(&format!("\nplan:     {}\n", plan.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "\ntarget:   fake {} (no managed deployment known)",
            server.endpoint()
        )),
        "{out}"
    );
    // The results table, as `vlmctl bench` printed it.
    let results = vlmctl_bench::load_results(&tmp.path().join("out/results.json")).unwrap();
    assert!(
        out.ends_with(&format!("\n\n{}\n", vlmctl_bench::report::table(&results))),
        "{out}"
    );

    let (code, out, _) = runs(tmp.path(), &["show", "1", "--json"]);
    assert_eq!(code, 0);
    let detail: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(detail["results"]["started_unix"], results.started_unix);

    let (code, _, err) = runs(tmp.path(), &["show", "9"]);
    assert_eq!(code, 3, "{err}");
    insta::assert_snapshot!("show-unknown-id", redact(&err, tmp.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_record_creates_no_database() {
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path(), &server.endpoint());
    let (code, _, err) = bench(tmp.path(), &plan, &["--no-record"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(vlmctl()
        .args(["bench", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(tmp.path().join("out2"))
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .env(vlmctl::env_vars::VLMCTL_NO_RECORD, "1"));
    assert_eq!(code, 0, "{err}");
    assert!(
        !tmp.path().join("state").exists(),
        "nothing created under the state dir"
    );
    // Reading does not create one either.
    let (code, out, _) = runs(tmp.path(), &["list"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("list-no-history", redact(&out, tmp.path()));
    assert_eq!(listed(tmp.path()), Vec::<Value>::new());
    assert!(!tmp.path().join("state").exists());
    // VLMCTL_NO_RECORD=0 is "no": recorded.
    let (code, _, err) = run(vlmctl()
        .args(["bench", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(tmp.path().join("out3"))
        .arg("--store")
        .arg(tmp.path().join("elsewhere.sqlite"))
        .env(vlmctl::env_vars::VLMCTL_NO_RECORD, "0"));
    assert_eq!(code, 0, "{err}");
    assert!(tmp.path().join("elsewhere.sqlite").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_history_is_a_warning_and_the_bench_still_succeeds() {
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path(), &server.endpoint());
    // A file where the database's folder should be: unwritable even for root.
    std::fs::write(tmp.path().join("blocker"), "").unwrap();
    let (code, out, err) = bench(
        tmp.path(),
        &plan,
        &[
            "--store",
            &tmp.path()
                .join("blocker/history.sqlite")
                .display()
                .to_string(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("A full nav prompt"), "{out}");
    assert!(tmp.path().join("out/results.json").is_file());
    let warning: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("warning:") || l.starts_with("hint:"))
        .collect();
    insta::assert_snapshot!(redact(&warning.join("\n"), tmp.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_results_imported_twice_are_one_run() {
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path(), &server.endpoint());
    let (code, _, err) = bench(tmp.path(), &plan, &["--no-record"]);
    assert_eq!(code, 0, "{err}");
    let results = tmp.path().join("out/results.json");
    let (code, _, err) = runs(tmp.path(), &["import"]);
    assert_eq!(code, 2, "a path is required: {err}");
    let import = |path: &Path| {
        run(vlmctl()
            .args(["runs", "import", "--host", "beast", "--state-dir"])
            .arg(tmp.path().join("state"))
            .arg(path))
    };
    let (code, out, err) = import(&results);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("imported run 1 from {}\n", results.display()));
    // Again, through its directory.
    let (code, out, err) = import(&tmp.path().join("out"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("already in the history as run 1: {}\n", results.display())
    );
    let rows = listed(tmp.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["source"], "import");
    assert_eq!(rows[0]["host"], "beast");
    assert_eq!(rows[0]["state"], "done");
    assert_eq!(rows[0]["targets"][0]["url"], server.endpoint());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_results_file_is_named_and_the_others_are_still_imported() {
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path(), &server.endpoint());
    let (code, _, err) = bench(tmp.path(), &plan, &["--no-record"]);
    assert_eq!(code, 0, "{err}");
    let all = tmp.path().join("all");
    std::fs::create_dir_all(all.join("a")).unwrap();
    std::fs::create_dir_all(all.join("b/deeper")).unwrap();
    std::fs::copy(
        tmp.path().join("out/results.json"),
        all.join("b/deeper/results.json"),
    )
    .unwrap();
    std::fs::write(all.join("a/results.json"), "{\"format\": ").unwrap();
    std::fs::write(all.join("a/notes.txt"), "not a results file").unwrap();
    let (code, out, err) = runs(tmp.path(), &["import", &all.display().to_string()]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        out,
        format!(
            "imported run 1 from {}\n",
            all.join("b/deeper/results.json").display()
        )
    );
    insta::assert_snapshot!(redact(&err, tmp.path()));
    assert_eq!(listed(tmp.path()).len(), 1);

    let (code, out, _) = runs(
        tmp.path(),
        &["import", "--json", &all.display().to_string()],
    );
    assert_eq!(code, 3);
    let outcomes: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(outcomes.len(), 2, "{out}");
    assert!(
        outcomes[0]["error"]
            .as_str()
            .unwrap()
            .contains("a/results.json")
    );
    assert_eq!(outcomes[1]["run"], 1);
    assert_eq!(outcomes[1]["new"], false);
}

/// A bench whose every chat request takes a minute, started with its output ignored.
async fn slow_bench(tmp: &Path) -> (FakeServer, std::process::Child) {
    let server = FakeServer::start_with(
        [],
        Options {
            then: Reply::Say(DEFAULT_ANSWER.to_owned()).after(Duration::from_secs(60)),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let plan = plan(tmp, &server.endpoint());
    let child = vlmctl()
        .args(["bench", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(tmp.join("out"))
        .arg("--state-dir")
        .arg(tmp.join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Recorded `running` once the requests have started.
    poll_until(
        "the run recorded as running",
        Duration::from_secs(30),
        || {
            tmp.join("state/history.sqlite").exists()
                && listed(tmp).first().is_some_and(|r| r["state"] == "running")
        },
    );
    (server, child)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bench_killed_mid_run_is_listed_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, mut child) = slow_bench(tmp.path()).await;
    child.kill().unwrap(); // SIGKILL: nothing runs in the process after this.
    child.wait().unwrap();
    let rows = listed(tmp.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "interrupted", "{:?}", rows[0]);
    assert!(
        rows[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ended before it finished")),
        "{:?}",
        rows[0]
    );
    assert!(!tmp.path().join("out").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_a_bench_records_it_interrupted_at_once_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, child) = slow_bench(tmp.path()).await;
    crate::common::signal("INT", &child.id().to_string());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(
        err.contains("error: bench stopped by Ctrl-C (SIGINT); no results were written"),
        "{err}"
    );
    // Recorded by the process itself, not by the orphan sweep of the next open.
    let rows = listed(tmp.path());
    assert_eq!(rows[0]["state"], "interrupted", "{:?}", rows[0]);
    assert_eq!(rows[0]["error"], "stopped by Ctrl-C (SIGINT)");
}

#[test]
fn a_job_records_itself_and_no_record_skips_it() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // No journal under the state dir: restore has nothing to do and needs no Docker for it.
    let (code, _, err) = run(vlmctl()
        .args(["restore", "--no-record", "--state-dir"])
        .arg(&state));
    assert_eq!(code, 0, "{err}");
    assert!(!state.join("history.sqlite").exists());
    let (code, _, err) = run(vlmctl().args(["restore", "--state-dir"]).arg(&state));
    assert_eq!(code, 0, "{err}");
    let store = vlmctl_store::Store::open(&state.join("history.sqlite")).unwrap();
    let jobs = store.jobs(None).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].kind, vlmctl_store::JobKind::Restore);
    assert_eq!(jobs[0].state, vlmctl_store::State::Done);
    assert_eq!(jobs[0].detail.as_deref(), Some("nothing to restore"));
    assert_eq!(
        jobs[0].host,
        vlmctl_deploy::history::name_of(&vlmctl_lifecycle::hosts::Host::Local)
    );
}

/// A results file of a real bench, written once for tests that only need one to import.
async fn one_results_file(tmp: &Path) -> PathBuf {
    let server = FakeServer::start([]).await.unwrap();
    let plan = plan(tmp, &server.endpoint());
    let (code, _, err) = bench(tmp, &plan, &["--no-record"]);
    assert_eq!(code, 0, "{err}");
    tmp.join("out/results.json")
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_sequences_from_an_imported_file_never_reach_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let results = one_results_file(tmp.path()).await;
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    r["targets"][0]["name"] = "T\u{1b}]0;HIJACKED-TITLE\u{7}\u{1b}[2J\u{1b}[31mRED".into();
    r["targets"][0]["deployment"] = "dep\u{1b}[5mBLINK\u{1b}[0m".into();
    r["targets"][0]["url"] = "http://127.0.0.1:1/\u{9b}31m\r".into();
    let esc = tmp.path().join("esc");
    std::fs::create_dir_all(&esc).unwrap();
    std::fs::write(esc.join("results.json"), r.to_string()).unwrap();
    let (code, _, err) = runs(tmp.path(), &["import", &esc.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let (code, list, err) = runs(tmp.path(), &["list"]);
    assert_eq!(code, 0, "{err}");
    let (code, show, err) = runs(tmp.path(), &["show", "1"]);
    assert_eq!(code, 0, "{err}");
    for out in [&list, &show] {
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "a control character reached the terminal: {out:?}"
        );
    }
    assert!(list.contains("dep^[[5mBLINK^[[0m"), "{list}");
    assert!(
        show.contains("T^[]0;HIJACKED-TITLE^G^[[2J^[[31mRED http://127.0.0.1:1/\\u009b31m^M"),
        "{show}"
    );
    // JSON stays JSON, with the strings as they were (C0 escaped by serde, C1 by us).
    let rows = listed(tmp.path());
    assert_eq!(
        rows[0]["targets"][0]["deployment"],
        "dep\u{1b}[5mBLINK\u{1b}[0m"
    );
    assert_eq!(
        rows[0]["targets"][0]["url"],
        "http://127.0.0.1:1/\u{9b}31m\r"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_reads_regular_files_only_and_names_what_it_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let results = one_results_file(tmp.path()).await;
    let dir = tmp.path().join("sym");
    for d in ["a", "b", "c"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("/dev/zero", dir.join("a/results.json")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("b/results.json"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::copy(&results, dir.join("c/results.json")).unwrap();
    let t = std::time::Instant::now();
    let mut child = vlmctl()
        .args(["runs", "import", "--state-dir"])
        .arg(tmp.path().join("state"))
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Neither blocks on the FIFO nor reads /dev/zero until memory runs out.
    poll_until("the import ended", Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(
        stderr.contains("a/results.json")
            && stderr.contains("not a regular file but a character device"),
        "{stderr}"
    );
    assert!(
        stderr.contains("b/results.json") && stderr.contains("not a regular file but a FIFO"),
        "{stderr}"
    );
    assert!(stdout.contains("imported run 1 from"), "{stdout}");
    assert_eq!(listed(tmp.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_refuses_a_limit_of_zero_instead_of_saying_the_history_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let results = one_results_file(tmp.path()).await;
    let (code, _, err) = runs(tmp.path(), &["import", &results.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = runs(tmp.path(), &["list", "--limit", "0"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(!out.contains("no runs"), "{out}");
    assert!(err.contains("--limit"), "{err}");
    let (code, out, err) = runs(tmp.path(), &["list", "--limit", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "header and the run: {out}");
}

/// SHA-256 of a file's bytes.
fn digest(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn list_and_show_leave_a_newer_or_foreign_database_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    // Written as another program would (rusqlite: the same SQLite, not vlmctl's code).
    let sql = |path: &Path, script: &str| {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch(script).unwrap();
    };
    let newer = tmp.path().join("newer.db");
    sql(
        &newer,
        "PRAGMA journal_mode=delete; CREATE TABLE runs(id INTEGER PRIMARY KEY, future TEXT); PRAGMA user_version=4;",
    );
    let foreign = tmp.path().join("foreign.db");
    sql(&foreign, "CREATE TABLE moz_places(id, url);");
    for (db, says) in [
        (&newer, "schema version 4, newer than this vlmctl's 3"),
        (&foreign, "is not a vlmctl history"),
    ] {
        let before = digest(db);
        for args in [&["list"][..], &["show", "1"]] {
            let (code, out, err) = run(vlmctl().arg("runs").args(args).arg("--store").arg(db));
            assert_eq!(code, 5, "{out}{err}");
            assert!(err.contains(says), "{err}");
            assert!(err.contains("hint:"), "{err}");
        }
        assert_eq!(digest(db), before, "{} changed", db.display());
        // Still a rollback journal (bytes 18-19 of the header are 1, 1; WAL is 2, 2).
        let header = std::fs::read(db).unwrap();
        assert_eq!(&header[18..20], &[1, 1], "{}", db.display());
    }
}
