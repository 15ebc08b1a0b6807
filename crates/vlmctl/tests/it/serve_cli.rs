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
