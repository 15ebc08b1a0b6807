//! The rate sweep against fake servers whose capacity is known: one slot that holds each
//! request for a fixed time serves `1000 / service_ms` requests a second and no more.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use vlmctl_bench::fake_server::{DEFAULT_ANSWER, FakeServer, Options, Reply};
use vlmctl_bench::plan::{Arrivals, Load, LoadedPlan};
use vlmctl_bench::run::Results;
use vlmctl_bench::sweep::{self, SweepEvent, SweepVerdict};

/// A text-only plan (config T) against `url` with `extra` TOML (its `[slo]`, `[sweep]`, `[load]`).
fn plan(dir: &Path, url: &str, extra: &str) -> LoadedPlan {
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    for f in ["nav", "nav-short", "describe"] {
        std::fs::write(dir.join(format!("prompts/{f}.txt")), format!("{f} prompt")).unwrap();
    }
    std::fs::write(
        dir.join("plan.toml"),
        format!(
            "version = 1\nwarmup = 0\ntimeout_s = 60\ndescribe = false\nconfigs = [\"T\"]\n{extra}\n\
             [[target]]\nname = \"fake\"\nurl = \"{url}\"\n"
        ),
    )
    .unwrap();
    LoadedPlan::load(&dir.join("plan.toml")).unwrap()
}

/// One slot, `service_ms` a request: capacity `1000 / service_ms` Hz.
async fn one_slot(service_ms: u64) -> FakeServer {
    FakeServer::start_with(
        [],
        Options {
            then: Reply::Say(DEFAULT_ANSWER.to_owned()).after(Duration::from_millis(service_ms)),
            slots: Some(1),
            ..Options::default()
        },
    )
    .await
    .unwrap()
}

async fn sweep_of(p: &LoadedPlan) -> Results {
    let mut log = |_: SweepEvent<'_>| {};
    sweep::run(p, None, &BTreeMap::new(), &mut log).await
}

fn sustained(r: &Results) -> f64 {
    match r.sweep[0].verdict {
        SweepVerdict::Sustains { hz, precise, .. } => {
            assert!(precise, "{}", sweep::table(&r.sweep));
            hz
        }
        v => panic!("{v:?}\n{}", sweep::table(&r.sweep)),
    }
}

/// The fake server's real capacity on this host, Hz: 40 requests at once through its one
/// slot, completions per second between the first answer and the last. Nominally
/// `1000 / service_ms`; the timer and a loaded test host add a few milliseconds per request.
async fn measured_capacity(dir: &Path, url: &str) -> f64 {
    let p = plan(dir, url, "runs = 40\n[load]\nrate_hz = 10000");
    let r = vlmctl_bench::run::run(&p, &BTreeMap::new(), &|_, _, _, _| {}).await;
    r.targets[0].configs[0].summary.achieved_hz.unwrap()
}

#[tokio::test]
async fn constant_arrivals_find_the_capacity_of_one_slot() {
    // 1 slot x 20 ms: 50 Hz nominally, measured here as it is on this host. Below capacity
    // every request takes the service time; above it by a share d, request i waits about
    // 20 i d ms longer than the first, so with a 40 ms bound on the p95 of 60 requests a rate
    // 2 % above capacity already fails. The sweep answers the highest passing rate, within
    // 5 % below the lowest failing one.
    let server = one_slot(20).await;
    let tmp = tempfile::tempdir().unwrap();
    let capacity = measured_capacity(&tmp.path().join("burst"), &server.endpoint()).await;
    assert!((35.0..=51.0).contains(&capacity), "{capacity} Hz");
    let p = plan(
        tmp.path(),
        &server.endpoint(),
        "[slo]\np95_ms = 40\n[sweep]\nmin_hz = 20\nmax_hz = 200\nrequests_per_step = 60",
    );
    let r = sweep_of(&p).await;
    let hz = sustained(&r);
    // 5 % precision, and 5 % either way for a capacity measured on a busy host.
    assert!(
        (capacity / 1.05 / 1.05..=capacity * 1.05).contains(&hz),
        "{hz} Hz against a capacity of {capacity:.1} Hz\n{}",
        sweep::table(&r.sweep)
    );
    // The steps went 20, 40, 80 (geometric) and then bisected.
    let rates: Vec<f64> = r.sweep[0].steps.iter().map(|s| s.offered_hz).collect();
    assert_eq!(rates[..3], [20.0, 40.0, 80.0]);
    // results.json keeps the sweep and reads it back.
    let json = serde_json::to_string(&r).unwrap();
    let back: Results = serde_json::from_str(&json).unwrap();
    assert_eq!(back.sweep, r.sweep);
    assert!(vlmctl_bench::report::markdown(&r).contains("## Rate sweep: fake T"));
    // The HTML report draws latency against the offered rate (plotters), with its axes.
    let html = vlmctl_bench::report::html(&r, None);
    let chart = html
        .split("<figure id=chart-sweep-0>")
        .nth(1)
        .and_then(|s| s.split("</figure>").next())
        .unwrap_or_else(|| panic!("no sweep chart in:\n{html}"));
    assert!(
        chart.contains("<svg")
            && chart.contains("offered rate (Hz)")
            && chart.contains("latency (ms)"),
        "{chart}"
    );
}

/// p95 of the measured requests (nearest rank) of a single-server FIFO queue with a fixed
/// service time over `schedule` (Lindley's recursion): what the fake server gives a Poisson
/// step, minus the network.
fn queue_p95(schedule: &[Duration], warmup: usize, service_ms: f64) -> f64 {
    let mut free_at = 0.0f64;
    let mut walls: Vec<f64> = schedule
        .iter()
        .map(|at| {
            let at = at.as_secs_f64() * 1000.0;
            free_at = free_at.max(at) + service_ms;
            free_at - at
        })
        .skip(warmup)
        .collect();
    walls.sort_by(f64::total_cmp);
    vlmctl_bench::stats::percentile(&walls, 95.0).unwrap()
}

/// The highest rate (0.1 Hz steps) whose queue p95 is within `bound_ms`.
fn poisson_capacity(seed: u64, n: usize, warmup: usize, service_ms: f64, bound_ms: f64) -> f64 {
    let mut best = 0.0;
    for tenth in 10..2000 {
        let hz = f64::from(tenth) / 10.0;
        let load = Load {
            rate_hz: Some(hz),
            arrivals: Arrivals::Poisson,
            seed,
        };
        if queue_p95(&load.schedule(n).unwrap(), warmup, service_ms) > bound_ms {
            break;
        }
        best = hz;
    }
    best
}

#[tokio::test]
async fn poisson_arrivals_find_the_rate_queueing_theory_predicts() {
    // Poisson arrivals queue well below capacity (M/D/1), so the rate that keeps the p95 within
    // 100 ms is below 50 Hz; with the seeded schedule it is computable exactly for a given
    // service time. The fake server's is 20 ms plus timer slack (up to ~2 ms).
    const SEED: u64 = 7;
    let server = one_slot(20).await;
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(
        tmp.path(),
        &server.endpoint(),
        &format!(
            "[load]\narrivals = \"poisson\"\nrate_hz = 1\nseed = {SEED}\n[slo]\np95_ms = 100\n\
             [sweep]\nmin_hz = 20\nmax_hz = 200\nrequests_per_step = 60"
        ),
    );
    let r = sweep_of(&p).await;
    let hz = sustained(&r);
    let (n, warm) = r.sweep[0].spec.requests_at(hz);
    let fast = poisson_capacity(SEED, n, warm, 20.0, 100.0);
    let slow = poisson_capacity(SEED, n, warm, 22.0, 100.0);
    assert!(fast < 50.0, "queueing keeps Poisson below capacity: {fast}");
    assert!(
        (slow / 1.05 / 1.05..=fast * 1.02).contains(&hz),
        "{hz} Hz, predicted {slow}..{fast}\n{}",
        sweep::table(&r.sweep)
    );
}

#[tokio::test]
async fn a_step_that_fails_badly_stops_early() {
    // 1 slot x 200 ms (5 Hz) offered 50 Hz for 200 requests: served to the end, the step would
    // queue for 40 s. The p95 <= 100 ms bound fails for certain once 10 of its 180 measured
    // requests took over 300 ms (3x the bound), in flight or answered: about a second in.
    let server = one_slot(200).await;
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(
        tmp.path(),
        &server.endpoint(),
        "[slo]\np95_ms = 100\n[sweep]\nmin_hz = 50\nmax_hz = 100\nrequests_per_step = 200",
    );
    let started = Instant::now();
    let r = sweep_of(&p).await;
    let took = started.elapsed();
    let s = &r.sweep[0];
    assert_eq!(s.verdict, SweepVerdict::BelowRange { hz: 50.0 });
    assert_eq!(s.steps.len(), 1);
    assert!(s.steps[0].stopped_early && !s.steps[0].met);
    assert!(
        took < Duration::from_secs(4),
        "the early stop bounds the step: {took:?}"
    );
    // The overdue requests are in the step's samples, counted as failed: its percentiles do
    // not forget them.
    assert!(s.steps[0].samples.iter().any(|x| {
        x.error_detail
            .as_deref()
            .is_some_and(|d| d.contains("stopped the step early"))
    }));
    assert!(sweep::table(&r.sweep).contains("does not sustain 50.0 Hz"));
}
