//! `vlmctl bench` as a new user meets it: progress that suits a log, an unreachable target that
//! fails in seconds, a missing prompt that is the plan's fault, and the thinking-leak hint.

use std::path::Path;
use std::time::{Duration, Instant};

use vlmctl_bench::fake_server::{FakeServer, Reply};

use crate::common::{redact, run, vlmctl};

/// A plan in `dir` against `url`: configs A (kept-alive) and C (streamed), 3 runs, no warm-up.
fn plan(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    crate::common::fake_plan(dir, url, 60, extra)
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_in_a_log_is_a_line_per_config_and_the_thinking_hint_comes_with_the_errors() {
    let server = FakeServer::start([Reply::Think.into()]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path(), &server.endpoint(), "");
    // stderr is a pipe here, as in a log or CI.
    let (code, out, err) = run(vlmctl()
        .args(["bench", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(tmp.path().join("out")));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains('\r'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[..2],
        ["fake A: 3/3 requests", "fake C: 3/3 requests"],
        "{err}"
    );
    assert!(out.contains("fake A: 1 x thinking_leaked"), "{out}");
    assert!(
        out.contains("\nhint: fake: thinking leaked (empty content, the answer in reasoning_content): start llama-server with --jinja"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_target_fails_in_seconds_with_its_url_and_a_hint() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    // Accepts and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    for (url, why) in [
        (closed, "Connection refused"),
        (hole_url, "no answer within 5 s"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        // timeout_s = 60: the check's own 5 s, not the plan's timeout, bounds the wait.
        let plan = plan(tmp.path(), &url, "");
        let t0 = Instant::now();
        let (code, out, err) = run(vlmctl()
            .args(["bench", "--plan"])
            .arg(&plan)
            .arg("--out")
            .arg(tmp.path().join("out")));
        let took = t0.elapsed();
        assert_eq!(code, 5, "{err}");
        assert!(took < Duration::from_secs(8), "{took:?}");
        assert_eq!(out, "");
        assert!(
            err.starts_with(&format!(
                "error: target fake does not answer at {url}/health: "
            )),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
        assert!(
            err.contains("\n\nhint: check that the server is running"),
            "{err}"
        );
        assert!(
            !tmp.path().join("out").exists(),
            "nothing was run or written"
        );
    }
}

#[test]
fn a_missing_prompt_is_a_plan_error_naming_the_field_and_path() {
    let tmp = tempfile::tempdir().unwrap();
    // describe = true needs prompts/describe.txt, which is not there.
    let plan = plan(tmp.path(), "http://127.0.0.1:1", "");
    let text = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("describe = false", "describe = true");
    std::fs::write(&plan, text).unwrap();
    let (code, _, err) = run(vlmctl().args(["bench", "--plan"]).arg(&plan));
    assert_eq!(code, 3, "{err}");
    insta::assert_snapshot!(redact(&err, tmp.path()));
}

/// Issue #21 item 14: the describe request is a step with its own line, and its failure is a
/// warning on the terminal and a field of results.json and the reports, not a silent `null`.
#[tokio::test(flavor = "multi_thread")]
async fn a_describe_request_that_fails_is_a_step_and_a_warning() {
    let server = FakeServer::start([Reply::Hang.into()]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = crate::common::fake_plan(tmp.path(), &server.endpoint(), 1, "");
    std::fs::write(tmp.path().join("prompts/describe.txt"), "describe").unwrap();
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, text.replace("describe = false", "describe = true")).unwrap();
    let out_dir = tmp.path().join("out");
    let (code, _, err) = run(vlmctl()
        .args(["bench", "--no-record", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out_dir));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines[0], "fake: describe request… (up to 1 s)", "{err}");
    assert!(
        lines[1].starts_with("warning: fake: the describe request failed after 1.")
            && lines[1].contains("(timeout: "),
        "{err}"
    );
    assert_eq!(
        lines[2..4],
        ["fake A: 3/3 requests", "fake C: 3/3 requests"],
        "{err}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("results.json")).unwrap()).unwrap();
    let t = &results["targets"][0];
    assert!(
        t["describe_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("timeout: ")),
        "{t}"
    );
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("**Warning:** the describe request failed (timeout: "),
        "{md}"
    );

    // Answered (the fake's script is used up: default answers): one line in a log.
    let (code, _, err) = run(vlmctl()
        .args(["bench", "--no-record", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(tmp.path().join("again")));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "fake: describe request… (up to 1 s)",
            "fake A: 3/3 requests",
            "fake C: 3/3 requests"
        ],
        "{err}"
    );
}

/// Issue #21 item 2 (F1): a baseline whose latencies no chart can place (1.7e308 ms) used to
/// hang `bench` for good in the chart's tick search after measuring. It is refused before the
/// first request, naming the field, within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_baseline_with_impossible_latencies_is_refused_not_a_hang() {
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path(), &server.endpoint(), "");
    let first = tmp.path().join("first");
    let (code, _, err) = run(vlmctl()
        .args(["bench", "--no-record", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&first));
    assert_eq!(code, 0, "{err}");
    // The adversarial pass's file: every sample and summary of every config at 1.7e308 ms.
    let mut r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("results.json")).unwrap()).unwrap();
    for c in r["targets"][0]["configs"].as_array_mut().unwrap() {
        for s in c["samples"].as_array_mut().unwrap() {
            s["wall_ms"] = 1.7e308.into();
        }
        c["summary"]["wall_ms"] = serde_json::json!({"n": 3, "min": 1.7e308, "p50": 1.7e308,
            "p95": 1.7e308, "p99": 1.7e308, "max": 1.7e308, "mean": 1.7e308, "stddev": 0.0});
    }
    let big = tmp.path().join("big.json");
    std::fs::write(&big, serde_json::to_vec(&r).unwrap()).unwrap();
    let mut child = vlmctl()
        .args(["bench", "--no-record", "--plan"])
        .arg(&plan)
        .arg("--baseline")
        .arg(&big)
        .arg("--out")
        .arg(tmp.path().join("second"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench --baseline with 1.7e308 ms did not end within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("targets[0].configs[0].samples[0].wall_ms is 1.7e308"),
        "{err}"
    );
}
