use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use vlmctl_deploy::events::{Cancel, Confirm, Event, Sink};
use vlmctl_deploy::provision::{self, Ctx, Options, Provisioned};
use vlmctl_deploy::status::{self, Drift, JournalState};
use vlmctl_deploy::{DeployError, DeploymentPlan, Dirs, undo};
use vlmctl_lifecycle::containers::{ConflictInfo, Launch};
use vlmctl_lifecycle::gates::GateStatus;
use vlmctl_test::model::{self, COMMIT, FILE, REPO};
use vlmctl_test::{Env, LabelGuard, docker, free_port};
use vlmctl_weights::HubClient;
use vlmctl_weights::fake_hub::{FakeHub, FakeRepo};

fn running(name: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", name]) == "true"
}

fn exists(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One test's world, the library's "provisioned CPU deployment plus its cleanup": names, a temp
/// dir, the fake hub with the test model, a conflict container, cleanup by label on drop (the
/// guard also removes the server under every name vlmctl gives it, which vlmctl labels itself).
struct World {
    /// First, so that it is dropped first: containers go before the folders they mount.
    guard: LabelGuard,
    tmp: tempfile::TempDir,
    hub: FakeHub,
}

impl World {
    async fn new(what: &str) -> Self {
        let hub = FakeHub::start(vec![FakeRepo {
            id: REPO.into(),
            commit: COMMIT.into(),
            token: None,
            files: BTreeMap::from([(FILE.into(), Bytes::from(model::bytes()))]),
        }])
        .await
        .expect("hub");
        let mut guard = LabelGuard::new(&format!("lib-{what}"));
        guard.also_remove_deployment(&guard.name("server"));
        Self {
            tmp: tempfile::tempdir().expect("tempdir"),
            hub,
            guard,
        }
    }

    fn name(&self, s: &str) -> String {
        self.guard.name(s)
    }

    fn path(&self, s: &str) -> PathBuf {
        self.tmp.path().join(s)
    }

    /// A running busybox container (restart `always`, a 1 s stop timeout) the spec names.
    fn conflict(&self) -> String {
        self.guard.conflict(&self.path("ctx"), 1)
    }

    /// The plan for a CPU deployment of the test model that names `conflict`.
    fn plan(&self, conflict: &str) -> DeploymentPlan {
        let spec = self.path("spec.toml");
        std::fs::write(
            &spec,
            format!(
                "name = \"{}\"\nimage = \"{}\"\nmodel = \"m\"\ngpus = \"none\"\nrestart = \"no\"\n\
                 [server]\nhost = \"127.0.0.1\"\nport = {}\nctx_size = 1024\nn_gpu_layers = 0\nthreads = 1\n\
                 [health]\ntimeout_s = 90\n[[conflict]]\nname = \"{conflict}\"\n",
                self.name("server"),
                Env::require("VLMCTL_TEST_LLAMA_IMAGE"),
                free_port()
            ),
        )
        .unwrap();
        let lock = self.path("weights.lock");
        std::fs::write(&lock, model::lock("m", &self.path("models"))).unwrap();
        DeploymentPlan::load(Some(&spec), &lock, &Dirs::default()).expect("plan")
    }

    fn hub_client(&self) -> HubClient {
        HubClient::new(&self.hub.endpoint(), None, self.path("hf-cache")).expect("hub client")
    }

    /// This machine's engine, its state in the workspace's.
    fn engine(&self) -> vlmctl_lifecycle::Engine {
        vlmctl_lifecycle::Engine::local(&self.state())
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    /// Runs `provision` from the library, here.
    async fn job(
        &self,
        plan: &DeploymentPlan,
        opts: &Options,
        sink: &mut dyn Sink,
        confirm: &mut dyn Confirm,
        cancel: &Cancel,
    ) -> Result<Provisioned, DeployError> {
        provision::provision(
            plan,
            opts,
            &self.hub_client(),
            Ctx {
                engine: &self.engine(),
                sink,
                confirm,
                cancel,
            },
        )
        .await
    }
}

const RELAUNCH: Options = Options {
    relaunch: true,
    stop: Vec::new(),
    yes: false,
    wait: false,
    within_tune: false,
};

/// Answers every question with `answer` and remembers who was asked about.
struct Answer {
    answer: bool,
    asked: Vec<String>,
}

impl Answer {
    fn no() -> Self {
        Self {
            answer: false,
            asked: Vec::new(),
        }
    }
}

impl Confirm for Answer {
    fn stop<'a>(&'a mut self, c: &'a ConflictInfo) -> vlmctl_deploy::events::Answer<'a> {
        self.asked.push(c.name.clone());
        Box::pin(std::future::ready(self.answer))
    }
}

/// The event kinds, in order, as `snake_case` names.
fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .filter(|k| k != "pulling")
        .collect()
}

/// Relaunch of an unchanged, healthy deployment: nothing stopped, nothing created.
async fn relaunch_is_the_fast_path(w: &World, plan: &DeploymentPlan) {
    let mut confirm = Answer {
        answer: true,
        asked: Vec::new(),
    };
    let mut again: Vec<Event> = Vec::new();
    let unchanged = w
        .job(plan, &RELAUNCH, &mut again, &mut confirm, &Cancel::new())
        .await
        .unwrap();
    assert!(
        matches!(unchanged, Provisioned::Unchanged { .. }),
        "{unchanged:?}"
    );
    assert_eq!(
        kinds(&again),
        ["gates_started", "gates", "pulled", "launched"]
    );

    assert!(confirm.asked.is_empty());
}

/// The same spec and lock with the files in another directory: relaunch recreates the
/// container (the spec hash alone would call it unchanged and keep the old mount).
async fn a_new_models_dir_is_a_change(w: &World, plan: &DeploymentPlan) {
    let other = w.path("models-2");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::hard_link(w.path("models").join(FILE), other.join(FILE)).unwrap();
    let moved = DeploymentPlan::load(
        Some(&w.path("spec.toml")),
        &w.path("weights.lock"),
        &Dirs {
            dir: Some(other.clone()),
            ..Dirs::default()
        },
    )
    .unwrap();
    assert_eq!(moved.spec.sha256(), plan.spec.sha256());
    let mut events: Vec<Event> = Vec::new();
    w.job(
        &moved,
        &RELAUNCH,
        &mut events,
        &mut Answer::no(),
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Launched {
                launch: Launch::Started { replaced: true, .. },
                ..
            }
        )),
        "{events:?}"
    );
    let mounts = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Source}}{{end}}",
        &plan.spec.name,
    ]);
    assert_eq!(
        mounts,
        std::fs::canonicalize(&other).unwrap().display().to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_status_teardown_from_the_library() {
    let w = World::new("jobs").await;
    let conflict = w.conflict();
    let plan = w.plan(&conflict);
    let server = plan.spec.name.clone();
    let mut events: Vec<Event> = Vec::new();
    let mut confirm = Answer {
        answer: true,
        asked: Vec::new(),
    };
    let done = w
        .job(
            &plan,
            &Options::default(),
            &mut events,
            &mut confirm,
            &Cancel::new(),
        )
        .await
        .expect("provisioned");
    assert_eq!(
        kinds(&events),
        [
            "gates_started",
            "fetching",
            "fetched",
            "gates",
            "pulled",
            "conflict_found",
            // Its restart policy is `always`: a daemon restart would bring it back.
            "warning",
            "stopping",
            "stopped",
            "launched",
            "ready",
            "smoke_done"
        ]
    );
    assert_eq!(
        confirm.asked,
        std::slice::from_ref(&conflict),
        "asked once, about the named conflict"
    );
    assert!(matches!(
        events.iter().find(|e| matches!(e, Event::Launched { .. })),
        Some(Event::Launched {
            launch: Launch::Started {
                replaced: false,
                ..
            },
            ..
        })
    ));
    let Provisioned::Ready {
        record,
        record_path,
        ..
    } = done
    else {
        panic!("a fresh launch");
    };
    assert!(record_path.exists() && record.deployment == server);
    assert!(!running(&conflict) && running(&server));

    let s = status::status(&w.engine(), Some(&plan)).await.unwrap();
    let row = s
        .containers
        .iter()
        .find(|r| r.container.name == server)
        .unwrap();
    assert_eq!((row.health.as_str(), row.drift), ("ok", Drift::None));
    assert!(s.journals.iter().any(|j| matches!(j,
        JournalState::Open { journal, .. } if journal.entries[0].name == conflict)));

    relaunch_is_the_fast_path(&w, &plan).await;
    a_new_models_dir_is_a_change(&w, &plan).await;

    // The thorough gates from the library: the weights hashed, the port held by our own server.
    let (_, report) = vlmctl_deploy::gates::run(&w.engine(), &plan, false).await;
    let gate = |n: &str| report.results.iter().find(|r| r.name == n).unwrap().clone();
    assert_eq!(gate("weights").status, GateStatus::Pass, "{report:?}");
    assert!(
        gate("port")
            .evidence
            .contains("this deployment's own container"),
        "{report:?}"
    );

    // restore_all brings the conflict back (the server stays); teardown then has nothing to
    // restore and removes the server.
    let mut none: Vec<Event> = Vec::new();
    let restored = undo::restore_all(&w.engine(), false, &mut none, &Cancel::new())
        .await
        .unwrap();
    assert_eq!(restored.len(), 1);
    let back = restored[0].outcome.as_ref().unwrap();
    assert_eq!(back.started, std::slice::from_ref(&conflict));
    assert!(running(&conflict) && running(&server));
    let torn = undo::teardown(&w.engine(), &server, false, &mut none, &Cancel::new())
        .await
        .unwrap();
    assert!(torn.removed && torn.restored.started.is_empty(), "{torn:?}");
    assert!(running(&conflict) && !exists(&server));
}

/// A cancel at a chosen event (here: right after the conflict stopped, from the sink itself)
/// ends the job with its own work undone: the conflict back, no server.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_after_the_stop_undoes_the_run() {
    let w = World::new("cancel").await;
    let conflict = w.conflict();
    let plan = w.plan(&conflict);
    let cancel = Cancel::new();
    let mut seen = Vec::new();
    let mut sink = |e: Event| {
        if matches!(e, Event::Stopped { .. }) {
            cancel.cancel("the test");
        }
        seen.push(e);
    };
    let yes = Options {
        yes: true,
        ..Options::default()
    };
    let err = w
        .job(&plan, &yes, &mut sink, &mut Answer::no(), &cancel)
        .await
        .unwrap_err();
    let DeployError::Undone { cause, undone } = &err else {
        panic!("{err}");
    };
    assert!(matches!(**cause, DeployError::Interrupted { ref why } if why == "the test"));
    assert_eq!(undone.started, std::slice::from_ref(&conflict));
    assert!(running(&conflict) && !exists(&plan.spec.name));
    assert!(!vlmctl_lifecycle::journal::path(&w.state(), &plan.spec.name).exists());
    assert_eq!(kinds(&seen).last().map(String::as_str), Some("undone"));
}

/// Issue #21: the id of a tune's parked original names it as well as its name does: `teardown`
/// by id resolves the container's own name and refuses it, leaving the container in place.
#[tokio::test(flavor = "multi_thread")]
async fn teardown_by_id_of_a_tunes_parked_original_is_refused() {
    let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
    let parked = format!("vlmctl-test-parkid-{}-vlmctl-tune", std::process::id());
    let _ = Command::new("docker").args(["rm", "-f", &parked]).output();
    let id = docker(&[
        "create",
        "--name",
        &parked,
        "--label",
        "org.vlmctl.managed=true",
        &image,
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let mut events: Vec<Event> = Vec::new();
    let got = undo::teardown(
        &vlmctl_lifecycle::Engine::local(tmp.path()),
        &id,
        false,
        &mut events,
        &Cancel::new(),
    )
    .await;
    let still = exists(&parked);
    let _ = Command::new("docker").args(["rm", "-f", &parked]).output();
    let e = got.expect_err("the parked original is not a deployment");
    assert!(
        matches!(&e, DeployError::ParkedByTune { name, .. } if *name == parked),
        "{e:?}"
    );
    assert!(still, "the parked original is still there");
}
