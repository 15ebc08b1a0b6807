//! Against the real llama-server from `scripts/test` (CPU, 2 threads) with the Gemma 3 270M
//! GGUF, few runs, small `max_tokens`: text-only, and with the test projector
//! (`VLMCTL_TEST_MMPROJ`) to hold the fake server's image and cache counts to the real ones.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vlmctl_bench::fake_server::{FakeServer, IMAGE_TOKENS};
use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::run;
use vlmctl_test::Env;

/// The server process, killed when dropped (also when a test fails).
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start() -> (Server, String) {
    start_with(&[]).await
}

async fn start_with(extra: &[&str]) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(Env::require("VLMCTL_TEST_LLAMA_SERVER"))
        .args([
            "--model",
            &Env::require("VLMCTL_TEST_MODEL"),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--ctx-size", "2048", "--threads", "1", "--jinja"])
        .args(extra)
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

/// Every key path of `v` (`a.b[].c`), objects and arrays included.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{prefix}.{k}");
                out.insert(p.clone());
                key_paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                key_paths(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Every key the fake sends, the real server sends at the same place.
fn assert_keys_subset<'a>(
    what: &str,
    fake: impl IntoIterator<Item = &'a Value>,
    real: impl IntoIterator<Item = &'a Value>,
) {
    let paths = |values: &mut dyn Iterator<Item = &'a Value>| {
        let mut out = BTreeSet::new();
        for v in values {
            key_paths(v, "", &mut out);
        }
        out
    };
    let real_paths = paths(&mut real.into_iter());
    let missing: Vec<String> = paths(&mut fake.into_iter())
        .difference(&real_paths)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: the fake sends {missing:?}, which llama-server does not"
    );
}

/// The JSON chunks of an SSE body, which must end with `data: [DONE]`.
fn sse_chunks(body: &str) -> Vec<Value> {
    let mut data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .collect();
    assert_eq!(data.pop(), Some("[DONE]"), "{body}");
    data.iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// What a client relies on in a stream: the first delta (role only), `timings` on the last
/// chunk (and nowhere before), whether that chunk is the `choices: []` usage chunk.
fn stream_shape(chunks: &[Value]) -> (Value, bool, bool, bool) {
    let last = chunks.last().expect("at least one chunk");
    (
        chunks[0]["choices"][0]["delta"].clone(),
        chunks.iter().position(|c| c.get("timings").is_some()) == Some(chunks.len() - 1),
        last["choices"] == json!([]),
        last.get("usage").is_some(),
    )
}

fn chat_body(stream: bool, include_usage: bool) -> Value {
    let mut b = json!({
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}],
        "max_tokens": 4, "temperature": 0, "stream": stream,
        "chat_template_kwargs": {"enable_thinking": false},
    });
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// The fake server's llama-server side against the real llama-server: every key the fake sends,
/// the real one sends at the same place, statuses and content types agree, and streams have the
/// same structure ([`stream_shape`], `[DONE]`).
#[tokio::test]
async fn fake_server_speaks_llama_servers_json() {
    let (_server, real) = start().await;
    let fake = FakeServer::start([]).await.unwrap();
    let fake = fake.endpoint();
    // A connection per request: llama-server closes its end after a stream (see `run.rs`).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let get = |base: &str, path: &str| {
        let r = http.get(format!("{base}{path}")).send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    for path in ["/health", "/v1/models", "/props", "/no-such-endpoint"] {
        let (real_status, real_json) = get(&real, path).await;
        let (fake_status, fake_json) = get(&fake, path).await;
        assert_eq!(fake_status, real_status, "{path}");
        assert_keys_subset(path, [&fake_json], [&real_json]);
    }
    let chat = |base: &str, body: Value| {
        let r = http
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send();
        async move {
            let r = r.await.unwrap();
            let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
            (r.status().as_u16(), content_type, r.text().await.unwrap())
        }
    };
    for (stream, include_usage) in [(false, false), (true, false), (true, true)] {
        let what = format!("stream {stream}, include_usage {include_usage}");
        let real_answer = chat(&real, chat_body(stream, include_usage)).await;
        let fake_answer = chat(&fake, chat_body(stream, include_usage)).await;
        assert_eq!(
            (fake_answer.0, fake_answer.1.as_str()),
            (real_answer.0, real_answer.1.as_str()),
            "{what}"
        );
        let (real_chunks, fake_chunks) = if stream {
            (sse_chunks(&real_answer.2), sse_chunks(&fake_answer.2))
        } else {
            let parse = |b: &str| vec![serde_json::from_str::<Value>(b).unwrap()];
            (parse(&real_answer.2), parse(&fake_answer.2))
        };
        assert_keys_subset(&what, &fake_chunks, &real_chunks);
        if stream {
            assert_eq!(
                stream_shape(&fake_chunks),
                stream_shape(&real_chunks),
                "{what}:\nreal {}\nfake {}",
                real_answer.2,
                fake_answer.2
            );
        }
    }
}

/// The fake's prompt counts against llama-server with the test projector: the camera frame adds
/// [`IMAGE_TOKENS`] to the nav prompt on both, and an identical repeat comes from the cache on
/// both, the same size. (The text's own count is the fake's estimate, so only differences are
/// compared.)
#[tokio::test]
async fn the_fakes_image_tokens_and_cache_are_llama_servers() {
    let mmproj = Env::require("VLMCTL_TEST_MMPROJ");
    // One slot: the repeat lands on the slot that holds its prompt, as in the fake.
    let (_server, real) = start_with(&["--mmproj", &mmproj, "--parallel", "1"]).await;
    let fake = FakeServer::start([]).await.unwrap();
    let fake = fake.endpoint();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let nav = std::fs::read_to_string(examples.join("prompts/nav.txt")).unwrap();
    let frame = vlmctl_bench::base64(&std::fs::read(examples.join("camera.png")).unwrap());
    let http = reqwest::Client::new();
    let prompt = |base: &str, image: bool| {
        let mut content = vec![json!({"type": "text", "text": nav})];
        if image {
            content.push(json!({"type": "image_url",
                "image_url": {"url": format!("data:image/png;base64,{frame}")}}));
        }
        let r = http
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"messages": [{"role": "user", "content": content}],
                "max_tokens": 1, "temperature": 0,
                "chat_template_kwargs": {"enable_thinking": false}}))
            .timeout(Duration::from_secs(120))
            .send();
        async move {
            let v: Value = r.await.unwrap().json().await.unwrap();
            let t = &v["timings"];
            let n = |k: &str| {
                t[k].as_u64()
                    .unwrap_or_else(|| panic!("no timings.{k}: {v}"))
            };
            (n("prompt_n"), n("cache_n"))
        }
    };
    for base in [&real, &fake] {
        let text = prompt(base, false).await;
        let with = prompt(base, true).await;
        let again = prompt(base, true).await;
        let total = |(p, c): (u64, u64)| p + c;
        assert_eq!(
            total(with) - total(text),
            IMAGE_TOKENS,
            "{base}: text-only {text:?}, with the frame {with:?}"
        );
        assert_eq!(total(again), total(with), "{base}: {again:?}");
        assert!(
            again.1 > 0 && again.0 < IMAGE_TOKENS,
            "{base}: an identical repeat comes from the cache: {again:?}"
        );
    }
}
