//! The instrument against the scripted fake server (`vlmctl_bench::fake_server`): every outcome
//! counted exactly, in both protocols, and open-loop timing against a server slower than the load.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use vlmctl_bench::fake_server::{DEFAULT_ANSWER, FakeServer, IMAGE_TOKENS, Options, Reply, Step};
use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::{report, run};

fn say(content: &str) -> Step {
    Reply::Say(content.to_owned()).into()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn plan(
    dir: &Path,
    url: &str,
    backend: &str,
    configs: &str,
    runs: usize,
    timeout_s: f64,
    extra: &str,
) -> LoadedPlan {
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    for f in ["nav", "nav-short", "describe"] {
        std::fs::write(dir.join(format!("prompts/{f}.txt")), format!("{f} prompt")).unwrap();
    }
    std::fs::write(dir.join("camera.png"), b"\x89PNG fake").unwrap();
    std::fs::write(
        dir.join("plan.toml"),
        format!(
            "version = 1\nruns = {runs}\nwarmup = 0\ntimeout_s = {timeout_s}\ndescribe = false\nimage = \"camera.png\"\nconfigs = {configs}\n{extra}\n\
             [[target]]\nname = \"fake\"\nurl = \"{url}\"\nbackend = \"{backend}\"\nmodel = \"gemma4:e2b\"\n"
        ),
    )
    .unwrap();
    LoadedPlan::load(&dir.join("plan.toml")).unwrap()
}

fn noop(_: &str, _: &str, _: usize, _: usize) {}

#[tokio::test]
async fn every_outcome_is_counted_exactly() {
    let server = FakeServer::start([
        say(r#"{"action": "forward", "reason": "open floor"}"#), // strategy 1
        say("```json\n{\"action\": \"left\", \"reason\": \"wall\"}\n```"), // strategy 2
        say("Sure: {\"action\": \"brake\", \"reason\": \"cable\"} ok"), // strategy 2
        say("I would go right."),                                // strategy 3
        Reply::Think.into(),
        Reply::Malformed.into(),
        Reply::Status(500).into(),
        Reply::Status(503).into(),
        Reply::Hang.into(),
        // streamed (config C)
        say(r#"{"action": "stop", "reason": "goal"}"#),
        Reply::Cut.into(),
        Reply::Think.into(),
    ])
    .await
    .unwrap();
    let url = server.endpoint();
    let tmp = tempfile::tempdir().unwrap();
    // Config A: the 9 non-streamed behaviours; config C: 3 streamed ones, then defaults.
    let p = plan(tmp.path(), &url, "openai", "[\"A\", \"C\"]", 9, 0.5, "");
    let mut results = run::run(&p, &BTreeMap::new(), &noop).await;
    let a = &results.targets[0].configs[0].summary;
    assert_eq!(a.ok, 4);
    let errors: Vec<(&str, usize)> = a.errors.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        errors,
        [
            ("http", 2),
            ("malformed", 1),
            ("thinking_leaked", 1),
            ("timeout", 1)
        ]
    );
    assert_eq!(a.schema.get("whole_json"), Some(&1));
    assert_eq!(a.schema.get("extracted"), Some(&2));
    assert_eq!(a.schema.get("keyword"), Some(&1));
    assert_eq!(a.schema_pass_rate, Some(0.75));
    // The first request finds the cache empty; the 3 other answered ones repeat it exactly.
    assert_eq!(a.cache_hits, 3);
    assert_eq!(
        a.server_tokens_per_s,
        Some(500.0),
        "4 tokens in 8 ms, from timings"
    );
    let details: Vec<String> = results.targets[0].configs[0]
        .samples
        .iter()
        .filter_map(|s| s.error_detail.clone())
        .collect();
    assert!(
        details.iter().any(|d| d.starts_with("HTTP 503")),
        "{details:?}"
    );
    assert!(details.iter().any(|d| d.contains("--jinja")), "{details:?}");

    // Config C ran 9 requests too; the script had 3 streamed behaviours left, then defaults.
    let c = &results.targets[0].configs[1];
    let errors: Vec<(&str, usize)> = c
        .summary
        .errors
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(errors, [("stream_cut", 1), ("thinking_leaked", 1)]);
    for s in c.samples.iter().filter(|s| s.error.is_none()) {
        let ttft = s.ttft_ms.expect("ttft on streamed samples");
        assert!(ttft <= s.wall_ms, "{s:?}");
        assert_eq!(s.server.predicted_n, Some(4), "timings from the last chunk");
    }

    // Summaries are recomputable from the raw samples, also after a JSON round trip.
    let json = serde_json::to_string(&results).unwrap();
    results = serde_json::from_str(&json).unwrap();
    for cfg in &results.targets[0].configs {
        assert_eq!(run::summarize(&cfg.samples, true, None), cfg.summary);
    }
}

#[tokio::test]
async fn ollama_native_protocol_durations_are_converted_from_ns() {
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(
        tmp.path(),
        &server.endpoint(),
        "ollama",
        "[\"A\", \"C\"]",
        3,
        0.5,
        "",
    );
    let r = run::run(&p, &BTreeMap::new(), &noop).await;
    for c in &r.targets[0].configs {
        assert_eq!(c.summary.ok, 3, "{:?}", c.summary.errors);
        let s = &c.samples[0];
        assert_eq!(s.server.prompt_ms, Some(14.0));
        assert_eq!(s.server.predicted_ms, Some(13.0));
        assert_eq!(s.server.load_ms, Some(1.5));
        // <bos>, 3 + 2 template tokens around the turn, "nav prompt" (10 bytes: 3 tokens), the
        // frame's 66, 3 tokens opening the model's turn. Ollama reports no cache: all evaluated.
        assert_eq!(s.server.prompt_n, Some(78));
        assert_eq!(s.server.cache_n, None);
        assert_eq!(s.strategy, Some(vlmctl_bench::schema::Strategy::WholeJson));
    }
    assert!(
        r.targets[0].configs[1]
            .samples
            .iter()
            .all(|s| s.ttft_ms.is_some())
    );
    assert_eq!(server.chat_requests(), 6);
}

#[tokio::test]
async fn ollama_failures_are_counted_like_openai_ones() {
    let server = FakeServer::start([
        // Config A, not streamed.
        Reply::Think.into(),
        Reply::Status(500).into(),
        Reply::Malformed.into(),
        Reply::Cut.into(),
        // Config C, streamed.
        Reply::Think.into(),
        Reply::Cut.into(),
    ])
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(
        tmp.path(),
        &server.endpoint(),
        "ollama",
        "[\"A\", \"C\"]",
        4,
        0.5,
        "",
    );
    let r = run::run(&p, &BTreeMap::new(), &noop).await;
    let counted = |i: usize| {
        let s = &r.targets[0].configs[i].summary;
        let errors: Vec<(String, usize)> = s.errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        (s.ok, errors)
    };
    let pairs = |v: &[(&str, usize)]| {
        v.iter()
            .map(|(k, n)| ((*k).to_owned(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counted(0),
        (
            0,
            pairs(&[
                ("http", 1),
                ("malformed", 1),
                ("stream_cut", 1),
                ("thinking_leaked", 1)
            ])
        )
    );
    assert_eq!(
        counted(1),
        (2, pairs(&[("stream_cut", 1), ("thinking_leaked", 1)]))
    );
}

#[tokio::test]
async fn open_loop_measures_from_the_scheduled_time() {
    // 50 Hz (one request every 20 ms) against a server that takes 60 ms a request, one at a time
    // (one slot). Request i is scheduled at 20i ms and cannot be done before 60(i + 1) ms, so
    // from its scheduled send time it takes at least 60 + 40i ms: each request waits 40 ms
    // longer than the one before. Timing from the moment a request actually went out, after the
    // previous answer (coordinated omission), would show a flat 60 ms instead.
    const PERIOD_MS: f64 = 20.0;
    const SERVICE_MS: f64 = 60.0;
    const RUNS: usize = 10;
    let server = FakeServer::start_with(
        [],
        Options {
            then: Reply::Say(DEFAULT_ANSWER.to_owned()).after(ms(60)),
            slots: Some(1),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let loaded = plan(
        tmp.path(),
        &server.endpoint(),
        "openai",
        "[\"A\"]",
        RUNS,
        5.0,
        "[load]\nrate_hz = 50.0",
    );
    let results = run::run(&loaded, &BTreeMap::new(), &noop).await;
    let config = &results.targets[0].configs[0];
    assert_eq!(config.summary.ok, RUNS, "{:?}", config.summary.errors);

    // Open loop: each request reached the server on its schedule, not after the previous
    // answer (which would space them 60 ms apart).
    let arrivals: Vec<f64> = server
        .requests()
        .iter()
        .filter(|s| s.path == "/v1/chat/completions")
        .map(|s| s.at.as_secs_f64() * 1000.0)
        .collect();
    assert_eq!(arrivals.len(), RUNS);
    for (i, at) in arrivals.iter().enumerate() {
        let after_first = at - arrivals[0];
        assert!(
            after_first < PERIOD_MS * (i as f64 + 1.0),
            "request {i} arrived {after_first:.1} ms after the first: {arrivals:?}"
        );
    }

    // Latency includes the wait in the server's queue, counted from the scheduled time.
    let walls: Vec<f64> = config.samples.iter().map(|s| s.wall_ms).collect();
    let growth = SERVICE_MS - PERIOD_MS;
    for (i, wall) in walls.iter().enumerate() {
        let floor = SERVICE_MS + growth * i as f64;
        // A millisecond of slack, so that no rounding in the timer can fail it.
        assert!(
            *wall >= floor - 1.0,
            "sample {i}: {wall:.1} ms, expected at least {floor} ms: {walls:?}"
        );
    }
    assert!(
        walls.windows(2).all(|w| w[1] > w[0]),
        "latency grows request after request: {walls:?}"
    );
    // Least-squares slope of latency over the request index: 40 ms a request. Timing from the
    // first send for every request would give 60, timing from each actual send 0.
    let count = walls.len() as f64;
    let mean_index = (count - 1.0) / 2.0;
    let mean_wall = walls.iter().sum::<f64>() / count;
    let (num, den) = walls
        .iter()
        .enumerate()
        .fold((0.0, 0.0), |(num, den), (i, wall)| {
            let d = i as f64 - mean_index;
            (num + d * (wall - mean_wall), den + d * d)
        });
    let slope = num / den;
    assert!(
        (slope - growth).abs() < 10.0,
        "latency grows {slope:.1} ms a request, expected {growth}: {walls:?}"
    );
    // Every request took longer than the 20 ms period.
    assert_eq!(config.summary.deadline_miss_pct, Some(100.0));
    // Offered 50 Hz; the one-slot server completes one request every 60 ms (16.7 Hz), which
    // is what the run achieved. 1000 / p50 (a closed loop's rate) would say under 4 Hz.
    assert_eq!(config.summary.offered_hz, Some(50.0));
    assert_eq!(config.summary.effective_hz, None);
    let achieved = config.summary.achieved_hz.unwrap();
    assert!(
        (achieved - 1000.0 / SERVICE_MS).abs() < 1.5,
        "achieved {achieved:.1} Hz"
    );
}

#[tokio::test]
async fn the_fake_server_loads_then_follows_its_script() {
    let server = FakeServer::start_with(
        [Reply::Status(500).into()],
        Options {
            loading_for: ms(300),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let url = server.endpoint();
    let http = reqwest::Client::new();
    let chat = || {
        http.post(format!("{url}/v1/chat/completions"))
            .json(&serde_json::json!({"messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Loading model");
    assert_eq!(
        chat().await.unwrap().status(),
        503,
        "loading: script untouched"
    );
    tokio::time::sleep(ms(350)).await;
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        chat().await.unwrap().status(),
        500,
        "the script's first step"
    );
    server.push(say("pushed"));
    let answer: serde_json::Value = chat().await.unwrap().json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "pushed");
    let answer: serde_json::Value = chat().await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"], DEFAULT_ANSWER,
        "then `Options::then`"
    );
    assert_eq!(server.chat_requests(), 4);
    let paths: Vec<String> = server
        .requests()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        paths,
        [
            "GET /health",
            "POST /v1/chat/completions",
            "GET /health",
            "POST /v1/chat/completions",
            "POST /v1/chat/completions",
            "POST /v1/chat/completions"
        ]
    );
}

#[test]
fn a_different_camera_frame_is_refused_with_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = plan(
        tmp.path(),
        "http://127.0.0.1:9",
        "openai",
        "[\"A\"]",
        1,
        0.5,
        "",
    );
    let text = std::fs::read_to_string(tmp.path().join("plan.toml")).unwrap();
    let pinned = text.replace(
        "image = \"camera.png\"",
        &format!(
            "image = \"camera.png\"\nimage_sha256 = \"{}\"",
            "ab".repeat(32)
        ),
    );
    std::fs::write(tmp.path().join("plan.toml"), pinned).unwrap();
    let err = LoadedPlan::load(&tmp.path().join("plan.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&"ab".repeat(32)) && err.contains("file has"),
        "{err}"
    );
    std::fs::write(tmp.path().join("plan.toml"), "version = 1\nrunz = 3\n").unwrap();
    let err = LoadedPlan::load(&tmp.path().join("plan.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("plan.toml:2") && err.contains("runz"), "{err}");
}

#[tokio::test]
async fn the_frame_costs_image_tokens_and_repeats_come_from_the_cache() {
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(
        tmp.path(),
        &server.endpoint(),
        "openai",
        "[\"A\", \"B\", \"C\", \"T\"]",
        3,
        5.0,
        "",
    );
    let r = run::run(&p, &BTreeMap::new(), &noop).await;
    let evaluated = |i: usize| -> Vec<(Option<u64>, Option<u64>)> {
        let c = &r.targets[0].configs[i];
        assert_eq!(c.summary.ok, 3, "{}: {:?}", c.name, c.summary.errors);
        c.samples
            .iter()
            .map(|s| (s.server.prompt_n, s.server.cache_n))
            .collect()
    };
    // "nav prompt" with the template: 12 tokens; with the frame 12 + 66. The first request
    // evaluates all of it, every identical one after it (B, and C: streaming changes nothing
    // in the prompt) only the last token.
    assert_eq!(
        evaluated(0),
        [
            (Some(78), Some(0)),
            (Some(1), Some(77)),
            (Some(1), Some(77))
        ]
    );
    assert_eq!(evaluated(1), [(Some(1), Some(77)); 3]);
    assert_eq!(
        evaluated(2),
        [(Some(1), Some(77)); 3],
        "timings from the SSE stream"
    );
    // T after C: the prefix up to the end of the text is cached (<bos>, 3 template tokens, 3
    // text tokens), the 5 tokens after it are evaluated.
    assert_eq!(
        evaluated(3),
        [(Some(5), Some(7)), (Some(1), Some(11)), (Some(1), Some(11))]
    );
    let summary = |i: usize| {
        let s = &r.targets[0].configs[i].summary;
        (s.prompt_tokens_p50, s.prompt_evaluated_p50, s.cache_hits)
    };
    assert_eq!(summary(0), (Some(78), Some(1), 2));
    assert_eq!(summary(1), (Some(78), Some(1), 3));
    assert_eq!(summary(3), (Some(12), Some(1), 3));
    let cost = report::image_cost(&r, &r.targets[0]).expect("A and T ran");
    assert_eq!(
        cost.prompt_tokens,
        Some(i64::try_from(IMAGE_TOKENS).unwrap())
    );
    let table = report::table(&r);
    assert!(
        table
            .contains("\nfake: image cost (A vs T, same frame every request): +66 prompt tokens, "),
        "{table}"
    );
    assert!(table.contains("78 (1 eval)"), "{table}");

    // After T (the same text without a frame) the frame and the 5 tokens after it are
    // evaluated; a different frame breaks the cached prefix at the same place.
    let http = reqwest::Client::new();
    let send = |image: &str| {
        let body = serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "nav prompt"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{image}")}},
        ]}]});
        let r = http
            .post(format!("{}/v1/chat/completions", server.endpoint()))
            .json(&body)
            .send();
        async move {
            let v: serde_json::Value = r.await.unwrap().json().await.unwrap();
            let u = &v["usage"];
            (
                v["timings"]["prompt_n"].as_u64(),
                v["timings"]["cache_n"].as_u64(),
                u["prompt_tokens"].as_u64(),
                u["prompt_tokens_details"]["cached_tokens"].as_u64(),
            )
        }
    };
    assert_eq!(send("AAAA").await, (Some(71), Some(7), Some(78), Some(7)));
    assert_eq!(send("AAAA").await, (Some(1), Some(77), Some(78), Some(77)));
    assert_eq!(send("BBBB").await, (Some(71), Some(7), Some(78), Some(7)));
}

#[tokio::test]
async fn goodput_counts_only_fast_successful_schema_valid_answers() {
    // 10 requests: 7 fast valid answers, one valid but slow (80 ms), one fast keyword answer
    // (a schema miss), one HTTP 500. Against p50 <= 50 ms, p95 <= 50 ms and schema pass >= 90 %:
    // only the 7 are good; the p95 falls on the failure (failures rank as too slow) and 8 of
    // 10 answers pass the schema.
    let fast = || say(DEFAULT_ANSWER);
    let mut script: Vec<Step> = (0..7).map(|_| fast()).collect();
    script.insert(3, Reply::Say(DEFAULT_ANSWER.to_owned()).after(ms(80)));
    script.insert(5, say("I would go left."));
    script.push(Reply::Status(500).into());
    let server = FakeServer::start(script).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(
        tmp.path(),
        &server.endpoint(),
        "openai",
        "[\"A\"]",
        10,
        5.0,
        "[slo]\np50_ms = 50\np95_ms = 50\nschema_pass = 0.9",
    );
    let r = run::run(&p, &BTreeMap::new(), &noop).await;
    let config = &r.targets[0].configs[0];
    let slo = config.summary.slo.as_ref().expect("the plan has an SLO");
    assert_eq!((slo.good, slo.total, slo.goodput), (7, 10, Some(0.7)));
    let checks: Vec<(&str, bool)> = slo
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.met))
        .collect();
    assert_eq!(
        checks,
        [("p50_ms", true), ("p95_ms", false), ("schema_pass", false)]
    );
    assert_eq!(slo.checks[1].actual, None, "p95 on the failed request");
    assert_eq!(slo.checks[2].actual, Some(0.8));
    assert!(!slo.met);

    // Every rendering says so, with the numbers.
    let detail = "p95 on a failed request > 50.0 ms, schema pass 80% < 90%; goodput 7/10";
    let table = report::table(&r);
    let head = table.lines().next().unwrap();
    assert!(head.contains("SLO") && head.contains("GOODPUT"), "{table}");
    assert!(table.contains(" MISSED  70% "), "{table}");
    assert!(table.contains("\nfake A: SLO MISSED: p50 "), "{table}");
    assert!(table.contains(detail), "{table}");
    assert!(
        table.contains("\nSLO: p50 <= 50 ms, p95 <= 50 ms, schema pass >= 90%; goodput = "),
        "{table}"
    );
    let md = report::markdown(&r);
    assert!(md.contains("| SLO | goodput | notes |"), "{md}");
    assert!(
        md.contains("| MISSED | 70% |") && md.contains(detail),
        "{md}"
    );
    let html = report::html(&r, None);
    assert!(
        html.contains(&detail.replace('<', "&lt;").replace('>', "&gt;")),
        "{html}"
    );

    // Stored in results.json and recomputable from the samples.
    let back: run::Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    let c = &back.targets[0].configs[0];
    assert_eq!(run::summarize_for(&back.plan, &c.samples, false), c.summary);
}

#[tokio::test]
async fn poisson_open_loop_follows_its_seeded_schedule_and_reports_rates() {
    const RUNS: usize = 12;
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let loaded = plan(
        tmp.path(),
        &server.endpoint(),
        "openai",
        "[\"A\"]",
        RUNS,
        5.0,
        "[load]\nrate_hz = 40.0\narrivals = \"poisson\"\nseed = 3",
    );
    let schedule = loaded.plan.load.schedule(RUNS).unwrap();
    let r = run::run(&loaded, &BTreeMap::new(), &noop).await;
    let config = &r.targets[0].configs[0];
    assert_eq!(config.summary.ok, RUNS, "{:?}", config.summary.errors);

    // The requests went out on the seeded schedule: its gaps, not a constant 25 ms.
    let sched_ms: Vec<f64> = schedule.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let gaps: Vec<f64> = sched_ms.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().any(|g| (g - 25.0).abs() > 10.0),
        "Poisson gaps vary: {gaps:?}"
    );
    let arrivals: Vec<f64> = server
        .requests()
        .iter()
        .filter(|s| s.path == "/v1/chat/completions")
        .map(|s| s.at.as_secs_f64() * 1000.0)
        .collect();
    // Never early; late by at most a loaded machine's timer and task scheduling. Sent at a
    // constant 25 ms instead, the arrivals would drift from this seed's schedule by more:
    let drift = sched_ms
        .iter()
        .enumerate()
        .map(|(i, t)| (t - sched_ms[0] - i as f64 * 25.0).abs())
        .fold(0.0, f64::max);
    assert!(drift > 60.0, "seed 3 must not look constant: {drift} ms");
    for (i, (at, want)) in arrivals.iter().zip(&sched_ms).enumerate() {
        let off = (at - arrivals[0]) - want;
        assert!(
            (-2.0..50.0).contains(&off),
            "request {i} arrived {off:+.1} ms off its schedule: {arrivals:?} vs {sched_ms:?}"
        );
    }
    for (s, want) in config.samples.iter().zip(&sched_ms) {
        assert_eq!(s.scheduled_ms, Some(*want));
        assert!(
            s.queue_ms.is_some_and(|q| (0.0..50.0).contains(&q)),
            "{s:?}"
        );
    }

    // Open-loop figures: the offered rate, what the server achieved, no 1000 / p50.
    let s = &config.summary;
    assert_eq!(s.offered_hz, Some(40.0));
    assert_eq!(s.effective_hz, None, "1000 / p50 is a closed loop's rate");
    let achieved = s.achieved_hz.unwrap();
    // Completions follow the schedule: (n - 1) over its span, give or take the timer.
    let expect = (RUNS - 1) as f64 * 1000.0 / sched_ms[RUNS - 1];
    assert!(
        (achieved - expect).abs() / expect < 0.25,
        "{achieved} Hz vs {expect}"
    );
    assert!(s.queue_ms.is_some());
    let table = report::table(&r);
    let head = table.lines().next().unwrap();
    assert!(
        head.contains("OFFERED Hz  ACHVD Hz  MISS  QUEUE p50/p95") && !head.contains("EFF Hz"),
        "{table}"
    );
    assert!(
        table.contains("\nopen loop: Poisson arrivals at 40 Hz on average (seed 3)"),
        "{table}"
    );
    let md = report::markdown(&r);
    assert!(
        md.contains("| offered Hz | achieved Hz | deadline miss | queue p50/p95 ms |")
            && md.contains("| 40.0 | "),
        "{md}"
    );
    // The seed is recorded with the plan.
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["plan"]["load"]["seed"], 3);
    assert_eq!(json["plan"]["load"]["arrivals"], "poisson");
}

#[tokio::test]
async fn streams_report_inter_token_latency_and_tpot() {
    for backend in ["openai", "ollama"] {
        // A model sending one token every 10 ms.
        let server = FakeServer::start_with(
            [],
            Options {
                token_gap: ms(10),
                ..Options::default()
            },
        )
        .await
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let p = plan(
            tmp.path(),
            &server.endpoint(),
            backend,
            "[\"A\", \"C\"]",
            3,
            5.0,
            "",
        );
        let r = run::run(&p, &BTreeMap::new(), &noop).await;
        let (a, c) = (
            &r.targets[0].configs[0].summary,
            &r.targets[0].configs[1].summary,
        );
        assert_eq!((a.ok, c.ok), (3, 3), "{:?} {:?}", a.errors, c.errors);
        // The default answer comes in 12 pieces: 11 gaps a request, each about 10 ms.
        let itl = c.itl_ms.expect("ITL on the streamed config");
        assert_eq!(itl.n, 33, "{backend}");
        // One delta read late makes its gap longer and the next one shorter; the mean is
        // the span from the first delta to the last over 11, which the sender's sleeps keep at
        // 10 ms or more, less whatever the first delta's reading was late by.
        assert!(
            itl.mean >= 9.0 && (8.0..30.0).contains(&itl.p50),
            "{backend}: {itl:?}"
        );
        assert_eq!(a.itl_ms, None, "nothing streamed in A");
        // TPOT from the server's timings: llama-server 8 ms for 4 tokens, Ollama 13 ms for 9.
        let tpot = if backend == "openai" { 2.0 } else { 13.0 / 9.0 };
        for s in [a, c] {
            assert_eq!(s.tpot_ms.map(|t| t.p50), Some(tpot), "{backend}");
        }
        let table = report::table(&r);
        let head = table.lines().next().unwrap();
        assert!(head.contains("TTFT p50  ITL p50/p95  TPOT ms"), "{table}");
        let md = report::markdown(&r);
        assert!(md.contains("| ITL p50/p95 ms | TPOT p50 ms |"), "{md}");
    }

    // Sent at once, the deltas arrive together: no 10 ms gaps to report.
    let server = FakeServer::start([]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(
        tmp.path(),
        &server.endpoint(),
        "openai",
        "[\"C\"]",
        3,
        5.0,
        "",
    );
    let r = run::run(&p, &BTreeMap::new(), &noop).await;
    let itl = r.targets[0].configs[0].summary.itl_ms.unwrap();
    assert!(itl.p95 < 5.0, "{itl:?}");
}

/// A describe request that gets no answer is a step of its own: started and ended as events
/// (the CLI shows them), its failure recorded in the results, and the configs still run.
#[tokio::test]
async fn a_failed_describe_request_is_reported_and_recorded() {
    let server = FakeServer::start([Reply::Hang.into()]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    plan(
        tmp.path(),
        &server.endpoint(),
        "openai",
        "[\"A\"]",
        2,
        0.5,
        "",
    );
    let file = tmp.path().join("plan.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("describe = false", "describe = true")).unwrap();
    let p = LoadedPlan::load(&file).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let events = |e: run::Event<'_>| {
        let line = match e {
            run::Event::DescribeStarted { target, timeout } => {
                format!("{target}: describe started, up to {timeout:?}")
            }
            run::Event::DescribeDone {
                target,
                error,
                elapsed,
            } => {
                assert!(elapsed >= ms(400), "{elapsed:?}");
                format!("{target}: describe done: {error:?}")
            }
            run::Event::Requests { .. } => return,
        };
        seen.lock().unwrap().push(line);
    };
    let r = run::run_with(&p, &BTreeMap::new(), &events).await;
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], "fake: describe started, up to 500ms");
    assert!(
        seen[1].starts_with("fake: describe done: Some(\"timeout: "),
        "{seen:?}"
    );
    let t = &r.targets[0];
    assert_eq!(t.describe_answer, None);
    assert!(
        t.describe_error
            .as_deref()
            .is_some_and(|e| e.starts_with("timeout: ")),
        "{:?}",
        t.describe_error
    );
    assert_eq!(t.configs[0].summary.ok, 2, "the configs still ran");
}
