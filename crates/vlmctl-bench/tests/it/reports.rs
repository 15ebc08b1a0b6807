//! Snapshots of the human-facing renderings on fixed samples.

use std::collections::BTreeMap;

use vlmctl_bench::client::ServerTimings;
use vlmctl_bench::compare::{self, Verdict};
use vlmctl_bench::plan::{Backend, Plan};
use vlmctl_bench::report;
use vlmctl_bench::run::{self, ConfigResult, Environment, Results, Sample, TargetResult};
use vlmctl_bench::schema::Strategy;

/// Sample `i` of 20; the last `misses` of them are keyword answers (schema misses).
fn sample(i: usize, wall: f64, misses: usize) -> Sample {
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
            prompt_n: Some(1),
            prompt_ms: Some(1.0),
            predicted_n: Some(4),
            predicted_ms: Some(4.0),
            cache_n: Some(550),
            load_ms: None,
        },
        completion_tokens: Some(4),
    }
}

const RUNS: usize = 20;

/// One config: its letter, the p50 its samples have (nearest rank over `p50 - 3 + i % 7`),
/// and how many of its 20 answers miss the schema.
struct Config(&'static str, &'static str, f64, usize);

fn results(name: &str, image: &str, configs: &[Config]) -> Results {
    let plan: Plan = toml::from_str("version = 1\nimage = \"camera.png\"\n[[target]]\nname = \"llamacpp\"\nurl = \"http://127.0.0.1:11435\"\n").unwrap();
    let configs = configs
        .iter()
        .map(|&Config(letter, description, p50, misses)| {
            let samples: Vec<Sample> = (0..RUNS)
                .map(|i| sample(i, p50 - 3.0 + (i % 7) as f64, misses))
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
            server_info: serde_json::Value::Null,
            models: serde_json::Value::Null,
            describe_answer: Some("A light green floor.".into()),
            configs,
        }],
    }
}

#[test]
fn table_markdown_and_compare() {
    let panda = results(
        "llamacpp",
        "a",
        &[
            Config("A", "full nav prompt + image", 21.0, 0),
            Config("B", "full prompt repeat (cache warm)", 40.0, 0),
            Config("D", "short nav prompt + image", 40.0, 1),
            Config("T", "text-only nav (no image)", 21.0, 0),
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
            Config("A", "full nav prompt + image", 21.5, 0),
            Config("B", "full prompt repeat (cache warm)", 47.96, 1),
            Config("D", "short nav prompt + image", 48.04, 0),
            Config("T", "text-only nav (no image)", 21.5, 2),
        ],
    );
    let comparison = compare::compare(&panda, &beast);
    let verdicts: Vec<(&str, Verdict)> = comparison
        .rows
        .iter()
        .map(|r| (r.config.as_str(), r.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("A", Verdict::WithinNoise),
            ("B", Verdict::WithinNoise),
            ("D", Verdict::Investigate),
            ("T", Verdict::Investigate)
        ]
    );
    insta::assert_snapshot!("compare", compare::render(&comparison));
    let html = report::html(&beast, Some(&panda));
    assert!(
        html.contains("<svg") && html.contains("stroke-dasharray") && html.contains("polyline")
    );
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
    std::fs::write(std::env::temp_dir().join("vlmctl-report-test.html"), &html).unwrap();
}
