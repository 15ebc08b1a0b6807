//! Snapshots of the human-facing renderings on fixed samples.

use std::collections::BTreeMap;

use vlmctl_bench::client::ServerTimings;
use vlmctl_bench::plan::{Backend, Plan};
use vlmctl_bench::run::{self, ConfigResult, Environment, Results, Sample, TargetResult};
use vlmctl_bench::schema::Strategy;
use vlmctl_bench::{compare, report};

fn sample(i: usize, wall: f64) -> Sample {
    Sample {
        index: i,
        wall_ms: wall,
        ttft_ms: None,
        error: None,
        error_detail: None,
        strategy: Some(if i % 10 == 9 {
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

fn results(name: &str, base_ms: f64, image: &str) -> Results {
    let plan: Plan = toml::from_str("version = 1\nimage = \"camera.png\"\n[[target]]\nname = \"llamacpp\"\nurl = \"http://127.0.0.1:11435\"\n").unwrap();
    let configs = ["A", "C"]
        .iter()
        .map(|c| {
            let samples: Vec<Sample> = (0..20)
                .map(|i| sample(i, base_ms + (i % 7) as f64))
                .collect();
            ConfigResult {
                name: (*c).into(),
                description: "full nav prompt + image".into(),
                summary: run::summarize(&samples, true, None),
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
    let panda = results("llamacpp", 18.0, "a");
    insta::assert_snapshot!("table", report::table(&panda));
    insta::assert_snapshot!("markdown", report::markdown(&panda));
    let beast = results("llamacpp", 24.0, "b");
    insta::assert_snapshot!(
        "compare",
        compare::render(&compare::compare(&panda, &beast))
    );
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
