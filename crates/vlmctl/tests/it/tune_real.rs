//! `vlmctl tune` against the real dockerd, the CPU llama-server image and Gemma 3 270M: the
//! sweep prints its table and winner, a variant that cannot start is a failed row, and the
//! original deployment is back exactly as it was (the same container, the same spec hash)
//! after a normal end, a Ctrl-C, and a `kill -9` followed by `vlmctl restore`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use vlmctl_weights::fake_hub::FakeHub;

use crate::common::{poll_until, run, vlmctl};
use crate::deploy_real::{Deployed, deployed, docker, running};

/// A provisioned deployment to tune ([`deployed`], whose cleanup also removes a parked
/// original), and what it must look like afterwards.
struct Tuned {
    d: Deployed,
    server: String,
    plan: PathBuf,
    variants: PathBuf,
    /// Container id and spec-hash label before the tune.
    before: (String, String),
}

impl std::ops::Deref for Tuned {
    type Target = Deployed;
    fn deref(&self) -> &Deployed {
        &self.d
    }
}

fn identity(name: &str) -> (String, String) {
    (
        docker(&["inspect", "-f", "{{.Id}}", name]),
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.vlmctl.spec-sha256\"}}",
            name,
        ]),
    )
}

/// A small text-only plan with an `[slo]`; its target's URL is the deployment's under tune.
pub(crate) fn write_plan(plan: &Path) {
    let examples = crate::common::repo_root().join("examples");
    std::fs::write(
        plan,
        format!(
            "version = 1\nruns = 3\nwarmup = 1\nmax_tokens = 4\nconfigs = [\"T\"]\n[prompts]\nnav = \"{e}/prompts/nav.txt\"\n\
             nav_short = \"{e}/prompts/nav-short.txt\"\ndescribe = \"{e}/prompts/describe.txt\"\n\
             [slo]\np50_ms = 60000\n[[target]]\nname = \"cpu\"\nurl = \"http://127.0.0.1:1\"\n",
            e = examples.display()
        ),
    )
    .expect("plan");
}

/// Provisions the deployment (gpus = "none"), writes a small text-only plan with an `[slo]` and
/// a tune file: baseline, two variants that run, and `variants_extra` appended.
async fn tuned(what: &str, variants_extra: &str) -> Tuned {
    let d = deployed(what).await;
    let server = d.name.clone();
    let plan = d.r.path("plan.toml");
    write_plan(&plan);
    let variants = d.r.path("tune.toml");
    std::fs::write(
        &variants,
        format!(
            "[[variant]]\nname = \"fa-on\"\nextra_args = [\"--flash-attn\", \"on\"]\n\
             [[variant]]\nname = \"ctx-2k\"\nctx_size = 2048\n{variants_extra}"
        ),
    )
    .unwrap();
    let before = identity(&server);
    Tuned {
        d,
        server,
        plan,
        variants,
        before,
    }
}

impl Tuned {
    fn tune(&self, hub: &FakeHub) -> std::process::Command {
        let mut c = self.r.cmd(hub, &["tune"], &self.spec, &self.lock);
        c.arg("--plan")
            .arg(&self.plan)
            .arg("--variants")
            .arg(&self.variants);
        c
    }

    /// The original is back: the same container, the same spec hash, running and healthy; no
    /// variant or parked container and no tune journal left.
    fn assert_back(&self, context: &str) {
        assert_eq!(identity(&self.server), self.before, "{context}");
        assert!(running(&self.server), "{context}");
        let parked = vlmctl_deploy::tune::parked_name(&self.server);
        assert!(
            docker(&["ps", "-aq", "--filter", &format!("name=^{parked}$")]).is_empty(),
            "no parked container left: {context}"
        );
        assert!(
            !self
                .r
                .path("state/tunes")
                .join(format!("{}.json", self.server))
                .exists(),
            "tune journal cleared: {context}"
        );
    }

    /// Starts a tune and returns once a variant (not the original) serves under the name.
    fn tune_until_a_variant_runs(&self, hub: &FakeHub) -> Child {
        self.tune_until_variant(hub, 1, &[])
    }

    /// Starts a tune (with `extra` arguments) and returns once its `n`th variant (counted by
    /// the distinct containers seen under the name, the original aside) runs.
    fn tune_until_variant(&self, hub: &FakeHub, n: usize, extra: &[&str]) -> Child {
        let child = self
            .tune(hub)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        poll_until("the variant to run", Duration::from_secs(300), || {
            for id in docker(&[
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                &format!("name=^{}$", self.server),
            ])
            .lines()
            {
                if id != self.before.0 {
                    seen.insert(id.to_owned());
                }
            }
            seen.len() >= n
        });
        child
    }

    /// The history's runs (`vlmctl runs list --json`) in the deployment's state directory.
    fn history(&self) -> String {
        let mut c = vlmctl();
        c.args(["runs", "list", "--json"])
            .env("VLMCTL_STATE_DIR", self.r.path("state"));
        let (code, out, err) = run(&mut c);
        assert_eq!(code, 0, "{out}\n{err}");
        out
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tune_prints_the_table_picks_a_winner_and_puts_the_original_back() {
    // llama-server refuses an unknown --flash-attn value and exits while starting.
    let d = tuned(
        "tune",
        "[[variant]]\nname = \"broken\"\nextra_args = [\"--flash-attn\", \"sideways\"]\n",
    )
    .await;
    let hub = &d.hub;
    let started = Instant::now();
    let mut c = d.tune(hub);
    c.arg("--out").arg(d.r.path("tune-out"));
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    eprintln!("tune of 4 variants took {:?}\n{out}", started.elapsed());
    assert_eq!(code, 0, "{out}\n{err}");
    // Progress off a terminal: each variant with its settings, one line per bench config done
    // (how far), the gates on one line.
    for want in [
        "variant 2/4: fa-on (--flash-attn on): relaunching",
        "variant 3/4: ctx-2k (--ctx-size 2048): relaunching",
        "variant 2/4 fa-on: config T: 4/4 requests",
        "variant 1/4 baseline: config T: 4/4 requests",
        " passed",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!err.contains("PASS "), "no gates table per variant: {err}");
    // Each measured variant is a run in the history, linked to the deployment.
    let history = d.history();
    for v in ["baseline", "fa-on", "ctx-2k"] {
        assert!(
            history.contains(&format!("tune {}: variant {v} (", d.server)),
            "{v}: {history}"
        );
    }
    assert!(!history.contains("variant broken"), "{history}");
    assert!(
        out.contains("variant") && out.contains("p50 ms") && out.contains("mem MiB"),
        "{out}"
    );
    let table: Vec<&str> = out.lines().skip(2).take(4).collect();
    // Sorted by p50: the three that ran first, in ascending order, the broken one last.
    let p50 = |l: &str| l.split_whitespace().find_map(|w| w.parse::<f64>().ok());
    let measured: Vec<f64> = table.iter().take(3).map(|l| p50(l).unwrap()).collect();
    assert!(measured.windows(2).all(|w| w[0] <= w[1]), "{out}");
    assert!(
        table[3].contains("broken") && table[3].contains("FAILED to start"),
        "{out}"
    );
    for v in ["baseline", "fa-on", "ctx-2k"] {
        assert!(
            table.iter().any(|l| l.contains(v) && l.contains("met")),
            "{v}: {out}"
        );
    }
    assert_eq!(
        table.iter().filter(|l| l.starts_with('*')).count(),
        1,
        "{out}"
    );
    let winner = out
        .lines()
        .find_map(|l| l.strip_prefix("winner: "))
        .expect("a winner");
    assert!(
        table[0].contains(winner),
        "the fastest meets the SLO: {out}"
    );
    // The memory gate is the container's memory: a figure on every measured row.
    assert!(table.iter().take(3).all(|l| !l.contains(" ? ")), "{out}");
    assert!(
        out.contains(&format!("{} is back as it was", d.server)),
        "{out}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.r.path("tune-out/tune.json")).unwrap()).unwrap();
    assert_eq!(doc["rows"].as_array().map(Vec::len), Some(4));
    assert!(d.r.path("tune-out/fa-on/results.json").exists());
    // The page: the table and p50 against memory drawn by the charts (axes, the variants).
    let page = std::fs::read_to_string(d.r.path("tune-out/tune.html")).unwrap();
    for want in [
        "<svg",
        "server memory (MiB)",
        "p50 latency (ms)",
        "fa-on",
        "chosen: ",
        "<table id=\"tune\">",
        "is back as it was (container ",
    ] {
        assert!(page.contains(want), "{want:?} in tune.html");
    }
    d.assert_back("after a tune");
}

/// Ctrl-C while the second variant runs: the first one's figures are kept (the table, the
/// `--out` files, the history), the original is put back, exit 130.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_mid_tune_keeps_what_was_measured_puts_the_original_back_and_exits_130() {
    let d = tuned("tune-int", "").await;
    let hub = &d.hub;
    let dir = d.r.path("int-out");
    let dir_arg = dir.display().to_string();
    let child = d.tune_until_variant(hub, 2, &["--out", &dir_arg]);
    let pid = child.id().to_string();
    crate::common::signal("INT", &pid);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{err}");
    assert!(err.contains("putting") && err.contains("back"), "{err}");
    assert!(
        stdout.starts_with("stopped by ") && stdout.contains("baseline"),
        "the partial table: {stdout}"
    );
    assert!(err.contains("after 1 measured variant(s)"), "{err}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tune.json")).unwrap()).unwrap();
    assert_eq!(doc["rows"].as_array().map(Vec::len), Some(1), "{doc}");
    assert!(doc["interrupted"].is_string(), "{doc}");
    assert!(dir.join("baseline/results.json").exists());
    assert!(dir.join("tune.html").exists());
    assert!(
        d.history()
            .contains(&format!("tune {}: variant baseline (", d.server)),
        "recorded"
    );
    d.assert_back(&err);
}

/// While a tune runs, its deployment is held: teardown of the parked original is refused with a
/// hint (exit 3), teardown and relaunch of the deployment wait for it (exit 10), and the
/// deployment's own lock names the tune. Then the parked original is removed behind vlmctl's
/// back: the tune does not call it back; it says what it found and exits 11.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_tune_holds_its_deployment_and_never_calls_a_removed_original_back() {
    let d = tuned("tune-gone", "").await;
    let hub = &d.hub;
    let dir = d.r.path("gone-out");
    let dir_arg = dir.display().to_string();
    let child = d.tune_until_variant(
        hub,
        1,
        &["--only", "baseline,fa-on", "--runs", "1", "--out", &dir_arg],
    );
    let parked = vlmctl_deploy::tune::parked_name(&d.server);
    let held = std::fs::read_to_string(d.r.path("state/locks").join(format!("{}.lock", d.server)))
        .unwrap();
    assert!(
        held.contains("command vlmctl tune"),
        "the tune holds it: {held}"
    );
    let mut c = vlmctl();
    c.args(["teardown", &parked])
        .env("VLMCTL_STATE_DIR", d.r.path("state"));
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("vlmctl teardown {}", d.server)),
        "{err}"
    );
    for cmd in ["teardown", "relaunch"] {
        let (code, _, err) = run(&mut d.r.cmd(hub, &[cmd], &d.spec, &d.lock));
        assert_eq!(code, 10, "{cmd}: {err}");
    }
    assert!(!docker(&["ps", "-aq", "--filter", &format!("name=^{parked}$")]).is_empty());
    docker(&["rm", "-f", &parked]);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(11), "{stdout}\n{err}");
    assert!(!stdout.contains("back as it was ("), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{} is NOT back as it was: no container is named",
            d.server
        )),
        "{stdout}"
    );
    let page = std::fs::read_to_string(dir.join("tune.html")).unwrap();
    assert!(!page.contains("back as it was ("), "{page}");
    assert!(page.contains("NOT back as it was"), "{page}");
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("name=^{}$", d.server)]).is_empty(),
        "nothing put back under the name"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_tune_then_restore_puts_the_original_back() {
    let d = tuned("tune-kill", "").await;
    let hub = &d.hub;
    let mut child = d.tune_until_a_variant_runs(hub);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        d.r.path("state/tunes")
            .join(format!("{}.json", d.server))
            .exists(),
        "journal left for restore"
    );
    assert_ne!(
        docker(&["inspect", "-f", "{{.Id}}", &d.server]),
        d.before.0,
        "a variant holds the name"
    );
    let mut c = vlmctl();
    c.args(["restore", "--json"])
        .env("VLMCTL_STATE_DIR", d.r.path("state"));
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{out}\n{err}");
    d.assert_back(&out);
    let mut c = vlmctl();
    c.arg("restore").env("VLMCTL_STATE_DIR", d.r.path("state"));
    let (_, out, _) = run(&mut c);
    assert!(out.contains("nothing to restore"), "idempotent: {out}");
}
