//! Against the real llama-server from `scripts/test` (CPU, 2 threads) with the Gemma 3 270M
//! GGUF: text-only (the model has no vision projector), few runs, small `max_tokens`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::run;

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: run these tests through `scripts/test`, which provides it"),
    }
}

/// The server process, killed when dropped (also when a test fails).
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start() -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(required_env("VLMCTL_TEST_LLAMA_SERVER"))
        .args([
            "--model",
            &required_env("VLMCTL_TEST_MODEL"),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--ctx-size", "2048", "--threads", "2", "--jinja"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama-server");
    let server = Server(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{url}/health")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "llama-server never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, url)
}

#[tokio::test]
async fn real_llama_server_streaming_timings_and_cache() {
    let (_server, url) = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::write(
        tmp.path().join("plan.toml"),
        format!(
            "version = 1\nruns = 3\nwarmup = 1\nmax_tokens = 8\ntimeout_s = 60\ndescribe = true\nconfigs = [\"A\", \"B\", \"C\"]\n\
             [prompts]\nnav = \"{e}/prompts/nav.txt\"\nnav_short = \"{e}/prompts/nav-short.txt\"\ndescribe = \"{e}/prompts/describe.txt\"\n\
             [[target]]\nname = \"cpu\"\nurl = \"{url}\"\n",
            e = examples.display()
        ),
    )
    .unwrap();
    let plan = LoadedPlan::load(&tmp.path().join("plan.toml")).unwrap();
    let r = run::run(&plan, &BTreeMap::new(), &|_, _, _, _| {}).await;
    let t = &r.targets[0];
    assert!(
        t.server_info["default_generation_settings"].is_object(),
        "/props recorded"
    );
    assert!(t.models["data"][0]["id"].is_string(), "/v1/models recorded");
    assert!(t.describe_answer.as_deref().is_some_and(|a| !a.is_empty()));
    for c in &t.configs {
        assert_eq!(c.summary.ok, 3, "{}: {:?}", c.name, c.samples);
        for s in &c.samples {
            assert!(
                s.server.predicted_n.is_some_and(|n| n > 0),
                "timings parsed: {s:?}"
            );
            assert!(s.server.prompt_ms.is_some(), "{s:?}");
        }
    }
    let b = &t.configs[1];
    assert!(
        b.summary.cache_hits > 0,
        "repeat config hits the prompt cache: {:?}",
        b.samples
    );
    let c = &t.configs[2];
    for s in &c.samples {
        let ttft = s.ttft_ms.expect("TTFT on streamed samples");
        assert!(ttft < s.wall_ms, "{s:?}");
    }
    let json = serde_json::to_string(&r).unwrap();
    let back: run::Results = serde_json::from_str(&json).unwrap();
    for cfg in &back.targets[0].configs {
        assert_eq!(
            run::summarize(&cfg.samples, true, None),
            cfg.summary,
            "summaries recomputable"
        );
    }
}
