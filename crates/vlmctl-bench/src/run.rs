//! Running a plan: per target, per config, warm-up then measured runs, closed or open loop.
//! In open loop each request's latency counts from its *scheduled* send time, so queueing
//! behind a slow server shows up instead of being hidden (no coordinated omission).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{self, Answer, ServerTimings};
use crate::plan::{Backend, ConfigDef, LoadedPlan, Target};

/// The results types, where they were before they moved to [`crate::results`] (callers import
/// them from here).
pub use crate::results::{
    ConfigResult, ConfigSummary, Environment, FORMAT, Results, Sample, TargetResult,
};
/// The summaries, where they were before they moved to [`crate::summary`].
pub use crate::summary::{summarize, summarize_for, timings_problem};

/// Progress callback: (target, config, done, total).
pub type RequestProgress<'a> = &'a (dyn Fn(&str, &str, usize, usize) + Send + Sync);

/// What a run reports as it goes ([`run_with`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// The `describe` request to `target` was sent; it may take up to `timeout`.
    DescribeStarted {
        /// The target's name in the plan.
        target: &'a str,
        /// The plan's per-request timeout.
        timeout: Duration,
    },
    /// The `describe` request to `target` ended after `elapsed`; `error` says why it failed
    /// (what [`TargetResult::describe_error`] records), `None` when it answered.
    DescribeDone {
        /// The target's name in the plan.
        target: &'a str,
        /// How long it took.
        elapsed: Duration,
        /// Why it failed.
        error: Option<&'a str>,
    },
    /// `done` of `total` requests (warm-up included) of `config` on `target`.
    Requests {
        /// The target's name in the plan.
        target: &'a str,
        /// The config's letter.
        config: &'a str,
        /// Requests done.
        done: usize,
        /// Requests in all.
        total: usize,
    },
}

/// Event callback of [`run_with`].
pub type Events<'a> = &'a (dyn Fn(Event<'_>) + Send + Sync);

/// Runs the whole plan, reporting request progress only ([`run_with`] reports every step).
pub async fn run(
    plan: &LoadedPlan,
    api_keys: &BTreeMap<String, String>,
    progress: RequestProgress<'_>,
) -> Results {
    let events = |e: Event<'_>| {
        if let Event::Requests {
            target,
            config,
            done,
            total,
        } = e
        {
            progress(target, config, done, total);
        }
    };
    run_with(plan, api_keys, &events).await
}

/// Runs the whole plan, reporting each step through `events`: the `describe` request (which
/// may take up to the plan's timeout) and each config's requests.
pub async fn run_with(
    plan: &LoadedPlan,
    api_keys: &BTreeMap<String, String>,
    events: Events<'_>,
) -> Results {
    let progress = |target: &str, config: &str, done: usize, total: usize| {
        events(Event::Requests {
            target,
            config,
            done,
            total,
        });
    };
    let progress: RequestProgress<'_> = &progress;
    let clients = Clients::new();
    let http = &clients.pooled;
    let image_b64 = plan.image.as_deref().map(crate::base64);
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut targets = Vec::new();
    for t in &plan.plan.targets {
        let key = api_keys.get(&t.name).map(String::as_str);
        let (server_info, models) = server_info(http, t, key).await;
        let (describe_answer, describe_error) = if plan.plan.describe {
            describe(http, plan, t, key, image_b64.as_deref(), events).await
        } else {
            (None, None)
        };
        let mut configs = Vec::new();
        for c in &plan.configs {
            let http = if c.stream {
                &clients.fresh
            } else {
                &clients.pooled
            };
            configs.push(run_config(http, plan, t, key, c, image_b64.as_deref(), progress).await);
        }
        targets.push(TargetResult {
            name: t.name.clone(),
            backend: t.backend,
            url: t.url.clone(),
            host: t.host.clone(),
            deployment: t.deployment.clone(),
            server_info,
            models,
            describe_answer,
            describe_error,
            configs,
        });
    }
    Results {
        format: FORMAT.to_owned(),
        started_unix,
        plan: plan.plan.clone(),
        plan_sha256: plan.plan_sha256.clone(),
        prompt_sha256: plan.prompt_sha256.clone(),
        image_sha256: plan.image_sha256.clone(),
        environment: environment(),
        targets,
        sweep: Vec::new(),
    }
}

/// The `describe` request to `t`, as a step of its own (it may take the plan's whole timeout):
/// its answer, or why it failed.
async fn describe(
    http: &reqwest::Client,
    plan: &LoadedPlan,
    t: &Target,
    key: Option<&str>,
    image_b64: Option<&str>,
    events: Events<'_>,
) -> (Option<String>, Option<String>) {
    let body = client::request_body(
        t,
        &plan.prompts["describe"],
        image_b64,
        false,
        plan.plan.max_tokens.max(128),
    );
    events(Event::DescribeStarted {
        target: &t.name,
        timeout: plan.plan.timeout(),
    });
    let start = Instant::now();
    let answer = client::send(http, t, key, &body, plan.plan.timeout(), start).await;
    let error = answer.as_ref().err().map(|(kind, detail)| {
        let kind = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("{kind}: {detail}")
    });
    events(Event::DescribeDone {
        target: &t.name,
        elapsed: start.elapsed(),
        error: error.as_deref(),
    });
    (answer.ok().map(|a| a.content), error)
}

/// Non-streamed requests reuse one kept-alive connection (what a production client does).
/// Streamed requests get a fresh connection each: llama-server closes the connection after an
/// SSE stream, and reusing it would fail the next request at once for a reason that is the
/// client's, not the server's.
struct Clients {
    pooled: reqwest::Client,
    fresh: reqwest::Client,
}

impl Clients {
    fn new() -> Self {
        Self {
            pooled: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
            fresh: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_default(),
        }
    }
}

async fn run_config(
    http: &reqwest::Client,
    plan: &LoadedPlan,
    t: &Target,
    key: Option<&str>,
    c: &ConfigDef,
    image_b64: Option<&str>,
    progress: RequestProgress<'_>,
) -> ConfigResult {
    let prompt = if c.short {
        &plan.prompts["nav_short"]
    } else {
        &plan.prompts["nav"]
    };
    let body = client::request_body(
        t,
        prompt,
        image_b64.filter(|_| c.image),
        c.stream,
        plan.plan.max_tokens,
    );
    let total = plan.plan.warmup.saturating_add(plan.plan.runs);
    // Closed loop, not streamed: one kept-alive connection (see `client::Conn`).
    let mut conn = if c.stream {
        None
    } else {
        client::Conn::for_url(&t.url)
    };
    let mut warmup = Vec::new();
    for i in 0..plan.plan.warmup {
        warmup.push(one(http, conn.as_mut(), plan, t, key, &body, i, Instant::now()).await);
        progress(&t.name, c.name, i + 1, total);
    }
    let samples = match plan.plan.load.schedule(plan.plan.runs) {
        None => {
            let mut v = Vec::new();
            for i in 0..plan.plan.runs {
                v.push(one(http, conn.as_mut(), plan, t, key, &body, i, Instant::now()).await);
                progress(
                    &t.name,
                    c.name,
                    plan.plan.warmup.saturating_add(i + 1),
                    total,
                );
            }
            v
        }
        Some(schedule) => {
            let t0 = tokio::time::Instant::now();
            let futs = schedule.into_iter().enumerate().map(|(i, offset)| {
                let scheduled = t0.checked_add(offset).unwrap_or(t0);
                let body = &body;
                async move {
                    tokio::time::sleep_until(scheduled).await;
                    let late = scheduled.elapsed();
                    let mut s = one(http, None, plan, t, key, body, i, scheduled.into_std()).await;
                    s.scheduled_ms = Some(offset.as_secs_f64() * 1000.0);
                    s.queue_ms = Some(late.as_secs_f64() * 1000.0);
                    s
                }
            });
            let v = futures::future::join_all(futs).await;
            progress(&t.name, c.name, total, total);
            v
        }
    };
    let summary = summarize_for(&plan.plan, &samples, c.stream);
    let description = if image_b64.is_none() && c.image {
        c.description.replace(" + image", " (text-only run)")
    } else {
        c.description.to_owned()
    };
    ConfigResult {
        name: c.name.to_owned(),
        description,
        summary,
        warmup,
        samples,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one request's whole context, passed through"
)]
pub(crate) async fn one(
    http: &reqwest::Client,
    conn: Option<&mut client::Conn>,
    plan: &LoadedPlan,
    t: &Target,
    key: Option<&str>,
    body: &Value,
    index: usize,
    start: Instant,
) -> Sample {
    let result = match conn {
        Some(c) => client::send_on(c, t, key, body, plan.plan.timeout()).await,
        None => client::send(http, t, key, body, plan.plan.timeout(), start).await,
    };
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut sample = match result {
        Ok(Answer {
            content,
            ttft_ms,
            server,
            completion_tokens,
            itl_ms,
            ..
        }) => Sample {
            index,
            wall_ms,
            ttft_ms,
            error: None,
            error_detail: None,
            strategy: Some(plan.plan.schema.check(&content)),
            server,
            completion_tokens,
            scheduled_ms: None,
            queue_ms: None,
            itl_ms,
            timings_unusable: None,
        },
        Err((kind, detail)) => Sample {
            index,
            wall_ms,
            ttft_ms: None,
            error: Some(kind),
            error_detail: Some(detail),
            strategy: None,
            server: ServerTimings::default(),
            completion_tokens: None,
            scheduled_ms: None,
            queue_ms: None,
            itl_ms: Vec::new(),
            timings_unusable: None,
        },
    };
    sample.timings_unusable = timings_problem(&sample);
    sample
}

async fn server_info(http: &reqwest::Client, t: &Target, key: Option<&str>) -> (Value, Value) {
    let get = |path: &str| {
        let mut r = http
            .get(format!("{}{path}", t.url.trim_end_matches('/')))
            .timeout(Duration::from_secs(10));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r
    };
    let json = |r: reqwest::RequestBuilder| async move {
        match r.send().await {
            Ok(resp) if resp.status().is_success() => {
                resp.json::<Value>().await.unwrap_or(Value::Null)
            }
            _ => Value::Null,
        }
    };
    match t.backend {
        Backend::Openai => (json(get("/props")).await, json(get("/v1/models")).await),
        Backend::Ollama => {
            let show = http
                .post(format!("{}/api/show", t.url.trim_end_matches('/')))
                .json(&serde_json::json!({"model": t.model}))
                .timeout(Duration::from_secs(10));
            (json(show).await, json(get("/api/tags")).await)
        }
    }
}

pub(crate) fn environment() -> Environment {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines().find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
    });
    let gpu = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total,memory.used",
            "--format=csv,noheader",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    Environment {
        arch: std::env::consts::ARCH.to_owned(),
        cpu,
        gpu,
        vlmctl: env!("CARGO_PKG_VERSION").to_owned(),
    }
}
