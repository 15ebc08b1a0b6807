//! `vlmctl serve` in a real browser: headless Chromium driven through WebDriver (Debian's
//! chromedriver, `fantoccini`) opens the dashboard, clicks "Run bench" for the deployment, waits
//! for the run page to show the finished run, reads its p50, and finds that p50 as the newest
//! point of the trend chart. Screenshots of the pages are written to `$CARGO_TARGET_TMPDIR`
//! (and to `$VLMCTL_SCREENSHOTS` when set: docs/serve.md's come from there).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::{Env, free_port, poll_until, run, vlmctl};
use crate::deploy_real::readme_dir_args;
use crate::serve_real::{post, spawn_serve, wait_run};
use vlmctl_test::LabelGuard;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free loopback port, and a session with headless Chromium (the flags that
/// keep it off the network this machine does not have).
async fn browser() -> (Driver, Client) {
    let port = free_port();
    let driver = Driver(
        Command::new(Env::require("VLMCTL_TEST_CHROMEDRIVER"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver"),
    );
    poll_until("chromedriver to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let profile = tempfile::tempdir().expect("profile").keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": Env::require("VLMCTL_TEST_CHROMIUM"),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1100",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");
    (driver, client)
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR"))];
    dirs.extend(std::env::var_os("VLMCTL_SCREENSHOTS").map(PathBuf::from));
    for d in dirs {
        std::fs::create_dir_all(&d).expect("screenshot dir");
        std::fs::write(d.join(format!("{name}.png")), &png).expect("write screenshot");
    }
}

/// Waits for an element, reloading nothing: the page does (it follows the run's events).
async fn wait_for(c: &Client, css: &str, within: Duration) -> fantoccini::elements::Element {
    c.wait()
        .at_most(within)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} within {within:?}: {e}"))
}

/// The service flow of docs/serve.md as a user runs it (`vlmctl provision` of the CPU deployment, then
/// `vlmctl serve` with the page's flags, on a free port and a temporary state dir), then the
/// browser: the dashboard shows `vlmctl-cpu-test`, "Run bench" runs `examples/cpu-bench.toml`
/// (camera frame and all), and the run is on its page and the newest point of the trend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_service_flow_runs_the_cpu_bench_from_the_browser() {
    let name = "vlmctl-cpu-test";
    let (_guard, _state, serve) = readme_service(name);
    let base = serve.base.clone();
    // An earlier run, so that the trend has a point before the browser's.
    let (code, v) = post(
        &format!("{base}/api/runs"),
        &format!("{{\"deployment\":\"{name}\",\"runs\":1}}"),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let first = v["run"].as_i64().expect("id");
    wait_run(&base, first, Duration::from_secs(180), |s| s == "done").await;

    let (_driver, web) = browser().await;
    web.goto(&format!("{base}/")).await.expect("dashboard");
    let row = wait_for(
        &web,
        &format!("tr[data-deployment=\"{name}\"]"),
        Duration::from_secs(30),
    )
    .await;
    let text = row.text().await.expect("row text");
    assert!(text.contains("running") && text.contains("ok"), "{text}");
    shot(&web, "serve-dashboard").await;
    web.find(Locator::Css(&format!(
        "button.bench[data-deployment=\"{name}\"]"
    )))
    .await
    .expect("the Run bench button")
    .click()
    .await
    .expect("click");

    // The click queues a run and opens its page.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let url = web.current_url().await.expect("url");
        if let Some(id) = url
            .path()
            .strip_prefix("/runs/")
            .and_then(|i| i.parse::<i64>().ok())
        {
            break id;
        }
        assert!(Instant::now() < deadline, "still at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(id > first);
    // The page follows the run's events and reloads when it ends.
    let fig = wait_for(
        &web,
        "#figures tr[data-config=\"A\"]",
        Duration::from_secs(180),
    )
    .await;
    let state = web
        .find(Locator::Css("#state"))
        .await
        .expect("state")
        .text()
        .await
        .expect("text");
    assert_eq!(state, "done");
    let p50: f64 = fig
        .attr("data-p50")
        .await
        .expect("attr")
        .expect("data-p50")
        .parse()
        .expect("a number");
    let cell = fig
        .find(Locator::Css("td.p50"))
        .await
        .expect("p50 cell")
        .text()
        .await
        .expect("text");
    assert_eq!(cell, format!("{p50:.1}"), "the p50 a person reads");
    shot(&web, "serve-run").await;

    // The same p50 is the newest point of the trend's p50 line.
    web.goto(&format!("{base}/trends?deployment={name}"))
        .await
        .expect("trends");
    let (run, y) = newest_point(&web).await;
    assert_eq!(run, id, "the newest point is the run the browser started");
    assert!(
        (y - p50).abs() < 1e-9,
        "its value is the run page's p50: {y} vs {p50}"
    );
    shot(&web, "serve-trends").await;
    web.close().await.expect("close the session");
}

/// The trend's newest point of config A's p50 line: its run and value (the hit targets the
/// chart writes over its points).
async fn newest_point(web: &Client) -> (i64, f64) {
    let points = web
        .find_all(Locator::Css(
            "section.trend[data-config=\"A\"] circle.trend-point[data-series=\"cpu p50\"]",
        ))
        .await
        .expect("points");
    assert_eq!(points.len(), 2, "the API's run and the browser's");
    let mut newest: Option<(f64, i64, f64)> = None;
    for p in points {
        let num = |v: Option<String>| v.and_then(|s| s.parse::<f64>().ok()).expect("number");
        let x = num(p.attr("data-x").await.expect("x"));
        let run = num(p.attr("data-run").await.expect("run"));
        let y = num(p.attr("data-y").await.expect("y"));
        if newest.is_none_or(|n| x > n.0) {
            #[expect(clippy::cast_possible_truncation, reason = "a run id")]
            let run = run as i64;
            newest = Some((x, run, y));
        }
    }
    let (_, run, y) = newest.expect("a newest point");
    (run, y)
}

/// The service's page (docs/serve.md), run as a user runs it: its `vlmctl provision` line, then its
/// `vlmctl serve` line on a free port; both with a temporary state dir (returned with the
/// service and the guard that removes the container).
fn readme_service(name: &str) -> (LabelGuard, tempfile::TempDir, crate::serve_real::Serve) {
    let root = crate::common::repo_root();
    let readme = std::fs::read_to_string(root.join("docs/serve.md")).expect("docs/serve.md");
    let section = readme
        .split("## The benchmark service (vlmctl serve)")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("docs/serve.md's service flow");
    let lines: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("vlmctl "))
        .collect();
    assert_eq!(lines.len(), 2, "provision, then serve: {section}");
    let guard = LabelGuard::deployment(name);
    let state = tempfile::tempdir().expect("state");
    let extra = readme_dir_args();
    let command = |line: &str| {
        let mut c = vlmctl();
        c.args(line.split_whitespace().skip(1))
            .args(&extra)
            .current_dir(&root)
            .env("VLMCTL_STATE_DIR", state.path())
            .stdin(Stdio::null());
        c
    };
    let (code, out, err) = run(&mut command(lines[0]));
    assert_eq!(code, 0, "`{}`:\n{out}\n{err}", lines[0]);
    let port = free_port();
    let mut serve = command(lines[1]);
    serve.args(["--port", &port.to_string()]);
    let serve = spawn_serve(serve, port);
    (guard, state, serve)
}
