//! A writer killed with SIGKILL: in the middle of a run (the run is marked interrupted by the
//! next open) and in the middle of a write (the database still passes `PRAGMA
//! integrity_check`, and every run is whole: done with all its points, or not done).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vlmctl_store::{RunFilter, State, Store};

use crate::{link, new_run, results};

/// Not a test on its own: the child process the tests below start (this same test binary,
/// told what to do through the environment) and kill.
#[test]
#[ignore = "run by the tests below as a child process"]
#[expect(
    clippy::print_stdout,
    reason = "the child tells its parent through stdout"
)]
fn child() {
    let (Ok(what), Ok(db)) = (
        std::env::var("VLMCTL_STORE_CHILD"),
        std::env::var("VLMCTL_STORE_CHILD_DB"),
    ) else {
        return;
    };
    let db = std::path::Path::new(&db);
    match what.as_str() {
        "bump" => {
            let s = Store::open(db).expect("open");
            drop(s);
            // The only way to reach the pragma without a second SQLite binding: the store's own.
            let c = rusqlite::Connection::open(db).expect("open");
            c.pragma_update(None, "user_version", 99).expect("bump");
        }
        "hold" => {
            let mut s = Store::open(db).expect("open");
            let id = s.begin_run(&new_run("d")).expect("begin");
            println!("run-id {id}");
            loop {
                std::thread::park();
            }
        }
        "churn" => {
            let mut s = Store::open(db).expect("open");
            for i in 0.. {
                let id = s.begin_run(&new_run("d")).expect("begin");
                let mut r = results(i, 10.0 + (i % 7) as f64);
                // Big documents: each commit is many pages, so the kill lands mid-write often.
                r.targets[0].configs[0].samples =
                    (0..4000).map(|j| crate::sample(j, j as f64)).collect();
                s.finish_run(id, &r).expect("finish");
                // Another document (not the one just finished): a real import, also killed.
                r.started_unix += 1_000_000;
                assert!(matches!(
                    s.import(&r, "h", "p", &link("d")).expect("import"),
                    vlmctl_store::Imported::New(_)
                ));
                if i == 3 {
                    println!("churning");
                }
            }
        }
        _ => {}
    }
}

fn spawn(what: &str, db: &std::path::Path) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut c = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "kill::child", "--nocapture", "--include-ignored"])
        .env("VLMCTL_STORE_CHILD", what)
        .env("VLMCTL_STORE_CHILD_DB", db)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = BufReader::new(c.stdout.take().expect("stdout"));
    (c, out)
}

/// Reads the child's stdout until a line starting with `prefix`.
fn wait_for(out: &mut BufReader<std::process::ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "the child ended before printing {prefix:?}"
        );
        if line.starts_with(prefix) {
            return line.trim().to_owned();
        }
    }
}

#[test]
fn a_run_whose_process_is_killed_is_marked_interrupted_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.sqlite");
    let (mut c, mut out) = spawn("hold", &db);
    let line = wait_for(&mut out, "run-id ");
    let id: i64 = line["run-id ".len()..].parse().expect("id");
    {
        // The owner is alive: another process opening the database leaves the run alone.
        let s = Store::open(&db).expect("open");
        assert_eq!(s.run(id).expect("show").row.state, State::Running);
    }
    c.kill().expect("SIGKILL");
    // Not reaped yet: the killed child is a zombie, still in /proc with its start time, as a
    // killed `vlmctl serve` is until its parent (a shell, systemd) gets round to it.
    let stat = format!("/proc/{}/stat", c.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
        assert!(
            Instant::now() < deadline,
            "the child did not become a zombie"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = Store::open(&db).expect("open");
    c.wait().expect("reaped");
    let d = s.run(id).expect("show");
    assert_eq!(d.row.state, State::Interrupted);
    assert!(d.results.is_none());
    assert!(
        d.row
            .error
            .unwrap_or_default()
            .contains("ended before it finished")
    );
}

#[test]
fn kill_9_in_the_middle_of_writes_leaves_a_sound_database_and_whole_runs() {
    for round in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("h.sqlite");
        let (mut c, mut out) = spawn("churn", &db);
        wait_for(&mut out, "churning");
        // Kill at a different point of the write each round.
        let until = Instant::now() + Duration::from_millis(37 * (round + 1));
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        c.kill().expect("SIGKILL");
        c.wait().expect("reaped");
        let s = Store::open(&db).expect("the database opens after the kill");
        assert_eq!(s.integrity_check().expect("check"), "ok", "round {round}");
        let runs = s.runs(&RunFilter::default()).expect("list");
        assert!(runs.len() >= 4, "round {round}: {} runs", runs.len());
        for r in &runs {
            match r.state {
                State::Done => {
                    assert_eq!(r.points.len(), 2, "round {round}: run {} is whole", r.id);
                    assert!(s.run(r.id).expect("show").results.is_some());
                }
                State::Interrupted => assert!(r.points.is_empty()),
                other => panic!("round {round}: run {} left {other}", r.id),
            }
        }
    }
}
