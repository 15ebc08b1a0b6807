//! The pages, rendered on the server (`maud`): no scripts or styles from elsewhere, and a few
//! lines of inline script only for what a page cannot do without one (start an action, follow
//! its progress over server-sent events).
//!
//! - `/`: deployments (state, health, drift, endpoint, actions), open restore journals, what
//!   the queue is doing, the latest runs.
//! - `/runs`: runs filtered by deployment, host, config; pick two to compare.
//! - `/runs/{id}`: one run: its figures per config, its progress while it runs, its full
//!   report (`/runs/{id}/report.html`, the bench's own HTML report).
//! - `/compare?a=&b=`: two runs by the runbook rule.
//! - `/trends`: p50/p95 and schema pass per config over time, relaunches marked.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use vlmctl_bench::charts::{self, Marker, TrendPoint as ChartPoint, TrendSeries};
use vlmctl_store::{RunFilter, RunRow, State as RunState};

use crate::api::{Filter, Pair, query, run_id};
use crate::{ApiError, App};

/// The pages' routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/report.html", get(report))
        .route("/compare", get(compare))
        .route("/trends", get(trends))
        .with_state(app)
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:.0} %", v * 100.0))
}

const CSS: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:.6em 1.2em;display:flex;gap:1.4em;align-items:baseline}
header a{color:#dbe9f6;text-decoration:none}header a.on{color:#fff;font-weight:600;text-decoration:underline}
header b{font-size:1.15em;margin-right:1em}
main{padding:1em 1.4em;max-width:1200px}
table{border-collapse:collapse;margin:.6em 0 1.4em;background:#fff}
th,td{border:1px solid #d0d4d9;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17702b}.bad{color:#b00020}.warn{color:#9a6200}.muted{color:#666}
button{padding:.25em .7em;margin:.1em}form.inline{display:inline}
#activity{background:#111;color:#cfe;padding:.6em;min-height:3em;max-height:16em;overflow:auto;font-size:.9em}
.note{background:#fff7d6;border:1px solid #e6d48a;padding:.5em .8em}
svg{max-width:100%;height:auto;background:#fff}
";

/// Posts JSON to the API and reports the answer in `#activity`; follows `/api/events`.
const SCRIPT: &str = r"
function say(t){const a=document.getElementById('activity');if(!a)return;a.textContent+=t+'\n';a.scrollTop=a.scrollHeight;}
async function act(url,body){
  const r=await fetch(url,{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(body||{})});
  const j=await r.json().catch(()=>({}));
  if(!r.ok){say('error: '+(j.error||r.status)+(j.hint?'\nhint: '+j.hint:''));return null;}
  return j;
}
async function bench(dep,plan){
  const j=await act('/api/runs',{deployment:dep,plan:plan});
  if(j){location.href=j.page;}
}
async function job(dep,what){
  if(what==='teardown'&&!confirm('Tear down '+dep+'? Its container is removed.'))return;
  const j=await act('/api/deployments/'+encodeURIComponent(dep)+'/'+what);
  if(j)say(what+' '+dep+' queued ('+j.ahead+' ahead)');
}
// Buttons carry what they act on in data attributes (never spliced into script text).
document.addEventListener('click',(e)=>{
  const b=e.target.closest('button[data-action]');if(!b)return;
  const dep=b.dataset.deployment,what=b.dataset.action;
  if(what==='bench'){const sel=b.parentElement.querySelector('select.plan');bench(dep,sel?sel.value:null);}
  else job(dep,what);
});
function follow(run){
  const es=new EventSource('/api/events'+(run?'?run='+run:''));
  // The run's own state, polled as well: a run recorded by another process (a CLI bench)
  // sends no events here, and one may end between this page's rendering and the subscription.
  if(run)setInterval(()=>fetch('/api/runs/'+run).then(r=>r.json()).then(d=>{
    if(d.state!=='queued'&&d.state!=='running'){es.close();location.reload();}}),2000);
  es.onmessage=(m)=>{const a=JSON.parse(m.data);
    if(a.kind==='progress'){const p=document.getElementById('progress');
      if(p)p.textContent=a.target+' config '+a.config+': '+a.done+' / '+a.total;}
    else if(a.kind==='step'){const p=document.getElementById('progress');
      if(p)p.textContent=a.target+': '+a.message;say('run '+a.run+': '+a.target+': '+a.message);}
    else if(a.kind==='run'){say('run '+a.run+': '+a.state+(a.message?' ('+a.message+')':''));
      if(run&&a.state!=='running'){es.close();location.reload();}}
    else if(a.kind==='queued'){say(a.action+' '+a.deployment+' queued ('+a.ahead+' ahead)');}
    else if(a.kind==='job'){say(a.action+' '+a.deployment+': '+a.line);}
    else if(a.kind==='job_done'){say(a.action+' '+a.deployment+': '+a.state+': '+a.detail);setTimeout(()=>location.reload(),1500);}
  };
}
";

fn page(title: &str, on: &str, body: &Markup) -> Html<String> {
    let nav = [
        ("/", "Deployments"),
        ("/runs", "Runs"),
        ("/trends", "Trends"),
        ("/compare", "Compare"),
    ];
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · vlmctl" }
                    style { (PreEscaped(CSS)) }
                    script { (PreEscaped(SCRIPT)) }
                }
                body {
                    header {
                        b { "vlmctl" }
                        @for (href, name) in nav {
                            a href=(href) class=[(name == on).then_some("on")] { (name) }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

fn error_page(on: &str, e: &ApiError) -> Response {
    let body = html! {
        h1 { "Error " (e.status.as_u16()) }
        p.bad { (e.message) }
        @if let Some(h) = &e.hint { p { "hint: " (h) } }
    };
    (e.status, page("error", on, &body)).into_response()
}

fn state_class(s: RunState) -> &'static str {
    match s {
        RunState::Done => "ok",
        RunState::Failed | RunState::Interrupted => "bad",
        RunState::Queued | RunState::Running => "warn",
    }
}

fn runs_table(rows: &[RunRow]) -> Markup {
    html! {
        table #runs {
            tr { th { "run" } th { "started (UTC)" } th { "state" } th { "host" } th { "deployment" }
                 th { "plan" } th { "p50 per config (ms)" } }
            @for r in rows {
                tr data-run=(r.id) {
                    td { a href={ "/runs/" (r.id) } { (r.id) } }
                    td { (vlmctl_store::utc_minute(r.started_unix)) }
                    td class=(state_class(r.state)) { (r.state) }
                    td { (r.host) }
                    td { (r.deployments()) }
                    td { (r.plan) }
                    td {
                        @for p in &r.points {
                            span data-config=(p.config) { (p.config) " " (ms(p.p50_ms)) } " "
                        }
                    }
                }
            }
        }
    }
}

/// A deployment's action buttons on the dashboard. A tune's parked original
/// (`NAME-vlmctl-tune`) is the deployment itself, set aside while variants run under its name:
/// it is never offered an action, only said what it is.
fn actions(name: &str, state: &str, spec: bool, plans: &[String]) -> Markup {
    html! {
        @if let Some(of) = vlmctl_deploy::tune::parked_of(name) {
            span.muted.parked { "parked by a tune of " (of) ": put back when the tune ends ("
                code { "vlmctl restore" } " if it died)" }
        } @else {
            @if state == "running" && !plans.is_empty() {
                select.plan {
                    @for p in plans { option value=(p) { (p) } }
                }
                button.bench data-action="bench" data-deployment=(name) { "Run bench" }
            }
            @if spec {
                button data-action="relaunch" data-deployment=(name) { "Relaunch" }
            }
            button data-action="teardown" data-deployment=(name) { "Teardown" }
            " "
            a href={ "/trends?deployment=" (name) } { "trend" }
        }
    }
}

async fn dashboard(State(app): State<Arc<App>>) -> Response {
    let deployments = app.deployments().await;
    let recent = app
        .read(|s| {
            s.runs(&RunFilter {
                limit: Some(10),
                ..RunFilter::default()
            })
        })
        .await;
    let plans: Vec<String> = app
        .config()
        .plans
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let body = html! {
        h1 { "Deployments" }
        @match &deployments {
            Err(e) => { p.bad { (e.message) } @if let Some(h) = &e.hint { p { "hint: " (h) } } }
            Ok(d) if d.deployments.is_empty() => {
                p.note { "No deployment yet: vlmctl manages no container. Run "
                    code { "vlmctl provision --spec FILE" } "." }
            }
            Ok(d) => {
                table #deployments {
                    tr { th { "deployment" } th { "state" } th { "health" } th { "docker health" }
                         th { "drift" } th { "endpoint" } th { "actions" } }
                    @for x in &d.deployments {
                        @let name = &x.container.name;
                        tr data-deployment=(name) {
                            td { a href={ "/runs?deployment=" (name) } { (name) } }
                            td { (x.container.state) br; span.muted { (x.container.status) } }
                            td class=(if x.health == "ok" { "ok" } else { "warn" }) { (x.health) }
                            td { (x.container.docker_health.as_deref().unwrap_or("-")) }
                            td { (x.drift.to_string()) }
                            td { (x.url.as_deref().unwrap_or("-")) }
                            td { (actions(name, &x.container.state, x.spec, &plans)) }
                        }
                    }
                }
                @if !d.journals.is_empty() {
                    h2 { "Open restore journals" }
                    p.note { "A run stopped these containers and has not put them back yet; "
                        code { "vlmctl restore" } " does." }
                    ul { @for j in &d.journals { li { (serde_json::to_string(j).unwrap_or_default()) } } }
                }
                @if !d.tunes.is_empty() {
                    h2 { "Tunes" }
                    p.note { "A tune parks its deployment's container aside while it runs; one that "
                        "was interrupted left it there, and " code { "vlmctl restore" } " puts it back." }
                    ul { @for t in &d.tunes { li { (serde_json::to_string(t).unwrap_or_default()) ": " (t.hint()) } } }
                }
            }
        }
        h2 { "Activity" }
        pre #activity { "queue: " (app.queue.waiting()) " waiting\n" }
        script { (PreEscaped("addEventListener('load',()=>follow(null));")) }
        h2 { "Latest runs" }
        @match &recent {
            Ok(rows) if rows.is_empty() => { p.muted { "No run yet." } }
            Ok(rows) => { (runs_table(rows)) }
            Err(e) => { p.bad { (e.message) } }
        }
    };
    page("Deployments", "Deployments", &body).into_response()
}

async fn runs(
    State(app): State<Arc<App>>,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = match query(q) {
        Ok(f) => f,
        Err(e) => return error_page("Runs", &e),
    };
    let shown = f.clone();
    let filter: RunFilter = f.into();
    let rows = match app.read(move |s| s.runs(&filter)).await {
        Ok(r) => r,
        Err(e) => return error_page("Runs", &e),
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        h1 { "Runs" }
        form method="get" action="/runs" {
            label { "deployment " input name="deployment" value=(v(&shown.deployment)); } " "
            label { "host " input name="host" value=(v(&shown.host)); } " "
            label { "config " input name="config" size="4" value=(v(&shown.config)); } " "
            button type="submit" { "Filter" }
        }
        form method="get" action="/compare" {
            "Compare run " input name="a" size="4"; " with run " input name="b" size="4"; " "
            button type="submit" { "Compare" }
        }
        @if rows.is_empty() { p.muted { "No run matches." } } @else { (runs_table(&rows)) }
    };
    page("Runs", "Runs", &body).into_response()
}

async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match run_id(&id) {
        Ok(i) => i,
        Err(e) => return error_page("Runs", &e),
    };
    let (d, previous) = match app
        .read(move |s| {
            let d = s.run(id)?;
            // The run before it on the same deployment, to compare with.
            let dep = d.row.targets.iter().find_map(|t| t.deployment.clone());
            let prev = match dep {
                Some(dep) => s
                    .runs(&RunFilter {
                        deployment: Some(dep),
                        ..RunFilter::default()
                    })?
                    .into_iter()
                    .find(|r| r.id < id && r.state == RunState::Done)
                    .map(|r| r.id),
                None => None,
            };
            Ok((d, prev))
        })
        .await
    {
        Ok(x) => x,
        Err(e) => return error_page("Runs", &e),
    };
    let r = &d.row;
    let live = matches!(r.state, RunState::Queued | RunState::Running);
    let body = html! {
        h1 { "Run " (r.id) }
        table #run-header {
            tr { th { "state" } td #state class=(state_class(r.state)) { (r.state) } }
            tr { th { "started (UTC)" } td { (vlmctl_store::utc_minute(r.started_unix)) } }
            @if let Some(f) = r.finished_unix { tr { th { "ended (UTC)" } td { (vlmctl_store::utc_minute(f)) } } }
            tr { th { "host" } td { (r.host) } }
            tr { th { "plan" } td { (r.plan) } }
            tr { th { "recorded by" } td { (serde_json::to_value(r.source).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) } }
            @for t in &r.targets {
                tr { th { "target " (t.target) } td {
                    (t.url)
                    @if let Some(h) = t.host.as_ref().filter(|h| **h != r.host) { " on " (h) }
                    " → " (t.deployment.as_deref().unwrap_or("no managed deployment"))
                    @if let Some(s) = &t.spec_sha256 { " · spec " code { (s.get(..12).unwrap_or(s)) } }
                    @if let Some(l) = &t.lock_sha256 { " · lock " code { (l.get(..12).unwrap_or(l)) } }
                    @if let Some(m) = &t.model { " · model " (m) }
                } }
            }
            @if let Some(e) = &r.error { tr { th { "error" } td.bad { (e) } } }
        }
        @if live {
            p #progress.warn { (r.state) "…" }
            pre #activity {}
            script { (PreEscaped(format!("addEventListener('load',()=>follow({}));", r.id))) }
        }
        @if !r.points.is_empty() {
            h2 { "Figures" }
            table #figures {
                tr { th { "target" } th { "config" } th { "what it sends" } th { "ok" } th { "errors" }
                     th { "p50 ms" } th { "p95 ms" } th { "p99 ms" } th { "TTFT p50 ms" }
                     th { "server tok/s" } th { "schema pass" } }
                @for p in &r.points {
                    tr data-config=(p.config) data-p50=(p.p50_ms.map(|v| v.to_string()).unwrap_or_default()) {
                        td { (p.target) } td { (p.config) } td { (p.description) }
                        td.num { (p.ok) } td.num { (p.errors) }
                        td.num.p50 { (ms(p.p50_ms)) } td.num { (ms(p.p95_ms)) } td.num { (ms(p.p99_ms)) }
                        td.num { (ms(p.ttft_p50_ms)) } td.num { (ms(p.server_tokens_per_s)) }
                        td.num { (pct(p.schema_pass)) }
                    }
                }
            }
            p {
                a href={ "/runs/" (r.id) "/report.html" } { "Full report (charts, samples)" }
                @if let Some(p) = previous { " · " a href={ "/compare?a=" (p) "&b=" (r.id) } { "compare with run " (p) } }
                @if let Some(dep) = r.targets.iter().find_map(|t| t.deployment.as_deref()) {
                    " · " a href={ "/trends?deployment=" (dep) } { "trend of " (dep) }
                }
            }
        }
    };
    page(&format!("Run {}", r.id), "Runs", &body).into_response()
}

async fn report(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match run_id(&id) {
        Ok(i) => i,
        Err(e) => return error_page("Runs", &e),
    };
    // Charts of every sample: read under a turn, drawn off the thread that answers the
    // other pages.
    let drawn = app
        .heavy(
            move |s| s.run(id),
            move |d| match d.results {
                Some(r) => Ok(vlmctl_bench::report::html(&r, None)),
                None => Err(ApiError::conflict(format!(
                    "run {id} is {}: no report yet",
                    d.row.state
                ))),
            },
        )
        .await;
    match drawn {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => error_page("Runs", &e),
    }
}

async fn compare(
    State(app): State<Arc<App>>,
    query_result: Result<Query<Pair>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let pair = match query(query_result) {
        Ok(pair) => pair,
        Err(e) => return error_page("Compare", &e),
    };
    let form = |a: &str, b: &str| {
        html! {
            form method="get" action="/compare" {
                "Baseline run " input name="a" size="5" value=(a); " · new run " input name="b" size="5" value=(b); " "
                button type="submit" { "Compare" }
            }
        }
    };
    let (Some(a), Some(b)) = (
        pair.a.clone().filter(|s| !s.is_empty()),
        pair.b.clone().filter(|s| !s.is_empty()),
    ) else {
        let body = html! { h1 { "Compare two runs" } (form("", "")) };
        return page("Compare", "Compare", &body).into_response();
    };
    let ids = run_id(&a).and_then(|base| Ok((base, run_id(&b)?)));
    let compared = match ids {
        Ok((ia, ib)) => app.compare(ia, ib).await.map(|c| (ia, ib, c)),
        Err(e) => Err(e),
    };
    let (ia, ib, c) = match compared {
        Ok(x) => x,
        Err(e) => return error_page("Compare", &e),
    };
    let investigate = c
        .rows
        .iter()
        .any(|r| r.verdict == vlmctl_bench::compare::ComparisonVerdict::Investigate);
    let body = html! {
        h1 { "Run " (ia) " → run " (ib) }
        (form(&a, &b))
        p #verdict class=(if investigate { "bad" } else { "ok" }) {
            @if c.rows.is_empty() { "nothing to compare: the runs share no target and config" }
            @else if investigate { "investigate: a config moved by more than 20 % or missed the schema" }
            @else { "within noise" }
        }
        @for w in &c.warnings { p.note { "not apples to apples: " (w) } }
        table #comparison {
            tr { th { "target" } th { "config" } th { "base p50 ms" } th { "new p50 ms" } th { "change" }
                 th { "95 % interval" } th { "schema pass" } th { "band" } th { "verdict" } }
            @for r in &c.rows {
                tr data-config=(r.config) {
                    td { (r.target) } td { (r.config) }
                    td.num { (format!("{:.1}", r.base_p50)) } td.num { (format!("{:.1}", r.new_p50)) }
                    td.num { (format!("{:+.1} %", r.change_pct)) }
                    td.num { (format!("{:+.1} … {:+.1} %", r.change_ci_pct.0, r.change_ci_pct.1)) }
                    td.num { (pct(r.schema_pass)) } td { (r.band) }
                    td class=(if r.verdict == vlmctl_bench::compare::ComparisonVerdict::Investigate { "bad" } else { "ok" }) { (r.verdict_text()) }
                }
            }
        }
    };
    page("Compare", "Compare", &body).into_response()
}

async fn trends(
    State(app): State<Arc<App>>,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = match query(q) {
        Ok(f) => f,
        Err(e) => return error_page("Trends", &e),
    };
    let shown = f.clone();
    let t = match app.trends(f.into()).await {
        Ok(t) => t,
        Err(e) => return error_page("Trends", &e),
    };
    // The charts are drawn off the thread that answers the other pages.
    match app.cpu(move || trends_page(&t, &shown)).await {
        Ok(page) => page.into_response(),
        Err(e) => error_page("Trends", &e),
    }
}

/// Pure: the trends page of `t`, its form filled with `shown`.
fn trends_page(t: &crate::api::Trends, shown: &Filter) -> Html<String> {
    // One chart per config (its p50 and p95 per target), and one of the schema pass rates.
    // Keyed by the letter alone: a config whose description changed is still one line.
    let mut by_config: BTreeMap<String, Vec<&vlmctl_store::TrendPoint>> = BTreeMap::new();
    for p in &t.points {
        by_config.entry(p.point.config.clone()).or_default().push(p);
    }
    let markers: Vec<Marker> = t
        .jobs
        .iter()
        .map(|j| Marker {
            x: j.started_unix as f64,
            label: j.kind.as_str().to_owned(),
        })
        .collect();
    let fmt = |x: f64| {
        #[expect(clippy::cast_possible_truncation, reason = "seconds since the epoch")]
        let s = x.round() as i64;
        jiff::Timestamp::from_second(s)
            .map(|t| t.strftime("%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let chart_of = |points: &[&vlmctl_store::TrendPoint]| latency_chart(points, &markers, &fmt);
    let schema: Vec<TrendSeries> = by_config
        .iter()
        .enumerate()
        .filter_map(|(i, (config, points))| {
            let pts: Vec<ChartPoint> = points
                .iter()
                .filter_map(|p| {
                    Some(ChartPoint {
                        x: p.unix as f64,
                        y: p.point.schema_pass? * 100.0,
                        run: p.run_id,
                    })
                })
                .collect();
            (!pts.is_empty()).then(|| TrendSeries {
                label: format!("{config} schema pass"),
                points: pts,
                color: i,
                dashed: false,
            })
        })
        .collect();
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        h1 { "Trends" }
        form method="get" action="/trends" {
            label { "deployment " input name="deployment" value=(v(&shown.deployment)); } " "
            label { "host " input name="host" value=(v(&shown.host)); } " "
            label { "config " input name="config" size="4" value=(v(&shown.config)); } " "
            button type="submit" { "Show" }
        }
        @if t.points.is_empty() { p.muted { "No finished run matches." } }
        @for (config, points) in &by_config {
            section.trend data-config=(config) {
                h2 { "Config " (config) ": " (points.last().map_or("", |p| p.point.description.as_str())) }
                p.muted { (points.len()) " points; newest: run " (points.last().map_or(0, |p| p.run_id))
                    " at " (points.last().map(|p| vlmctl_store::utc_minute(p.unix)).unwrap_or_default()) }
                (PreEscaped(chart_of(points)))
            }
        }
        @if !schema.is_empty() {
            section.trend #schema {
                h2 { "Schema pass rate" }
                (PreEscaped(charts::trend(&schema, &markers, "schema pass (%)", &fmt)))
            }
        }
        @if !t.jobs.is_empty() {
            h2 { "Relaunches and provisions" }
            table #jobs {
                tr { th { "when (UTC)" } th { "job" } th { "deployment" } th { "spec" } th { "detail" } }
                @for j in &t.jobs {
                    tr { td { (vlmctl_store::utc_minute(j.started_unix)) } td { (j.kind.as_str()) }
                         td { (j.deployment.as_deref().unwrap_or("-")) }
                         td { code { (j.spec_sha256.as_deref().map_or("-", |s| s.get(..12).unwrap_or(s))) } }
                         td { (j.detail.as_deref().unwrap_or("")) } }
                }
            }
        }
    };
    page("Trends", "Trends", &body)
}

/// One config's latency chart: p50 (solid) and p95 (dashed) per target.
fn latency_chart(
    points: &[&vlmctl_store::TrendPoint],
    markers: &[Marker],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let mut targets: Vec<&str> = points.iter().map(|p| p.point.target.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut series = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let of = |get: &dyn Fn(&vlmctl_store::Point) -> Option<f64>| -> Vec<ChartPoint> {
            points
                .iter()
                .filter(|p| p.point.target == *target)
                .filter_map(|p| {
                    Some(ChartPoint {
                        x: p.unix as f64,
                        y: get(&p.point)?,
                        run: p.run_id,
                    })
                })
                .collect()
        };
        series.push(TrendSeries {
            label: format!("{target} p50"),
            points: of(&|p| p.p50_ms),
            color: i,
            dashed: false,
        });
        series.push(TrendSeries {
            label: format!("{target} p95"),
            points: of(&|p| p.p95_ms),
            color: i,
            dashed: true,
        });
    }
    charts::trend(&series, markers, "latency (ms)", fmt)
}

#[cfg(test)]
mod parked_tests {
    use super::actions;

    #[test]
    fn a_tunes_parked_original_gets_no_teardown_or_other_button() {
        let plans = vec!["examples/cpu-bench.toml".to_owned()];
        let parked = actions("web-vlmctl-tune", "exited", true, &plans).into_string();
        assert!(!parked.contains("<button"), "{parked}");
        assert!(parked.contains("parked by a tune of web"), "{parked}");
        let own = actions("web", "running", true, &plans).into_string();
        assert!(own.contains("data-action=\"teardown\""), "{own}");
        assert!(own.contains("data-action=\"relaunch\""), "{own}");
    }
}
