//! The HTML report as a browser sees it: headless Chromium (`VLMCTL_TEST_CHROMIUM`, from
//! `scripts/test`) loads the file and `--dump-dom` gives back the DOM it built. Checked from
//! that DOM, not from our own string: every chart is an `<svg>` whose axis titles and tick
//! labels are `<text>` elements, and the results are a real `<table>` with the terminal
//! table's headers, one row per config, values escaped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vlmctl_bench::report;
use vlmctl_bench::run::Results;
use vlmctl_bench::{charts, charts::Bar, charts::CdfSeries};
use vlmctl_test::Env;

use crate::reports::{Config, NAV_IMAGE, NAV_TEXT, SHORT_IMAGE, open_loop_with_slo, results};

/// The DOM Chromium builds from `html` (written to a file and loaded as `file://`).
fn rendered_dom(html: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("report.html");
    std::fs::write(&page, html).unwrap();
    let dom_path = tmp.path().join("dom.html");
    let mut child = Command::new(Env::require("VLMCTL_TEST_CHROMIUM"))
        .args(["--headless", "--disable-gpu", "--no-sandbox"])
        // Its own profile: parallel runs do not share (or lock) one.
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(&dom_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium exited with {status}");
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    assert!(dom.contains("</html>"), "no DOM came back: {dom:?}");
    dom
}

/// The part of `s` from `start` to the first `end` after it.
fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let from = s
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in the DOM"));
    let rest = &s[from..];
    &rest[..rest.find(end).map_or(rest.len(), |i| i + end.len())]
}

/// The text of each `<tag ...>text</tag>` in `s`, trimmed (`<th>`, not `<thead>`).
fn elements(s: &str, tag: &str) -> Vec<String> {
    s.split(&format!("<{tag}"))
        .skip(1)
        .filter(|t| t.starts_with(|c: char| c == '>' || c.is_whitespace()))
        .filter_map(|t| {
            let (_, rest) = t.split_once('>')?;
            Some(rest.split_once(&format!("</{tag}>"))?.0.trim().to_owned())
        })
        .collect()
}

/// The chart in `<figure id={id}>`: one `<svg>` with `titles` among its `<text>`s and at
/// least `ticks` numeric tick labels.
fn assert_chart(dom: &str, id: &str, titles: &[&str], ticks: usize) {
    let figure = between(dom, &format!("<figure id=\"{id}\">"), "</figure>");
    assert_eq!(figure.matches("<svg").count(), 1, "{id}: {figure}");
    let svg = between(figure, "<svg", "</svg>");
    let texts = elements(svg, "text");
    for t in titles {
        assert!(
            texts.iter().any(|x| x == t),
            "{id}: no axis text {t:?} in {texts:?}"
        );
    }
    let numbers = texts
        .iter()
        .filter(|t| t.trim_end_matches('%').parse::<f64>().is_ok())
        .count();
    assert!(numbers >= ticks, "{id}: {numbers} tick labels in {texts:?}");
    // Drawn, not just declared: the data is lines, rectangles or circles in the SVG.
    assert!(
        ["<polyline", "<rect", "<circle"]
            .iter()
            .any(|e| svg.contains(e)),
        "{id}"
    );
}

/// The results table: the terminal table's headers, one row per config with a cell per header.
fn assert_table(dom: &str, r: &Results) {
    assert!(!dom.contains("<pre"), "a <pre> in the report");
    let table = between(dom, "<table class=\"results\">", "</table>");
    let head: Vec<String> = report::table(r)
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(elements(table, "th"), head);
    let body = between(table, "<tbody>", "</tbody>");
    let rows = elements(body, "tr");
    let configs: usize = r.targets.iter().map(|t| t.configs.len()).sum();
    assert_eq!(rows.len(), configs, "{body}");
    for row in &rows {
        assert_eq!(elements(row, "td").len(), head.len(), "{row}");
    }
}

#[test]
fn report_html_renders_in_chromium_with_axes_and_real_tables() {
    // A target name that is markup, to see it arrive as text.
    let panda = results(
        "llama<b>cpp",
        "a",
        &[
            Config("A", "full nav prompt + image", 21.0, 0, NAV_IMAGE),
            Config("D", "short nav prompt + image", 40.0, 1, SHORT_IMAGE),
            Config("T", "text-only nav (no image)", 18.0, 0, NAV_TEXT),
        ],
    );
    let beast = results(
        "llama<b>cpp",
        "b",
        &[
            Config("A", "full nav prompt + image", 22.0, 0, NAV_IMAGE),
            Config("D", "short nav prompt + image", 48.0, 0, SHORT_IMAGE),
            Config("T", "text-only nav (no image)", 18.5, 2, NAV_TEXT),
        ],
    );
    let dom = rendered_dom(&report::html(&beast, Some(&panda)));
    assert_chart(
        &dom,
        "chart-cdf",
        &["latency (ms)", "requests at or below (%)", "p50", "p95"],
        8,
    );
    assert_chart(
        &dom,
        "chart-p50",
        &[
            "p50 latency (ms)",
            "27.8 ms (36 Hz)",
            "llama&lt;b&gt;cpp A full nav prompt + image",
            "baseline: the --baseline run",
            "40.0 ms",
        ],
        4,
    );
    assert_table(&dom, &beast);
    assert!(!dom.contains("<b>"), "markup in a name became an element");
    assert!(dom.contains("<td>llama&lt;b&gt;cpp</td>"));

    // Open loop with an SLO: its extra columns are in the HTML table too.
    let r = open_loop_with_slo();
    let dom = rendered_dom(&report::html(&r, None));
    assert_table(&dom, &r);
    assert_chart(&dom, "chart-cdf", &["latency (ms)"], 8);
    assert_chart(&dom, "chart-p50", &["p50 latency (ms)"], 4);
    for head in ["OFFERED Hz", "SLO", "GOODPUT", "ITL p50/p95"] {
        assert!(
            dom.contains(&format!("<th scope=\"col\">{head}</th>")),
            "{head}"
        );
    }
}

#[test]
fn the_sweep_and_tune_charts_render_in_chromium_with_axes() {
    let sorted = [18.0, 19.0, 21.0, 22.0, 30.0];
    let page = format!(
        "<!doctype html><html><meta charset=utf-8><title>charts</title>\
         <figure id=\"cdf\">{}</figure><figure id=\"bars\">{}</figure>\
         <figure id=\"rate\">{}</figure><figure id=\"memory\">{}</figure></html>",
        charts::latency_cdf(&[CdfSeries {
            name: "cpu A",
            sorted_ms: &sorted,
        }]),
        charts::p50_bars(
            &[Bar {
                label: "cpu A",
                p50_ms: Some(21.0),
                baseline_ms: None,
            }],
            None
        ),
        charts::latency_vs_rate(
            &[(10.0, 20.0), (20.0, 22.0), (30.0, 26.0)],
            &[(10.0, 24.0), (20.0, 28.0), (30.0, 45.0)],
            Some(30.0)
        ),
        charts::p50_vs_memory(
            &[
                ("fa on", 900.0, 20.0),
                ("fa off", 800.0, 25.0),
                ("parallel 4", 1400.0, 23.0)
            ],
            Some(0)
        ),
    );
    let dom = rendered_dom(&page);
    assert_chart(
        &dom,
        "cdf",
        &["latency (ms)", "cpu A (p50 21.0 ms, p95 30.0 ms)"],
        8,
    );
    assert_chart(&dom, "bars", &["p50 latency (ms)", "27.8 ms (36 Hz)"], 4);
    assert_chart(
        &dom,
        "rate",
        &[
            "offered rate (Hz)",
            "latency (ms)",
            "p95 latency",
            "SLO bound: 30 ms",
        ],
        8,
    );
    assert_chart(
        &dom,
        "memory",
        &[
            "server memory (MiB)",
            "p50 latency (ms)",
            "fa on",
            "chosen: fa on",
        ],
        8,
    );
}

#[test]
fn the_dom_reader_can_fail() {
    // The checks above are only as good as the reader: a chart without its axis titles, and a
    // table inside a <pre> (the report as it was), are caught.
    let no_axes = "<figure id=\"x\"><svg><rect></rect><text>1</text></svg></figure>";
    assert!(std::panic::catch_unwind(|| assert_chart(no_axes, "x", &["latency (ms)"], 1)).is_err());
    let r = open_loop_with_slo();
    let old = format!("<pre>{}</pre>", report::table(&r));
    assert!(std::panic::catch_unwind(|| assert_table(&old, &r)).is_err());
}
