//! The history database against real SQLite: round trips, filters, trends, imports, schema
//! versions, and what a killed writer leaves behind.

mod kill;

use std::collections::BTreeMap;

use vlmctl_bench::client::ServerTimings;
use vlmctl_bench::plan::Plan;
use vlmctl_bench::run::{self, ConfigResult, Environment, Results, Sample, TargetResult};
use vlmctl_store::{
    Imported, JobKind, NewJob, NewRun, RunFilter, Source, State, Store, StoreError, TargetLink,
};

pub(crate) fn sample(i: usize, wall: f64) -> Sample {
    Sample {
        index: i,
        wall_ms: wall,
        ttft_ms: None,
        error: None,
        error_detail: None,
        strategy: None,
        server: ServerTimings::default(),
        completion_tokens: Some(4),
        scheduled_ms: None,
        queue_ms: None,
        itl_ms: Vec::new(),
        timings_unusable: None,
    }
}

/// A results document: one target `cpu`, configs A (p50 `p50`) and T (p50 `p50 * 2`).
pub(crate) fn results(started: u64, p50: f64) -> Results {
    let plan: Plan = toml::from_str(
        "version = 1\nruns = 5\n[[target]]\nname = \"cpu\"\nurl = \"http://127.0.0.1:18435\"\n",
    )
    .expect("plan");
    let config = |name: &str, p: f64| {
        let samples: Vec<Sample> = (0..5).map(|i| sample(i, p - 2.0 + i as f64)).collect();
        ConfigResult {
            name: name.to_owned(),
            description: format!("config {name}"),
            summary: run::summarize(&samples, false, None),
            warmup: Vec::new(),
            samples,
        }
    };
    Results {
        format: run::FORMAT.to_owned(),
        started_unix: started,
        plan,
        plan_sha256: "p".repeat(64),
        prompt_sha256: BTreeMap::new(),
        image_sha256: String::new(),
        environment: Environment {
            arch: "x86_64".into(),
            cpu: None,
            gpu: None,
            vlmctl: "0".into(),
        },
        targets: vec![TargetResult {
            name: "cpu".into(),
            backend: vlmctl_bench::plan::Backend::Openai,
            url: "http://127.0.0.1:18435".into(),
            host: None,
            deployment: None,
            server_info: serde_json::Value::Null,
            models: serde_json::Value::Null,
            describe_answer: None,
            describe_error: None,
            configs: vec![config("A", p50), config("T", p50 * 2.0)],
        }],
        sweep: Vec::new(),
    }
}

pub(crate) fn link(deployment: &str) -> Vec<TargetLink> {
    vec![TargetLink {
        target: "cpu".into(),
        url: "http://127.0.0.1:18435".into(),
        deployment: Some(deployment.into()),
        spec_sha256: Some("s".repeat(64)),
        lock_sha256: Some("l".repeat(64)),
        model: Some("gemma".into()),
        host: Some("local".into()),
    }]
}

pub(crate) fn new_run(deployment: &str) -> NewRun {
    NewRun {
        source: Source::Cli,
        host: "local".into(),
        plan: "examples/cpu-bench.toml".into(),
        plan_json: serde_json::json!({"runs": 5}),
        targets: link(deployment),
        state: State::Running,
    }
}

#[test]
fn a_run_is_running_then_done_with_its_results_and_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state/history.sqlite");
    let mut s = Store::open(&path).expect("open creates the folder and the file");
    let id = s.begin_run(&new_run("vlmctl-cpu-test")).expect("begin");
    let listed = s.runs(&RunFilter::default()).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, State::Running);
    assert!(listed[0].points.is_empty());
    assert!(s.run(id).expect("show").results.is_none());

    let r = results(1_700_000_000, 20.0);
    s.finish_run(id, &r).expect("finish");
    let d = s.run(id).expect("show");
    assert_eq!(d.row.state, State::Done);
    assert_eq!(
        d.results.as_ref(),
        Some(&r),
        "the document reads back bit-exact"
    );
    assert_eq!(d.row.points.len(), 2);
    assert_eq!(d.row.points[0].p50_ms, Some(20.0));
    assert_eq!(d.row.points[1].p50_ms, Some(40.0));
    assert_eq!(
        d.row.targets[0].deployment.as_deref(),
        Some("vlmctl-cpu-test")
    );
    assert!(matches!(
        s.finish_run(id, &r),
        Err(StoreError::NotRunning { .. })
    ));
    assert!(matches!(s.run(id + 100), Err(StoreError::NotFound { .. })));

    drop(s);
    let s = Store::open(&path).expect("reopen");
    assert_eq!(
        s.run(id).expect("show").results.as_ref(),
        Some(&r),
        "survives a reopen"
    );
    assert_eq!(s.integrity_check().expect("check"), "ok");
}

#[test]
fn filters_by_deployment_host_and_config_and_trends_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::open(&dir.path().join("h.sqlite")).expect("open");
    for (dep, p50) in [("a", 10.0), ("b", 30.0), ("a", 12.0)] {
        let id = s.begin_run(&new_run(dep)).expect("begin");
        s.finish_run(id, &results(1, p50)).expect("finish");
    }
    let failed = s.begin_run(&new_run("a")).expect("begin");
    s.fail_run(failed, "no request succeeded").expect("fail");

    let only =
        |f: RunFilter| -> Vec<i64> { s.runs(&f).expect("list").iter().map(|r| r.id).collect() };
    assert_eq!(only(RunFilter::default()), vec![4, 3, 2, 1], "newest first");
    let a = RunFilter {
        deployment: Some("a".into()),
        ..RunFilter::default()
    };
    assert_eq!(only(a.clone()), vec![4, 3, 1]);
    assert_eq!(
        only(RunFilter {
            host: Some("beast".into()),
            ..RunFilter::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        only(RunFilter {
            config: Some("T".into()),
            ..RunFilter::default()
        }),
        vec![3, 2, 1],
        "the failed run has no configs"
    );
    assert_eq!(
        only(RunFilter {
            limit: Some(1),
            ..RunFilter::default()
        }),
        vec![4]
    );
    let t = s
        .trend(&RunFilter {
            config: Some("A".into()),
            ..a
        })
        .expect("trend");
    let p50s: Vec<_> = t.iter().map(|p| (p.run_id, p.point.p50_ms)).collect();
    assert_eq!(p50s, vec![(1, Some(10.0)), (3, Some(12.0))]);
    assert_eq!(
        s.run(failed).expect("show").row.error.as_deref(),
        Some("no request succeeded")
    );
}

#[test]
fn a_target_on_another_host_is_found_by_that_host_and_trends_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::open(&dir.path().join("h.sqlite")).expect("open");
    // A run recorded on panda whose one target is beast's deployment (a plan's `host`).
    let mut run = new_run("beast-e4b");
    run.host = "panda".into();
    run.targets[0].host = Some("beast".into());
    let id = s.begin_run(&run).expect("begin");
    s.finish_run(id, &results(1, 20.0)).expect("finish");
    let listed = |host: &str, deployment: Option<&str>| -> Vec<i64> {
        s.runs(&RunFilter {
            host: Some(host.into()),
            deployment: deployment.map(str::to_owned),
            ..RunFilter::default()
        })
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect()
    };
    assert_eq!(listed("panda", None), vec![id], "the run's host");
    assert_eq!(listed("beast", None), vec![id], "its target's host");
    assert_eq!(listed("beast", Some("beast-e4b")), vec![id]);
    assert_eq!(
        listed("panda", Some("beast-e4b")),
        Vec::<i64>::new(),
        "beast-e4b was measured on beast, not on panda"
    );
    assert_eq!(
        s.run(id).expect("show").row.targets[0].host.as_deref(),
        Some("beast")
    );
    let trend = |host: &str| {
        s.trend(&RunFilter {
            host: Some(host.into()),
            config: Some("A".into()),
            ..RunFilter::default()
        })
        .expect("trend")
    };
    let beast = trend("beast");
    assert_eq!(beast.len(), 1);
    assert_eq!(
        (beast[0].host.as_str(), beast[0].deployment.as_deref()),
        ("beast", Some("beast-e4b")),
        "a point is its target's host's"
    );
    assert!(trend("panda").is_empty());
}

#[test]
fn import_stores_a_document_once_and_not_a_number_as_null() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::open(&dir.path().join("h.sqlite")).expect("open");
    let mut r = results(1_600_000_000, 20.0);
    r.targets[0].configs[0].summary.server_tokens_per_s = Some(f64::INFINITY);
    let Imported::New(id) = s
        .import(&r, "panda", "nav-bench.toml", &link("x"))
        .expect("import")
    else {
        panic!("a new document is stored")
    };
    assert_eq!(
        s.import(&r, "panda", "nav-bench.toml", &[]).expect("again"),
        Imported::Already(id)
    );
    let d = s.run(id).expect("show");
    assert_eq!(d.row.source, Source::Import);
    assert_eq!(
        d.row.started_unix, 1_600_000_000,
        "when the bench ran, not when imported"
    );
    assert_eq!(d.row.points[0].server_tokens_per_s, None);
}

#[test]
fn jobs_record_their_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::open(&dir.path().join("h.sqlite")).expect("open");
    let id = s
        .begin_job(&NewJob {
            kind: JobKind::Relaunch,
            host: "local".into(),
            deployment: Some("d".into()),
            spec_sha256: None,
            lock_sha256: None,
        })
        .expect("begin");
    s.finish_job(id, State::Done, "recreated", Some(("s1", "l1")))
        .expect("finish");
    let jobs = s.jobs(Some("d")).expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, State::Done);
    assert_eq!(jobs[0].spec_sha256.as_deref(), Some("s1"));
    assert!(s.jobs(Some("other")).expect("jobs").is_empty());
}

#[test]
fn a_database_from_a_newer_vlmctl_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.sqlite");
    drop(Store::open(&path).expect("open"));
    bump_user_version(&path);
    let e = Store::open(&path).expect_err("newer schema");
    assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e:?}");
    assert!(e.hint().is_some());
}

/// Sets `user_version` to 99 (in a child process): a stand-in for a newer vlmctl.
fn bump_user_version(path: &std::path::Path) {
    {
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", "kill::child", "--nocapture", "--include-ignored"])
            .env("VLMCTL_STORE_CHILD", "bump")
            .env("VLMCTL_STORE_CHILD_DB", path)
            .status()
            .expect("child");
        assert!(status.success());
    }
}

#[test]
fn processes_opening_a_new_database_at_once_all_get_the_schema() {
    // Each connection is what another vlmctl process has (a bench starting while
    // `vlmctl runs list` or the service opens the file): all read version 0, one migrates.
    for round in 0..20 {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("history.sqlite");
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            let opened: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        Store::open(&path).map(|_| ())
                    })
                })
                .collect();
            for o in opened {
                let r = o.join().expect("thread");
                assert!(r.is_ok(), "round {round}: {r:?}");
            }
        });
    }
}

#[test]
fn rows_of_another_machine_or_namespace_are_left_alone_and_an_owner_finishes_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.sqlite");
    let mut s = Store::open(&path).expect("open");
    let theirs = s.begin_run(&new_run("d")).expect("begin");
    let mine = s.begin_run(&new_run("d")).expect("begin");
    drop(s);
    // Owned by a dead pid, one on another boot or pid namespace (unknowable here), one here.
    let c = rusqlite::Connection::open(&path).expect("open");
    c.execute(
        "UPDATE runs SET owner_pid = 999999999, owner_machine = 'another-boot/pid:[1]' WHERE id = ?1",
        [theirs],
    )
    .expect("update");
    c.execute(
        "UPDATE runs SET state = 'interrupted' WHERE id = ?1",
        [mine],
    )
    .expect("update");
    drop(c);
    let mut s = Store::open(&path).expect("open");
    assert_eq!(
        s.run(theirs).expect("run").row.state,
        State::Running,
        "not judged from here"
    );
    // Marked interrupted by someone who could not see this process: it still finishes it.
    s.finish_run(mine, &results(1, 5.0))
        .expect("its owner finishes it");
    let d = s.run(mine).expect("run");
    assert_eq!(d.row.state, State::Done);
    assert_eq!(d.row.error, None);
}

#[test]
fn a_row_whose_pid_was_reused_is_marked_interrupted() {
    // The owner's pid now names a live process (this one) that started at another time: the
    // owner is gone (vlmctl_base::owner's rule), and its row is not left `running`.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.sqlite");
    let mut s = Store::open(&path).expect("open");
    let reused = s.begin_run(&new_run("d")).expect("begin");
    let live = s.begin_run(&new_run("d")).expect("begin");
    drop(s);
    let c = rusqlite::Connection::open(&path).expect("open");
    c.execute(
        "UPDATE runs SET owner_start = owner_start - 1 WHERE id = ?1",
        [reused],
    )
    .expect("update");
    drop(c);
    let s = Store::open(&path).expect("open");
    assert_eq!(s.run(reused).expect("run").row.state, State::Interrupted);
    assert_eq!(s.run(live).expect("run").row.state, State::Running);
}

/// SHA-256 of a file's bytes.
fn digest(path: &std::path::Path) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(std::fs::read(path).expect("read")).to_vec()
}

#[test]
fn a_newer_or_foreign_database_is_checked_before_anything_writes_and_left_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let newer = dir.path().join("newer.db");
    let foreign = dir.path().join("foreign.db");
    {
        let c = rusqlite::Connection::open(&newer).expect("newer");
        c.execute_batch(
            "PRAGMA journal_mode=delete; CREATE TABLE runs(id INTEGER PRIMARY KEY, future TEXT); \
             PRAGMA user_version=4;",
        )
        .expect("newer");
        let c = rusqlite::Connection::open(&foreign).expect("foreign");
        c.execute_batch("CREATE TABLE moz_places(id, url);")
            .expect("foreign");
    }
    for (db, open) in [
        (
            &newer,
            Store::open as fn(&std::path::Path) -> Result<Store, StoreError>,
        ),
        (&newer, Store::open_read),
        (&foreign, Store::open),
        (&foreign, Store::open_read),
    ] {
        let before = digest(db);
        let Err(e) = open(db) else {
            panic!("{} was opened", db.display());
        };
        match &e {
            StoreError::TooNew { found: 4, .. } => assert_eq!(db, &newer),
            StoreError::NotOurs { tables, .. } => {
                assert_eq!(db, &foreign);
                assert_eq!(tables, &["moz_places"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(e.hint().is_some());
        assert_eq!(digest(db), before, "{} changed", db.display());
        // Still a rollback journal: header bytes 18-19 are 1, 1 (WAL: 2, 2).
        assert_eq!(&std::fs::read(db).expect("read")[18..20], &[1, 1]);
    }
    let c = rusqlite::Connection::open(&foreign).expect("foreign");
    let tables: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(tables, 1, "no vlmctl table was added");

    // A newer history in WAL mode: refused with no `-shm` or `-wal` made beside it.
    let wal = dir.path().join("newer-wal.db");
    {
        let c = rusqlite::Connection::open(&wal).expect("wal");
        c.execute_batch(
            "PRAGMA journal_mode=wal; CREATE TABLE runs(id INTEGER PRIMARY KEY, future TEXT); \
             PRAGMA user_version=4;",
        )
        .expect("wal");
    }
    let beside = |ext: &str| dir.path().join(format!("newer-wal.db-{ext}"));
    assert!(!beside("shm").exists() && !beside("wal").exists());
    for open in [
        Store::open as fn(&std::path::Path) -> Result<Store, StoreError>,
        Store::open_read,
    ] {
        let Err(e) = open(&wal) else {
            panic!("{} was opened", wal.display());
        };
        assert!(matches!(e, StoreError::TooNew { found: 4, .. }), "{e:?}");
        assert!(
            !beside("shm").exists() && !beside("wal").exists(),
            "{e}: -shm or -wal made beside it"
        );
    }
}

/// The re-test's `runs list --store empty.db` made a 45 KB history of a 0-byte file: the
/// read commands take an empty (or missing) file as "no runs yet" and leave it.
#[test]
fn an_empty_or_missing_file_holds_no_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("empty");
    assert!(Store::is_absent_or_empty(&empty));
    assert!(Store::is_absent_or_empty(&dir.path().join("missing.db")));
    assert_eq!(std::fs::metadata(&empty).expect("meta").len(), 0);
    // A history is not empty; nor is a 0-byte file whose log holds something.
    let full = dir.path().join("full.db");
    drop(Store::open(&full).expect("open"));
    assert!(!Store::is_absent_or_empty(&full));
    std::fs::write(dir.path().join("empty.db-wal"), b"x").expect("wal");
    assert!(!Store::is_absent_or_empty(&empty));
}

/// `dir` mounted read-only at `at` for as long as it lives (a backup's read-only mount); as
/// another user than root, the files' modes make it read-only instead.
struct ReadOnly(Option<std::path::PathBuf>);

impl ReadOnly {
    fn new(dir: &std::path::Path, at: &std::path::Path) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let root = std::fs::metadata("/proc/self")
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        if !root {
            for e in std::fs::read_dir(dir).expect("dir").flatten() {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o444))
                    .expect("chmod");
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
            std::fs::create_dir_all(at).ok();
            std::fs::remove_dir(at).ok();
            std::os::unix::fs::symlink(dir, at).expect("link");
            return Self(None);
        }
        std::fs::create_dir_all(at).expect("mount point");
        let sh = |args: &[&std::ffi::OsStr]| {
            let ok = std::process::Command::new("mount")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mount {args:?} (root without CAP_SYS_ADMIN?)");
        };
        sh(&["--bind".as_ref(), dir.as_os_str(), at.as_os_str()]);
        sh(&["-o".as_ref(), "remount,bind,ro".as_ref(), at.as_os_str()]);
        Self(Some(at.to_owned()))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if let Some(at) = &self.0 {
            let _ = std::process::Command::new("umount").arg(at).status();
        }
    }
}

#[test]
fn a_read_only_history_can_be_read_and_is_not_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("history");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("history.sqlite");
    {
        let mut s = Store::open(&path).expect("open");
        s.import(&results(1_700_000_000, 20.0), "local", "p", &link("dep"))
            .expect("import");
        // A run still going (this process owns it).
        s.begin_run(&new_run("dep")).expect("run");
    }
    let ro = tmp.path().join("ro");
    let _mounted = ReadOnly::new(&dir, &ro);
    let path = ro.join("history.sqlite");
    let before = digest(&path);
    let s = Store::open_read(&path).expect("read-only open");
    let rows = s.runs(&RunFilter::default()).expect("runs");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(s.run(rows[1].id).expect("run").row.state, State::Done);
    drop(s);
    assert_eq!(digest(&path), before);
    // The writable open fails there, as it must (it would write), saying why (`vlmctl serve
    // --store` of such a file said "unable to open database file").
    let Err(e) = Store::open(&path) else {
        panic!("{} was opened for writing", path.display());
    };
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot be written"), "{e}");
    assert!(e.hint().is_some_and(|h| h.contains("--store")), "{e}");
}
