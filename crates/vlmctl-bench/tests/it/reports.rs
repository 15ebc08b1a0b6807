//! Snapshots of the human-facing renderings on fixed samples.

use std::collections::BTreeMap;

use vlmctl_bench::client::ServerTimings;
use vlmctl_bench::compare::{self, ComparisonVerdict};
use vlmctl_bench::plan::{Backend, Plan};
use vlmctl_bench::report;
use vlmctl_bench::run::{self, ConfigResult, Environment, Results, Sample, TargetResult};
use vlmctl_bench::schema::Strategy;

/// Sample `i` of 20; the last `misses` of them are keyword answers (schema misses). Its prompt
/// has `prompt` tokens: the first sample evaluates all of them, later ones find `cached` of
/// them in the server's cache.
fn sample(i: usize, wall: f64, misses: usize, (prompt, cached): (u64, u64)) -> Sample {
    let cached = if i == 0 { 0 } else { cached };
    Sample {
        index: i,
        wall_ms: wall,
        ttft_ms: None,
        error: None,
        error_detail: None,
        strategy: Some(if i + misses >= RUNS {
            Strategy::Keyword
        } else {
            Strategy::WholeJson
        }),
        server: ServerTimings {
            prompt_n: Some(prompt - cached),
            prompt_ms: Some(1.0),
            predicted_n: Some(4),
            predicted_ms: Some(4.0),
            cache_n: Some(cached),
            load_ms: None,
        },
        completion_tokens: Some(4),
        scheduled_ms: None,
        queue_ms: None,
        itl_ms: Vec::new(),
        timings_unusable: None,
    }
}

const RUNS: usize = 20;

/// One config: its letter, the p50 its samples have (nearest rank over `p50 - 3 + i % 7`),
/// how many of its 20 answers miss the schema, and its prompt tokens (total, cached after the
/// first request).
pub(crate) struct Config(
    pub(crate) &'static str,
    pub(crate) &'static str,
    pub(crate) f64,
    pub(crate) usize,
    pub(crate) (u64, u64),
);

/// The real server's counts (`scripts/test`'s model and projector, `examples/camera.png`).
pub(crate) const NAV_IMAGE: (u64, u64) = (759, 758);
pub(crate) const SHORT_IMAGE: (u64, u64) = (308, 303);
pub(crate) const NAV_TEXT: (u64, u64) = (693, 0);

pub(crate) fn results(name: &str, image: &str, configs: &[Config]) -> Results {
    let plan: Plan = toml::from_str("version = 1\nimage = \"camera.png\"\n[[target]]\nname = \"llamacpp\"\nurl = \"http://127.0.0.1:11435\"\n").unwrap();
    let configs = configs
        .iter()
        .map(|&Config(letter, description, p50, misses, prompt)| {
            let samples: Vec<Sample> = (0..RUNS)
                .map(|i| sample(i, p50 - 3.0 + (i % 7) as f64, misses, prompt))
                .collect();
            let summary = run::summarize(&samples, true, None);
            assert_eq!(summary.wall_ms.map(|w| w.p50), Some(p50));
            ConfigResult {
                name: letter.into(),
                description: description.into(),
                summary,
                warmup: vec![],
                samples,
            }
        })
        .collect();
    Results {
        format: run::FORMAT.into(),
        started_unix: 0,
        plan,
        plan_sha256: "p".repeat(64),
        prompt_sha256: BTreeMap::from([("nav".into(), "n".repeat(64))]),
        image_sha256: image.repeat(64),
        environment: Environment {
            arch: "x86_64".into(),
            cpu: Some("test cpu".into()),
            gpu: None,
            vlmctl: "0".into(),
        },
        targets: vec![TargetResult {
            name: name.into(),
            backend: Backend::Openai,
            url: "http://127.0.0.1:11435".into(),
            host: None,
            deployment: None,
            // llama-server's /props and /v1/models, cut to what the header shows.
            server_info: serde_json::json!({
                "default_generation_settings": {"n_ctx": 4096},
                "total_slots": 1,
                "model_path": "/models/gemma-3-270m-it-Q8_0.gguf",
                "build_info": "b6000-0123abc"
            }),
            models: serde_json::json!({"data": [{"id": "gemma-3-270m-it-Q8_0.gguf"}]}),
            describe_answer: Some("A light green floor.".into()),
            describe_error: None,
            configs,
        }],
        sweep: Vec::new(),
    }
}

#[test]
fn table_markdown_and_compare() {
    let panda = results(
        "llamacpp",
        "a",
        &[
            Config("A", "full nav prompt + image", 21.0, 0, NAV_IMAGE),
            Config("B", "full prompt repeat (cache warm)", 40.0, 0, NAV_IMAGE),
            Config("D", "short nav prompt + image", 40.0, 1, SHORT_IMAGE),
            Config("T", "text-only nav (no image)", 18.0, 0, NAV_TEXT),
        ],
    );
    insta::assert_snapshot!("table", report::table(&panda));
    insta::assert_snapshot!("markdown", report::markdown(&panda));
    // One row per way the rule can go: A within noise; B just under 20 % slower with the pass
    // rate exactly 95 % (both still noise); D just over 20 %; T fast enough but 90 % schema pass.
    let beast = results(
        "llamacpp",
        "b",
        &[
            Config("A", "full nav prompt + image", 21.5, 0, NAV_IMAGE),
            Config("B", "full prompt repeat (cache warm)", 47.96, 1, NAV_IMAGE),
            Config("D", "short nav prompt + image", 48.04, 0, SHORT_IMAGE),
            Config("T", "text-only nav (no image)", 18.5, 2, NAV_TEXT),
        ],
    );
    let comparison = compare::compare(&panda, &beast);
    let verdicts: Vec<(&str, ComparisonVerdict)> = comparison
        .rows
        .iter()
        .map(|r| (r.config.as_str(), r.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("A", ComparisonVerdict::WithinNoise),
            ("B", ComparisonVerdict::WithinNoise),
            ("D", ComparisonVerdict::Investigate),
            ("T", ComparisonVerdict::Investigate)
        ]
    );
    insta::assert_snapshot!("compare", compare::render(&comparison));
    let html = report::html(&beast, Some(&panda));
    // Both charts (plotters' SVG, inline) and a real table; no Markdown copy in a <pre>.
    assert!(
        html.contains("<figure id=chart-cdf>") && html.contains("<figure id=chart-p50>"),
        "{html}"
    );
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("<table class=results>") && !html.contains("<pre>"));
    assert!(html.contains("baseline"));
    // Every attribute value inside the SVG is quoted: an unquoted `fill=#999/>` swallows the
    // slash, leaves the element open and hides everything after it (seen in a real report).
    for svg in html.split("<svg").skip(1) {
        let svg = svg.split("</svg>").next().unwrap_or_default();
        for tag in svg.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or_default();
            for (i, _) in tag.match_indices('=') {
                let next = tag[i + 1..].chars().next();
                assert!(
                    matches!(next, Some('\'' | '"')),
                    "unquoted attribute in <{tag}>"
                );
            }
        }
    }
}

/// `r` with every wall time multiplied by `factor`, summaries recomputed.
fn scaled(r: &Results, factor: f64) -> Results {
    let mut r = r.clone();
    for c in &mut r.targets[0].configs {
        for s in &mut c.samples {
            s.wall_ms *= factor;
        }
        c.summary = run::summarize(&c.samples, true, None);
    }
    r
}

#[test]
fn compare_gives_reasons_and_an_interval_of_the_change_the_verdict_judges() {
    let base = results(
        "llamacpp",
        "a",
        &[
            Config("A", "full nav prompt + image", 21.0, 0, NAV_IMAGE),
            Config("D", "short nav prompt + image", 40.0, 2, SHORT_IMAGE),
        ],
    );
    // A run against its own x1.5 copy: the p50 is 50 % higher.
    let c = compare::compare(&base, &scaled(&base, 1.5));
    for r in &c.rows {
        assert!((r.change_pct - 50.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.verdict, ComparisonVerdict::Investigate);
        // The interval is of the change the verdict judges: it holds the measured change and,
        // on these tight samples, lies wholly beyond the tolerance, as the verdict says.
        let (lo, hi) = r.change_ci_pct;
        assert!(lo <= 50.0 && 50.0 <= hi, "{r:?}");
        assert!(lo > compare::MAX_P50_CHANGE_PCT, "{r:?}");
        assert!(!r.interval_crosses_tolerance());
    }
    assert_eq!(c.rows[0].reasons, [compare::Reason::Latency]);
    assert_eq!(
        c.rows[1].reasons,
        [compare::Reason::Latency, compare::Reason::Schema],
        "D's copy keeps its 2 schema misses of 20 (90 %)"
    );
    let text = compare::render(&c);
    assert!(text.contains("investigate (latency)  "), "{text}");
    assert!(text.contains("investigate (latency, schema)"), "{text}");
    assert!(!text.contains("note:"), "{text}");
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json["rows"][1]["reasons"],
        serde_json::json!(["latency", "schema"])
    );

    // Samples spread from 1x to 5x the p50 (a server with a cold and a warm path): 20 samples
    // cannot pin the p50 down, the x1.5 copy's interval reaches below +20 %, and the row says
    // that its verdict rests on the measured change.
    let mut wide = base.clone();
    for (i, s) in wide.targets[0].configs[0].samples.iter_mut().enumerate() {
        s.wall_ms = if i % 2 == 0 {
            100.0 + i as f64
        } else {
            400.0 + i as f64
        };
    }
    wide.targets[0].configs[0].summary =
        run::summarize(&wide.targets[0].configs[0].samples, true, None);
    let c = compare::compare(&wide, &scaled(&wide, 1.5));
    let r = &c.rows[0];
    assert_eq!(r.verdict, ComparisonVerdict::Investigate);
    assert!((r.change_pct - 50.0).abs() < 1e-9, "{r:?}");
    assert!(
        r.ci_ms.0 < 0.0,
        "the ms interval of the difference holds 0: {r:?}"
    );
    let (lo, hi) = r.change_ci_pct;
    assert!(lo < compare::MAX_P50_CHANGE_PCT && 50.0 <= hi, "{r:?}");
    assert!(r.interval_crosses_tolerance());
    let text = compare::render(&c);
    assert!(
        text.contains("note: llamacpp A: the p50 change's 95 % interval ["),
        "{text}"
    );
}

#[test]
fn the_image_cost_is_a_against_t_and_only_when_both_ran() {
    let configs = [
        Config("A", "full nav prompt + image", 21.0, 0, NAV_IMAGE),
        Config("C", "full prompt streaming (TTFT)", 30.0, 0, NAV_IMAGE),
        Config("T", "text-only nav (no image)", 18.0, 0, NAV_TEXT),
    ];
    let r = results("cpu", "a", &configs);
    let cost = report::image_cost(&r, &r.targets[0]).expect("A and T ran");
    assert_eq!(cost.prompt_tokens, Some(759 - 693));
    assert_eq!(cost.p50_ms, Some(3.0));
    assert!(
        cost.p50_pct
            .is_some_and(|p| (p - 100.0 * 3.0 / 18.0).abs() < 1e-9)
    );
    let line =
        "image cost (A vs T, same frame every request): +66 prompt tokens, +3.0 ms p50 (+17 %)";
    assert_eq!(report::image_cost_line(&cost), line);
    assert!(
        report::table(&r).contains(&format!("\ncpu: {line}")),
        "{}",
        report::table(&r)
    );
    assert!(
        report::markdown(&r)
            .contains("\nImage cost (A vs T, same frame every request): +66 prompt tokens")
    );
    assert!(report::html(&r, None).contains(line));

    // One of the two missing, or no frame in the plan (A then went text-only too): no line.
    for (without, image) in [("A", "a"), ("T", "a"), ("", "")] {
        let kept: Vec<Config> = configs
            .iter()
            .filter(|c| c.0 != without)
            .map(|c| Config(c.0, c.1, c.2, c.3, c.4))
            .collect();
        let r = results("cpu", image, &kept);
        if image.is_empty() {
            // No frame: the header says so in a word, not with an empty hash.
            assert!(report::markdown(&r).contains("image sha256 `none`,"));
        }
        assert_eq!(
            report::image_cost(&r, &r.targets[0]),
            None,
            "without {without:?}"
        );
        for text in [
            report::table(&r),
            report::markdown(&r),
            report::html(&r, None),
        ] {
            assert!(!text.to_lowercase().contains("image cost"), "{text}");
        }
    }

    // Figures a config lacks are said to be missing, not shown as 0.
    let mut r = results("cpu", "a", &configs);
    for s in &mut r.targets[0].configs[0].samples {
        s.server = ServerTimings::default();
        s.error = Some(vlmctl_bench::client::ErrorKind::Timeout);
    }
    r.targets[0].configs[0].summary = run::summarize(&r.targets[0].configs[0].samples, true, None);
    let cost = report::image_cost(&r, &r.targets[0]).expect("both ran");
    assert_eq!(
        report::image_cost_line(&cost),
        "image cost (A vs T, same frame every request): prompt tokens not reported, p50 not measured (no successful sample in A or T)"
    );
}

#[test]
fn every_rendering_shows_the_prompt_tokens_per_config() {
    let r = results(
        "cpu",
        "a",
        &[
            Config("A", "full nav prompt + image", 21.0, 0, NAV_IMAGE),
            Config("T", "text-only nav (no image)", 18.0, 0, NAV_TEXT),
        ],
    );
    let table = report::table(&r);
    assert!(
        table.lines().next().unwrap().contains("PROMPT tok"),
        "{table}"
    );
    assert!(
        table.contains("759 (1 eval)") && table.contains(" 693 "),
        "{table}"
    );
    let md = report::markdown(&r);
    assert!(md.contains("| prompt tok |"), "{md}");
    assert!(
        md.contains("| 759 (1 evaluated) |") && md.contains("| 693 |"),
        "{md}"
    );
    let html = report::html(&r, None);
    assert!(html.contains("PROMPT tok") && html.contains("759 (1 evaluated)"));
    // Without timings (a server that sends none): a dash, not 0.
    let mut r = r;
    for c in &mut r.targets[0].configs {
        for s in &mut c.samples {
            s.server = ServerTimings::default();
        }
        c.summary = run::summarize(&c.samples, true, None);
    }
    assert!(
        report::markdown(&r).contains("| 18.0 | 21.0 | 55.6 | - | - | 100% |"),
        "{}",
        report::markdown(&r)
    );
}

#[test]
fn a_results_file_written_before_the_prompt_fields_still_loads() {
    // `bench compare` reads old files: a results.json as written before `prompt_tokens_p50`.
    let r = results(
        "cpu",
        "a",
        &[Config("A", "full nav prompt + image", 21.0, 0, NAV_IMAGE)],
    );
    let mut old = serde_json::to_value(&r).unwrap();
    let summary = old["targets"][0]["configs"][0]["summary"]
        .as_object_mut()
        .unwrap();
    assert!(summary.remove("prompt_tokens_p50").is_some());
    assert!(summary.remove("prompt_evaluated_p50").is_some());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("results.json");
    std::fs::write(&path, old.to_string()).unwrap();
    let back = vlmctl_bench::load_results(&path).unwrap();
    let s = &back.targets[0].configs[0].summary;
    assert_eq!((s.prompt_tokens_p50, s.prompt_evaluated_p50), (None, None));
    assert!(report::table(&back).contains("21.0"));
    // And it compares with a new one.
    assert_eq!(compare::compare(&back, &r).rows.len(), 1);
}

#[test]
fn a_target_on_a_host_by_deployment_is_named_so_and_older_files_still_load() {
    let mut r = results(
        "beast",
        "a",
        &[Config("A", "full nav prompt + image", 21.0, 0, NAV_IMAGE)],
    );
    r.targets[0].host = Some("beast".into());
    r.targets[0].deployment = Some("beast-e4b".into());
    r.plan.targets[0].host = Some("beast".into());
    r.plan.targets[0].deployment = Some("beast-e4b".into());
    assert!(
        report::markdown(&r).contains(
            "\n## beast (OpenAI, http://127.0.0.1:11435, on beast, deployment beast-e4b)\n"
        ),
        "{}",
        report::markdown(&r)
    );
    // As a results.json written before targets had hosts and deployments.
    let mut old = serde_json::to_value(&r).unwrap();
    for at in ["/targets/0", "/plan/target/0"] {
        let t = old.pointer_mut(at).unwrap().as_object_mut().unwrap();
        assert!(t.remove("host").is_some() && t.remove("deployment").is_some());
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("results.json");
    std::fs::write(&path, old.to_string()).unwrap();
    let back = vlmctl_bench::load_results(&path).unwrap();
    assert_eq!(
        (&back.targets[0].host, &back.targets[0].deployment),
        (&None, &None)
    );
    assert_eq!(back.plan.targets[0].host, None);
    assert!(report::markdown(&back).contains("\n## beast (OpenAI, http://127.0.0.1:11435)\n"));
    assert_eq!(compare::compare(&back, &r).rows.len(), 1);
}

/// `results(..)` as an open-loop Poisson run at 36 Hz with an SLO: every request scheduled
/// 27.8 ms after the one before, sent 0.1-0.7 ms late; config C streamed with 3 gaps a request.
pub(crate) fn open_loop_with_slo() -> Results {
    let mut r = results(
        "llamacpp",
        "a",
        &[
            Config("A", "full nav prompt + image", 21.0, 0, NAV_IMAGE),
            Config("C", "full prompt streaming (TTFT)", 30.0, 1, NAV_IMAGE),
        ],
    );
    r.plan = toml::from_str(
        "version = 1\nimage = \"camera.png\"\n[load]\nrate_hz = 36.0\narrivals = \"poisson\"\n\
         [slo]\np95_ms = 27.8\nttft_ms = 12\nschema_pass = 0.95\n\
         [[target]]\nname = \"llamacpp\"\nurl = \"http://127.0.0.1:11435\"\n",
    )
    .unwrap();
    for (k, c) in r.targets[0].configs.iter_mut().enumerate() {
        let streamed = k == 1;
        for (i, s) in c.samples.iter_mut().enumerate() {
            s.scheduled_ms = Some(i as f64 * 27.8);
            s.queue_ms = Some(0.1 * (i % 7 + 1) as f64);
            if streamed {
                s.ttft_ms = Some(8.0 + (i % 7) as f64);
                s.itl_ms = vec![2.0, 2.5, 3.0];
            }
        }
        c.summary = run::summarize_for(&r.plan, &c.samples, streamed);
    }
    r
}

#[test]
fn open_loop_and_slo_renderings() {
    let r = open_loop_with_slo();
    insta::assert_snapshot!("table_open_loop_slo", report::table(&r));
    insta::assert_snapshot!("markdown_open_loop_slo", report::markdown(&r));
    let a = r.targets[0].configs[0].summary.slo.as_ref().unwrap();
    // A: p95 24 ms within 27.8; C: p95 33 ms is not, TTFT p95 14 > 12, one schema miss.
    assert!(a.met);
    let c = r.targets[0].configs[1].summary.slo.as_ref().unwrap();
    assert!(!c.met);
}

#[test]
fn a_results_file_written_before_slo_arrivals_itl_and_tpot_still_loads() {
    // The new fields taken out, as a results.json written before them: the plan's `slo`,
    // `load.arrivals` and `load.seed`; the samples' schedule, queueing and ITL; the summaries'
    // open-loop, ITL, TPOT and SLO figures.
    let r = open_loop_with_slo();
    let mut old = serde_json::to_value(&r).unwrap();
    let plan = old["plan"].as_object_mut().unwrap();
    assert!(plan.remove("slo").is_some());
    let load = plan["load"].as_object_mut().unwrap();
    assert!(load.remove("arrivals").is_some() && load.remove("seed").is_some());
    for c in old["targets"][0]["configs"].as_array_mut().unwrap() {
        let s = c["summary"].as_object_mut().unwrap();
        for k in [
            "offered_hz",
            "achieved_hz",
            "queue_ms",
            "itl_ms",
            "tpot_ms",
            "slo",
        ] {
            assert!(s.remove(k).is_some(), "{k}");
        }
        for sample in c["samples"].as_array_mut().unwrap() {
            let sample = sample.as_object_mut().unwrap();
            assert!(sample.remove("scheduled_ms").is_some());
            assert!(sample.remove("queue_ms").is_some());
            sample.remove("itl_ms");
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("results.json");
    std::fs::write(&path, old.to_string()).unwrap();
    let back = vlmctl_bench::load_results(&path).unwrap();
    assert_eq!(back.plan.slo, None);
    assert_eq!(back.plan.load.seed, 1);
    let s = &back.targets[0].configs[0].summary;
    assert_eq!(
        (s.offered_hz, s.achieved_hz, s.slo.as_ref()),
        (None, None, None)
    );
    assert!(back.targets[0].configs[1].samples[0].itl_ms.is_empty());
    // It renders (the HTML with both charts and its table), and compares with a new one
    // either way round.
    assert!(report::table(&back).contains("21.0"));
    let html = report::html(&back, Some(&r));
    for part in [
        "<figure id=chart-cdf>",
        "<figure id=chart-p50>",
        "<td>21.0</td>",
    ] {
        assert!(html.contains(part), "{part}");
    }
    assert_eq!(compare::compare(&back, &r).rows.len(), 2);
    assert_eq!(compare::compare(&r, &back).rows.len(), 2);
}

/// One figure of a summary set to a value.
type SummaryEdit = fn(&mut run::ConfigSummary, f64);

/// The adversarial pass's two files: a server whose every answer says `predicted_ms` 1.7e308
/// (results.json as `vlmctl bench` writes it), and a file edited to latencies of 1.7e308 ms.
#[test]
fn results_with_extreme_figures_read_back_and_implausible_latencies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let write = |r: &Results| std::fs::write(&path, serde_json::to_vec_pretty(r).unwrap()).unwrap();

    // What the bench writes for the huge-timings server reads back, as it was.
    let mut r = results("huge", "i", &[Config("A", "nav", 40.0, 0, NAV_IMAGE)]);
    for v in [1.7e308, f64::MAX, 1e300, -1.0, 0.0, 5e-324] {
        for c in &mut r.targets[0].configs {
            for s in &mut c.samples {
                s.server.predicted_ms = Some(v);
                s.server.predicted_n = Some(u64::MAX);
                s.completion_tokens = Some(u64::MAX);
                s.timings_unusable = run::timings_problem(s);
            }
            c.summary = run::summarize(&c.samples, true, None);
        }
        write(&r);
        let back =
            vlmctl_bench::load_results(&path).unwrap_or_else(|e| panic!("predicted_ms {v:e}: {e}"));
        assert_eq!(back, r, "predicted_ms {v:e}");
        // And its reports render.
        assert!(report::markdown(&back).contains("| A nav |"));
    }

    // Latencies no request could have had are refused, naming the field.
    for (v, why) in [
        (1.7e308, "longer than any run can last"),
        (-1.0, "a negative time"),
        (1.1e12, "longer than any run can last"),
    ] {
        let mut bad = results("bad", "i", &[Config("A", "nav", 40.0, 0, NAV_IMAGE)]);
        bad.targets[0].configs[0].samples[3].wall_ms = v;
        write(&bad);
        let e = vlmctl_bench::load_results(&path).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, vlmctl_bench::BenchError::ImplausibleResults { .. })
                && text.contains("targets[0].configs[0].samples[3].wall_ms")
                && text.contains(why),
            "{text}"
        );
        assert!(e.hint().contains("samples[3].wall_ms"), "{}", e.hint());
        // A summary edited alone is refused too (the adversarial pass's file had both).
        let mut bad = results("bad", "i", &[Config("A", "nav", 40.0, 0, NAV_IMAGE)]);
        if let Some(w) = bad.targets[0].configs[0].summary.wall_ms.as_mut() {
            w.p50 = v;
        }
        let e = bad.validate(&path).unwrap_err().to_string();
        assert!(e.contains("configs[0].summary.wall_ms.p50"), "{e}");
    }

    // Every other summary figure is bounded too (the re-test imported tpot_ms, effective_hz
    // and schema_pass_rate of ±1.7e308 and `runs show` printed 300-digit numbers).
    let edits: [(&str, SummaryEdit, &[f64]); 8] = [
        (
            "tpot_ms.p50",
            |s, v| s.tpot_ms.as_mut().unwrap().p50 = v,
            &[1.7e308, -1.7e308, -1.0],
        ),
        (
            "effective_hz",
            |s, v| s.effective_hz = Some(v),
            &[1.7e308, -1.7e308, -1.0, 2e9],
        ),
        (
            "client_tokens_per_s",
            |s, v| s.client_tokens_per_s = Some(v),
            &[1e308, -3.0],
        ),
        (
            "server_tokens_per_s",
            |s, v| s.server_tokens_per_s = Some(v),
            &[f64::INFINITY],
        ),
        (
            "schema_pass_rate",
            |s, v| s.schema_pass_rate = Some(v),
            &[1e308, 1.5, -0.1],
        ),
        (
            "deadline_miss_pct",
            |s, v| s.deadline_miss_pct = Some(v),
            &[100.5, -1.0],
        ),
        ("offered_hz", |s, v| s.offered_hz = Some(v), &[1e308]),
        ("achieved_hz", |s, v| s.achieved_hz = Some(v), &[-1e308]),
    ];
    for (field, edit, values) in edits {
        for &v in values {
            let mut bad = results("bad", "i", &[Config("A", "nav", 40.0, 0, NAV_IMAGE)]);
            let s = &mut bad.targets[0].configs[0].summary;
            if s.tpot_ms.is_none() {
                s.tpot_ms = s.wall_ms;
            }
            edit(s, v);
            let e = bad.validate(&path).map_err(|e| e.to_string());
            assert!(
                matches!(&e, Err(t) if t.contains(&format!("configs[0].summary.{field}"))),
                "{field} = {v:e}: {e:?}"
            );
        }
    }
    // The figures a bench writes stay within those bounds.
    let good = results("good", "i", &[Config("A", "nav", 40.0, 0, NAV_IMAGE)]);
    assert!(good.validate(&path).is_ok());
}

/// A server's answer, names and settings from an imported file reach report.md as text, never
/// as Markdown, HTML or terminal escapes; a failed describe request is a warning in every
/// rendering; the header names the date, deployment, model and server settings.
#[test]
fn reports_escape_what_comes_from_outside_and_say_what_was_measured() {
    let mut r = results("x", "i", &[Config("A", "nav", 40.0, 0, NAV_IMAGE)]);
    r.started_unix = 1_796_643_378;
    let t = &mut r.targets[0];
    t.name = "T\u{1b}]0;HIJACKED-TITLE\u{7}\u{1b}[2J\u{1b}[31mRED".into();
    t.deployment = Some("dep\u{1b}[5mBLINK\u{1b}[0m | *x*".into());
    t.describe_answer = Some("</script><script>alert(1)</script>\n# big [link](http://x)".into());
    t.server_info["build_info"] = "b1<img src=x onerror=alert(1)>".into();
    let md = report::markdown(&r);
    assert!(!md.contains('\u{1b}') && !md.contains('\u{7}'), "{md}");
    // Every `<` that would open a tag is escaped.
    let opens_tag = md.match_indices('<').any(|(i, _)| {
        md[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
            && !md[..i].ends_with('\\')
    });
    assert!(!opens_tag, "{md}");
    assert!(md.contains("`describe` answer: \\</script>\\<script>alert(1)\\</script> \\# big \\[link\\](http://x)"), "{md}");
    assert!(
        md.starts_with(
            "# vlmctl bench: dep\\\\u{1b}\\[5mBLINK\\\\u{1b}\\[0m \\| \\*x\\*, 2026-12-07 "
        ),
        "{md}"
    );
    assert!(md.contains("model **gemma-3-270m-it-Q8_0.gguf**"), "{md}");
    assert!(md.contains("context **4096**, slots **1**"), "{md}");
    let table = report::table(&r);
    assert!(!table.contains('\u{1b}'), "{table}");
    let html = report::html(&r, None);
    assert!(
        !html.contains('\u{1b}') && !html.contains("<img") && !html.contains("<script>alert"),
        "{html}"
    );
    assert!(html.contains("context <strong>4096</strong>"), "{html}");
    assert!(html.contains("2026-12-07 "), "{html}");

    // The describe request failed: said in every rendering, and kept in results.json.
    r.targets[0].describe_answer = None;
    r.targets[0].describe_error = Some("timeout: operation timed out".into());
    let warning = "the describe request failed (timeout: operation timed out)";
    assert!(report::markdown(&r).contains(warning));
    assert!(report::html(&r, None).contains(warning));
    assert!(report::table(&r).contains(warning));
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"describe_error\":\"timeout: operation timed out\""));
    // A file from before `describe_error` still loads.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["targets"][0]
        .as_object_mut()
        .unwrap()
        .remove("describe_error");
    let old: Results = serde_json::from_value(v).unwrap();
    assert_eq!(old.targets[0].describe_error, None);
}

/// The report a person opens, written to the temp folder for a look in a browser
/// (`vlmctl-report-test.html`: six configs, one 6.8 s outlier, a baseline, a date and the
/// server's settings), and the properties the new-user review asked of it: the CDF on a log
/// axis that says so, the header with date, deployment, model and context.
#[test]
fn a_report_with_an_outlier_reads_well() {
    let mut r = results(
        "llamacpp",
        "a",
        &[
            Config("A", "full nav prompt + image", 960.0, 0, NAV_IMAGE),
            Config("B", "full prompt repeat (cache warm)", 700.0, 0, NAV_IMAGE),
            Config(
                "C",
                "full nav prompt + image, streamed",
                980.0,
                0,
                NAV_IMAGE,
            ),
            Config("D", "short nav prompt + image", 600.0, 1, SHORT_IMAGE),
            Config("E", "short prompt, streamed", 620.0, 0, SHORT_IMAGE),
            Config("T", "text-only nav (no image)", 300.0, 0, NAV_TEXT),
        ],
    );
    r.started_unix = 1_796_643_378;
    r.targets[0].deployment = Some("panda-llamacpp".into());
    // One outlier of 6.8 s in D.
    let d = &mut r.targets[0].configs[3];
    d.samples[0].wall_ms = 6800.0;
    d.summary = run::summarize(&d.samples, true, None);
    let base = scaled(&r, 1.1);
    let html = report::html(&r, Some(&base));
    std::fs::write(std::env::temp_dir().join("vlmctl-report-test.html"), &html).unwrap();
    assert!(
        html.contains("latency (ms, log scale)"),
        "the outlier gets a log axis"
    );
    assert!(html.contains("<title>vlmctl bench: panda-llamacpp, 2026-12-07 11:36 UTC</title>"));
    assert!(html.contains("model <strong>gemma-3-270m-it-Q8_0.gguf</strong>"));
    assert!(html.contains("context <strong>4096</strong>"));
}

/// A results.json written before means were computed without overflow holds `"mean": null`
/// where the server's TPOT overflowed: it loads, its summaries recomputed from its samples.
#[test]
fn a_file_with_null_means_from_an_earlier_vlmctl_loads() {
    let mut r = results("old", "i", &[Config("A", "nav", 40.0, 0, NAV_IMAGE)]);
    for s in &mut r.targets[0].configs[0].samples {
        s.server.predicted_ms = Some(1.7e308);
        s.server.predicted_n = Some(3);
    }
    let mut v = serde_json::to_value(&r).unwrap();
    v["targets"][0]["configs"][0]["summary"]["tpot_ms"] = serde_json::json!({"n": 20,
        "min": 5.7e307, "p50": 5.7e307, "p95": 5.7e307, "p99": 5.7e307, "max": 5.7e307,
        "mean": null, "stddev": null});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let back = vlmctl_bench::load_results(&path).unwrap();
    let s = &back.targets[0].configs[0].summary;
    assert_eq!(s.tpot_ms, None, "recomputed: the huge timings are left out");
    assert_eq!(s.wall_ms, r.targets[0].configs[0].summary.wall_ms);
}
