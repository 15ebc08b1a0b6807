//! `vlmctl serve`'s own checks, without Docker: an address off loopback needs an API key, and
//! then every request must carry it (bearer token or a browser's Basic password); the key is
//! never printed.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use crate::common::{free_port, run, vlmctl};

const KEY: &str = "serve-test-key-0123456789";

#[test]
fn off_loopback_without_a_key_is_refused_with_exit_3() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (code, _, err) = run(vlmctl()
        .args(["serve", "--bind", "0.0.0.0", "--port", "0"])
        .env("VLMCTL_STATE_DIR", tmp.path()));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without an API key"),
        "{err}"
    );
    assert!(err.contains("hint: set VLMCTL_SERVE_API_KEY"), "{err}");
    let (code, _, err) = run(vlmctl()
        .args(["serve", "--bind", "0.0.0.0", "--port", "0"])
        .env("VLMCTL_SERVE_API_KEY", "short")
        .env("VLMCTL_STATE_DIR", tmp.path()));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("shorter than 16"), "{err}");
    assert!(
        !tmp.path().join("history.sqlite").exists(),
        "nothing created"
    );
}

#[test]
fn a_malformed_plan_is_refused_at_start_naming_file_and_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plan = tmp.path().join("bad.toml");
    std::fs::write(&plan, "version = 1\nruns = -1\n").expect("plan");
    let (code, _, err) = run(vlmctl()
        .args(["serve", "--port", "0", "--plan"])
        .arg(&plan)
        .env("VLMCTL_STATE_DIR", tmp.path()));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("bad.toml:2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_every_request_needs_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut child = vlmctl()
        .args([
            "serve",
            "--bind",
            "0.0.0.0",
            "--port",
            &port.to_string(),
            "-vv",
        ])
        .env("VLMCTL_SERVE_API_KEY", KEY)
        .env("VLMCTL_STATE_DIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut said = String::new();
    while !said.contains("vlmctl serve: http://") {
        let mut line = String::new();
        assert!(err.read_line(&mut line).expect("read") > 0, "ended: {said}");
        said.push_str(&line);
    }
    let url = format!("http://127.0.0.1:{port}/api/runs");
    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    let none = http.get(&url).send().await.expect("GET");
    assert_eq!(none.status().as_u16(), 401);
    assert!(
        none.headers().contains_key("www-authenticate"),
        "a browser asks"
    );
    assert_eq!(
        status(
            http.get(&url)
                .bearer_auth("wrong-key-0123456789")
                .send()
                .await
                .expect("GET")
        ),
        401
    );
    assert_eq!(
        status(http.get(&url).bearer_auth(KEY).send().await.expect("GET")),
        200
    );
    assert_eq!(
        status(
            http.get(&url)
                .basic_auth("me", Some(KEY))
                .send()
                .await
                .expect("GET")
        ),
        200
    );
    assert_eq!(
        status(
            http.get(format!("http://127.0.0.1:{port}/"))
                .basic_auth("me", Some(KEY))
                .send()
                .await
                .expect("GET")
        ),
        200
    );
    // The key does not make a foreign page's request an action: a browser holding the key
    // (typed at its Basic prompt) sends it with another site's form or script too.
    let action = |origin: Option<&str>| {
        let mut r = http
            .post(&url)
            .basic_auth("me", Some(KEY))
            .header("content-type", "application/json")
            .body("{\"deployment\":\"vlmctl-test-none\"}");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(
        status(action(Some("http://evil.example")).await.expect("POST")),
        403
    );
    let own = action(None).await.expect("POST");
    assert_ne!(
        own.status().as_u16(),
        403,
        "without a foreign Origin the request goes through"
    );
    let _ = child.kill();
    let _ = child.wait();
    let mut rest = String::new();
    while err.read_line(&mut rest).is_ok_and(|n| n > 0) {}
    assert!(
        !said.contains(KEY) && !rest.contains(KEY),
        "the key is never printed"
    );
}

/// A GET on a connection of its own; `None` when no answer came within `wait`.
fn get(port: u16, path: &str, wait: std::time::Duration) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Two runs of 50,000 samples per config: comparing them (2,000 bootstrap resamples, each a
/// sort) and drawing their reports take seconds to minutes; none of it may hold up another
/// page or a SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_runs_being_compared_hold_up_no_other_page_and_no_sigterm() {
    use std::time::{Duration, Instant};
    let server = vlmctl_bench::fake_server::FakeServer::start([])
        .await
        .expect("fake server");
    let tmp = tempfile::tempdir().expect("tmp");
    let plan = crate::common::fake_plan(tmp.path(), &server.endpoint(), 120, "");
    let (code, _, err) = run(vlmctl()
        .args(["bench", "--no-record", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(tmp.path().join("out")));
    assert_eq!(code, 0, "{err}");
    let small: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("out/results.json")).expect("results"),
    )
    .expect("json");
    let store = tmp.path().join("h.sqlite");
    // Built once (50,000 samples per config take seconds in a debug build); the second run is
    // the same document started 10 minutes later.
    let mut big = small;
    for c in big["targets"][0]["configs"]
        .as_array_mut()
        .expect("configs")
    {
        let first = c["samples"][0].clone();
        let samples: Vec<serde_json::Value> = (0..50_000)
            .map(|n| {
                let mut s = first.clone();
                s["index"] = n.into();
                s["wall_ms"] = (10.0 + f64::from(n % 997) / 100.0).into();
                s
            })
            .collect();
        c["samples"] = samples.into();
    }
    for (i, started) in [1_700_000_000_u64, 1_700_000_600].into_iter().enumerate() {
        big["started_unix"] = started.into();
        let dir = tmp.path().join(format!("big{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("results.json"), big.to_string()).expect("write");
        let (code, _, err) = run(vlmctl()
            .args(["runs", "import", "--store"])
            .arg(&store)
            .arg(&dir));
        assert_eq!(code, 0, "{err}");
    }
    let port = free_port();
    let mut child = Killed(
        vlmctl()
            .args(["serve", "--port", &port.to_string(), "--store"])
            .arg(&store)
            .env("VLMCTL_STATE_DIR", tmp.path().join("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve"),
    );
    let mut err = BufReader::new(child.0.stderr.take().expect("stderr"));
    let mut said = String::new();
    while !said.contains("vlmctl serve: http://") {
        let mut line = String::new();
        assert!(err.read_line(&mut line).expect("read") > 0, "ended: {said}");
        said.push_str(&line);
    }
    // Slow pages, each on a thread of its own (their answers may never come).
    let slow: Vec<std::thread::JoinHandle<Option<u16>>> = [
        "/compare?a=1&b=2",
        "/api/compare?a=2&b=1",
        "/runs/1/report.html",
        "/runs/2/report.html",
    ]
    .into_iter()
    .map(|p| std::thread::spawn(move || get(port, p, Duration::from_secs(600))))
    .collect();
    // Meanwhile other pages answer at once, again and again.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        let status = get(port, "/api/runs?limit=1", Duration::from_secs(5));
        assert_eq!(status, Some(200), "after {:?}", watched.elapsed());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // Pacing between probes, not a wait for anything.
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        slow.iter().any(|h| !h.is_finished()),
        "every slow page had finished: make the runs larger for this test to mean anything"
    );
    // SIGTERM while they are drawn: the process ends within the requests' grace (10 s).
    let t = Instant::now();
    crate::common::signal("TERM", &child.0.id().to_string());
    poll_exit(&mut child.0, Duration::from_secs(20));
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

/// A child killed when the test ends, also when it fails (a wedged service would stay).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn poll_exit(child: &mut std::process::Child, within: std::time::Duration) {
    crate::common::poll_until("vlmctl serve exited", within, || {
        child.try_wait().expect("wait").is_some()
    });
}
