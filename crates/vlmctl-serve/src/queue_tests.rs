//! In-process tests of the queue against a temporary store and the fake server: what a bench
//! run and a job publish, and what they record.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::queue;
use crate::tests::test_app;

/// Defect 3 of the 2026-12-07 review: a plan with `[sweep]` ran as a sweep under
/// `vlmctl bench` and as plain closed-loop configs when the service ran it. The queue's run
/// of such a plan, against the fake server, is recorded with a sweep and no configs, and
/// its steps are said on the event stream.
#[test]
fn the_queue_runs_a_sweep_plan_as_a_sweep() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (app, _rx) = test_app(tmp.path());
    let app = Arc::new(app);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = vlmctl_bench::fake_server::FakeServer::start([])
            .await
            .expect("fake server");
        let dir = tmp.path().join("plan");
        std::fs::create_dir_all(dir.join("prompts")).expect("prompts");
        for f in ["nav", "nav-short", "describe"] {
            std::fs::write(dir.join(format!("prompts/{f}.txt")), f).expect("prompt");
        }
        std::fs::write(
            dir.join("plan.toml"),
            format!(
                "version = 1\nwarmup = 0\ndescribe = false\nconfigs = [\"T\"]\n\
                 [slo]\np95_ms = 5000\n\
                 [sweep]\nmin_hz = 20\nmax_hz = 40\nrequests_per_step = 10\nmax_steps = 2\n\
                 [[target]]\nname = \"fake\"\nurl = \"{}\"\n",
                server.endpoint()
            ),
        )
        .expect("plan");
        let plan = vlmctl_bench::plan::LoadedPlan::load(&dir.join("plan.toml")).expect("load");
        let new = vlmctl_store::NewRun {
            source: vlmctl_store::Source::Serve,
            host: "local".to_owned(),
            plan: "plan.toml".to_owned(),
            plan_json: serde_json::json!({}),
            targets: Vec::new(),
            state: vlmctl_store::State::Queued,
        };
        let run = app.db(move |s| s.begin_run(&new)).await.expect("queued");
        let mut heard = app.subscribe();
        queue::bench(&app, run, &plan, &std::collections::BTreeMap::new()).await;
        let detail = app.read(move |s| s.run(run)).await.expect("run");
        assert_eq!(
            detail.row.state,
            vlmctl_store::State::Done,
            "{:?}",
            detail.row
        );
        let results = detail.results.expect("results");
        assert_eq!(results.sweep.len(), 1, "one target swept");
        assert!(!results.sweep[0].steps.is_empty());
        assert!(
            results.targets.is_empty(),
            "no closed-loop configs were run"
        );
        let mut steps = Vec::new();
        loop {
            match heard.try_recv() {
                Ok(queue::Activity::Step { message, .. }) => steps.push(message),
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        assert!(
            steps.iter().any(|m| m.starts_with("sweep step 1: 20.0 Hz")),
            "{steps:?}"
        );
    });
}

/// One of each [`vlmctl_deploy::events::Event`]. The match below has no wildcard: a variant
/// added later does not compile until it is listed here, and then the test below checks
/// that the pages hear it.
#[expect(clippy::too_many_lines, reason = "one event of each kind: a list")]
fn every_event() -> Vec<vlmctl_deploy::events::Event> {
    use vlmctl_deploy::events::Event;
    use vlmctl_lifecycle::containers::{ConflictInfo, Launch, PullStep};
    use vlmctl_lifecycle::gates::{GateResult, GateStatus};
    let s = |v: &str| v.to_owned();
    let conflict = ConflictInfo {
        id: s("c0ffee"),
        name: s("other"),
        state: s("running"),
        status: s("Up 2 hours"),
        image: s("img"),
        command: s("llama-server"),
        restart_policy: s("no"),
        stop_timeout_s: 10,
        labels: std::collections::HashMap::new(),
        gpu_mib: Some(100),
        named_in_spec: true,
        logs: s("a\nb"),
    };
    let all = vec![
        Event::WaitingForLock {
            deployment: s("d"),
            holder: s("pid 1"),
        },
        Event::GatesStarted {
            deployment: s("d"),
            image: s("img"),
            port: 8080,
        },
        Event::Gates {
            results: vec![GateResult {
                name: s("port"),
                status: GateStatus::Fail,
                evidence: s("taken"),
                hint: None,
            }],
        },
        Event::Fetching { model: s("m") },
        Event::Fetched {
            file: s("f.gguf"),
            size: 1,
            outcome: vlmctl_weights::FetchOutcome::AlreadyPresent,
        },
        Event::Pulling {
            image: s("img"),
            step: PullStep {
                layer: None,
                status: s("Downloading"),
                bytes: Some((1, 2)),
            },
        },
        Event::Pulled {
            image: s("img"),
            pulled: true,
        },
        Event::PushedToHost {
            file: s("f.gguf"),
            bytes: 1,
            kept: 0,
            sent: 1,
        },
        Event::VerifiedOnHost {
            file: s("f.gguf"),
            stamped: true,
        },
        Event::StagingRemoved {
            folder: s(".vlmctl-push-x"),
            bytes: 1,
        },
        Event::StagingInUse {
            folder: s(".vlmctl-push-y"),
            bytes: 1,
        },
        Event::ConflictFound { conflict },
        Event::NotStopping { name: s("other") },
        Event::StopIgnored { name: s("nobody") },
        Event::Warning {
            message: s("careful"),
        },
        Event::Stopping {
            names: vec![s("other")],
            journal: PathBuf::from("j.json"),
        },
        Event::InterruptedDuringStop {
            name: s("other"),
            stop_timeout_s: 10,
        },
        Event::Stopped {
            names: vec![s("other")],
        },
        Event::WeightsChangedUnderServer {
            deployment: s("d"),
            why: s("repaired"),
        },
        Event::Probing {
            deployment: s("d"),
            timeout_s: 90,
        },
        Event::Probed {
            deployment: s("d"),
            load_s: 1.5,
        },
        Event::Launched {
            deployment: s("d"),
            launch: Launch::Started {
                id: s("1"),
                replaced: false,
            },
        },
        Event::Ready { startup_s: 1.5 },
        Event::SmokeDone {
            smoke: vlmctl_deploy::smoke::Smoke {
                model: s("m"),
                content: s("{}"),
                wall_ms: 12.0,
                vision: true,
                prompt_tokens: None,
                image_tokens: None,
            },
        },
        Event::VariantStarting {
            deployment: s("d"),
            name: s("v"),
            settings: s("--x"),
            index: 0,
            total: 2,
        },
        Event::VariantDone {
            name: s("v"),
            outcome: vlmctl_deploy::tune::Outcome::Failed {
                stage: vlmctl_deploy::tune::Stage::Launch,
                why: s("exited"),
            },
        },
        Event::RestoringOriginal {
            deployment: s("d"),
            container: None,
        },
        Event::Undone {
            restored: vlmctl_lifecycle::journal::Restored::default(),
        },
        Event::Pinning {
            need: s("gemma"),
            endpoint: s("https://hub"),
        },
        Event::Pinned {
            pinned: vlmctl_deploy::pin::Pinned {
                entry: vlmctl_weights::ModelEntry {
                    name: s("gemma"),
                    repo: s("org/gemma"),
                    revision: "a".repeat(40),
                    tracks: None,
                    dir: None,
                    pinned_from: None,
                    files: Vec::new(),
                },
                change: vlmctl_deploy::pin::Change::Added,
                lock: PathBuf::from("weights.lock"),
            },
        },
        Event::Resolving {
            repo: s("org/gemma"),
            revision: s("main"),
            endpoint: s("https://hub"),
        },
        Event::Verifying {
            files: 1,
            bytes: 2,
            threads: 1,
        },
        Event::Adopting {
            path: PathBuf::from("f.gguf"),
            bytes: 1,
        },
        Event::PushingTo {
            files: 1,
            host: s("beast"),
            dir: PathBuf::from("/models"),
        },
        Event::Link {
            notice: vlmctl_lifecycle::hosts::LinkNotice::Reopened {
                host: s("beast"),
                forward: s("/tmp/d.sock:/run/docker.sock"),
                tries: 2,
            },
        },
    ];
    for e in &all {
        match e {
            Event::WaitingForLock { .. }
            | Event::GatesStarted { .. }
            | Event::Gates { .. }
            | Event::Fetching { .. }
            | Event::Fetched { .. }
            | Event::Pulling { .. }
            | Event::Pulled { .. }
            | Event::PushedToHost { .. }
            | Event::VerifiedOnHost { .. }
            | Event::StagingRemoved { .. }
            | Event::StagingInUse { .. }
            | Event::ConflictFound { .. }
            | Event::NotStopping { .. }
            | Event::StopIgnored { .. }
            | Event::Warning { .. }
            | Event::Stopping { .. }
            | Event::InterruptedDuringStop { .. }
            | Event::Stopped { .. }
            | Event::WeightsChangedUnderServer { .. }
            | Event::Probing { .. }
            | Event::Probed { .. }
            | Event::Launched { .. }
            | Event::Ready { .. }
            | Event::SmokeDone { .. }
            | Event::VariantStarting { .. }
            | Event::VariantDone { .. }
            | Event::RestoringOriginal { .. }
            | Event::Undone { .. }
            | Event::Pinning { .. }
            | Event::Pinned { .. }
            | Event::Resolving { .. }
            | Event::Verifying { .. }
            | Event::Adopting { .. }
            | Event::PushingTo { .. }
            | Event::Link { .. } => {}
        }
    }
    all
}

/// The service dropped 13 of the 24 event kinds a job sends (a conflict found, a stop).
/// Every kind is now a line on the event stream, the one the terminal shows.
#[test]
fn every_event_a_job_sends_is_a_line_on_the_event_stream() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (app, _rx) = test_app(tmp.path());
    let app = Arc::new(app);
    let mut heard = app.subscribe();
    let events = every_event();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sent = events.clone();
    rt.block_on(queue::job(
        &app,
        vlmctl_store::JobKind::Relaunch,
        "d",
        None,
        async move |sink: &mut dyn vlmctl_deploy::events::Sink| -> Result<
            vlmctl_deploy::provision::Provisioned,
            String,
        > {
            for e in sent {
                sink.event(e);
            }
            Err("stopped here".to_owned())
        },
    ));
    let mut lines = Vec::new();
    while let Ok(a) = heard.try_recv() {
        if let queue::Activity::Job { line, .. } = a {
            lines.push(line);
        }
    }
    let want: Vec<String> = events.iter().map(ToString::to_string).collect();
    assert_eq!(lines, want);
    assert!(lines.iter().all(|l| !l.is_empty()), "{lines:?}");
}

/// A link notice of the service's SSH forwards (here sent by hand, as the pool would) while an
/// action runs is one of that action's events: a line of its job on the event stream, said
/// before the job's end, scrubbed with the service's secrets.
#[test]
fn a_link_notice_joins_the_event_stream_of_the_running_job() {
    use vlmctl_lifecycle::hosts::LinkNotice;
    let tmp = tempfile::tempdir().expect("tmp");
    let (app, _rx) = test_app(tmp.path());
    app.cfg.secrets.add("sk-forward-secret-0123456789");
    let app = Arc::new(app);
    let mut heard = app.subscribe();
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let notice = LinkNotice::Ended {
        host: "beast".to_owned(),
        forward: "/tmp/d.sock:/run/docker.sock".to_owned(),
        said: "exit status 255 (sk-forward-secret-0123456789)".to_owned(),
    };
    tx.send(notice.clone()).expect("sent");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A relaunch of a deployment no spec names: it fails at once, with no Docker call.
    rt.block_on(queue::run_action(
        &app,
        queue::Action::Relaunch {
            deployment: "nowhere".to_owned(),
        },
        &mut notices,
    ));
    let mut heard_all = Vec::new();
    while let Ok(a) = heard.try_recv() {
        heard_all.push(a);
    }
    let line = vlmctl_deploy::events::Event::Link { notice }
        .to_string()
        .replace("sk-forward-secret-0123456789", "[REDACTED]");
    let at = heard_all.iter().position(|a| {
        matches!(a, queue::Activity::Job { action, deployment, line: l }
            if action == "relaunch" && deployment == "nowhere" && *l == line)
    });
    let done = heard_all
        .iter()
        .position(|a| matches!(a, queue::Activity::JobDone { .. }));
    assert!(
        at.is_some() && done.is_some() && at < done,
        "{heard_all:#?}"
    );
}
