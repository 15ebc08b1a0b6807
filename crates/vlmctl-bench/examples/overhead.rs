//! Per-request overhead of the bench client against a loopback server that answers instantly,
//! beside the peers the runbooks used: `curl` reusing one connection and a Python `requests`
//! session. Prints p50 per request and ratios. Run by `scripts/bench-overhead`.
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark prints its results"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use serde_json::json;
use vlmctl_bench::client;
use vlmctl_bench::plan::{Backend, Target};

const N: usize = 2000;

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    vlmctl_bench::stats::percentile(&v, 50.0).unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "current_thread")]
#[expect(
    clippy::too_many_lines,
    reason = "a benchmark script reads best top to bottom"
)]
async fn main() {
    let answer = json!({"choices": [{"message": {"role": "assistant", "content": "{\"action\": \"forward\", \"reason\": \"x\"}"}}], "usage": {"completion_tokens": 4}});
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let a = answer.clone();
            async move { axum::Json(a) }
        }),
    );
    // The server runs on its own thread so the client's timing is not mixed with it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            axum::serve(l, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("server address");
    let url = format!("http://{addr}");
    let target = Target {
        name: "instant".into(),
        url: url.clone(),
        host: None,
        deployment: None,
        backend: Backend::Openai,
        model: None,
        api_key_env: None,
        keep_alive: None,
    };
    let body = client::request_body(&target, "nav prompt", None, false, 8);
    // What `bench` uses for closed-loop, non-streamed requests: one kept-alive connection.
    let mut conn = client::Conn::for_url(&url).expect("http url");
    let mut ours = Vec::with_capacity(N);
    let ours_total = Instant::now();
    for i in 0..N + 100 {
        let t = Instant::now();
        client::send_on(&mut conn, &target, None, &body, Duration::from_secs(5))
            .await
            .expect("request");
        if i >= 100 {
            ours.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let ours_mean = ours_total.elapsed().as_secs_f64() * 1e6 / (N + 100) as f64;
    let ours = p50(ours);
    // The reqwest pool `bench` uses for streams and open loop, for reference.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let mut pooled = Vec::with_capacity(N);
    for i in 0..N + 100 {
        let t = Instant::now();
        client::send(&http, &target, None, &body, Duration::from_secs(5), t)
            .await
            .expect("request");
        if i >= 100 {
            pooled.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let pooled = p50(pooled);
    println!("(reqwest pool, used for streams and open loop: {pooled:.1} us)");

    let body_s = body.to_string();
    let endpoint = format!("{url}/v1/chat/completions");
    let curl = tokio::task::spawn_blocking(move || {
        // `--next` resets per-transfer options, so each transfer repeats them; curl keeps the
        // one connection across transfers of one invocation.
        let mut args: Vec<String> = Vec::new();
        for _ in 0..N + 100 {
            args.extend(
                [
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{time_total}\\n",
                    "-H",
                    "content-type: application/json",
                    "-d",
                ]
                .map(str::to_owned),
            );
            args.extend([body_s.clone(), endpoint.clone(), "--next".into()]);
        }
        args.pop();
        let started = Instant::now();
        let out = std::process::Command::new("curl")
            .args(&args)
            .output()
            .ok()?;
        // Wall clock of the whole invocation per request: includes what curl does between
        // transfers, which its own time_total leaves out.
        let wall_mean = started.elapsed().as_secs_f64() * 1e6 / (N + 100) as f64;
        if !out.status.success() {
            eprintln!("curl failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(100)
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .map(|s| s * 1e6)
            .collect();
        (!v.is_empty()).then(|| (p50(v), wall_mean))
    })
    .await
    .ok()
    .flatten();

    let python = std::env::var("VLMCTL_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "import json, requests, time\ns = requests.Session()\nb = json.loads({body:?})\nts = []\nfor i in range({n}):\n    t = time.perf_counter(); r = s.post('{url}/v1/chat/completions', json=b); r.json(); ts.append((time.perf_counter() - t) * 1e6)\nts = sorted(ts[100:]); print(ts[(len(ts) + 1) // 2 - 1])\n",
        body = body.to_string(),
        n = N + 100,
        url = url
    );
    let py = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .ok()
        .filter(|o| {
            if !o.status.success() {
                eprintln!("python failed: {}", String::from_utf8_lossy(&o.stderr));
            }
            o.status.success()
        })
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        });

    let mut rows = BTreeMap::new();
    rows.insert("1 vlmctl bench client", Some(ours));
    rows.insert("2 curl, one connection", curl.map(|c| c.0));
    rows.insert("3 python requests.Session", py);
    println!("per-request p50 against an instant loopback server ({N} requests each):");
    if let Some((_, wall)) = curl {
        println!(
            "  (wall clock per request, whole run: vlmctl {ours_mean:.1} us, curl {wall:.1} us; ratio {:.2}x)",
            wall / ours_mean
        );
    }
    for (k, v) in &rows {
        match v {
            Some(us) => println!(
                "  {:<28} {us:>8.1} us   ratio to vlmctl {:.2}x",
                &k[2..],
                us / ours
            ),
            None => println!("  {:<28} (not available)", &k[2..]),
        }
    }
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("target p50 < 100 us: {}", verdict(ours < 100.0));
    for (k, v) in rows.iter().skip(1) {
        if let Some(us) = v {
            println!(
                "target below {}: {} ({:.1} vs {us:.1} us)",
                &k[2..],
                verdict(ours < *us),
                ours
            );
        }
    }
}
