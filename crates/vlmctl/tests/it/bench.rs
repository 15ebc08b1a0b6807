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
