//! `vlmctl weights lock | fetch | adopt` as a user runs them, against the in-process fake hub
//! (`vlmctl_weights::fake_hub`, which imitates huggingface.co's HTTP) via `HF_ENDPOINT`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use vlmctl_weights::fake_hub::{FakeHub, FakeRepo, Fault};

use crate::common::{poll_until, redact, vlmctl};

const REPO: &str = "vlmctl-test/tiny-GGUF";
const COMMIT: &str = "c0ffee0000000000000000000000000000000001";
const FILE: &str = "tiny-Q4_K.gguf";

fn model() -> Bytes {
    // ~25 MB: several of hf-hub's 10 MB chunks.
    Bytes::from(vlmctl_weights::gguf::synthetic(&[
        ("w", &[1024, 6144], 0),
        ("b", &[256], 12),
    ]))
}

async fn hub(token: Option<&str>) -> FakeHub {
    FakeHub::start(vec![FakeRepo {
        id: REPO.to_owned(),
        commit: COMMIT.to_owned(),
        token: token.map(str::to_owned),
        files: BTreeMap::from([(FILE.to_owned(), model())]),
    }])
    .await
    .expect("fake hub")
}

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn lock(&self) -> PathBuf {
        self.tmp.path().join("weights.lock")
    }
    fn models(&self) -> PathBuf {
        self.tmp.path().join("models")
    }
    fn cmd(&self, hub: &FakeHub, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::from(vlmctl());
        c.args(args)
            .arg("--lock")
            .arg(self.lock())
            .env("HF_ENDPOINT", hub.endpoint())
            .env("HF_HUB_CACHE", self.tmp.path().join("hf-cache"))
            .env("HF_HOME", self.tmp.path().join("hf-home"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
    async fn run(
        &self,
        hub: &FakeHub,
        args: &[&str],
        token: Option<&str>,
    ) -> (i32, String, String) {
        let mut c = self.cmd(hub, args);
        if let Some(t) = token {
            c.env("HF_TOKEN", t);
        }
        let out = c.output().await.expect("run vlmctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            redact(&String::from_utf8_lossy(&out.stderr), self.tmp.path()),
        )
    }
    async fn pin(&self, hub: &FakeHub) {
        let dir = self.models().display().to_string();
        let (code, out, err) = self
            .run(
                hub,
                &[
                    "weights", "lock", REPO, FILE, "--name", "tiny", "--dir", &dir,
                ],
                None,
            )
            .await;
        assert_eq!(code, 0, "{out}{err}");
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn lock_then_fetch_then_verify() {
    let hub = hub(None).await;
    let env = Env::new();
    env.pin(&hub).await;
    let lock = std::fs::read_to_string(env.lock()).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(model()));
    assert!(lock.contains(&format!("revision = \"{COMMIT}\"")), "{lock}");
    assert!(lock.contains(&format!("sha256 = \"{sha}\"")), "{lock}");
    assert!(
        lock.contains(&format!("size = {}", model().len())),
        "{lock}"
    );
    assert_eq!(hub.bytes_served(), 0, "lock reads metadata only");

    let (code, out, err) = env.run(&hub, &["weights", "fetch"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("downloaded and verified (25.2 MB)"), "{out}");
    assert_eq!(files_in(&env.models()), vec![FILE.to_owned()]);

    let (code, out, _) = env.run(&hub, &["weights", "fetch"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("already present, verified"), "{out}");

    let (code, out, _) = env.run(&hub, &["weights", "verify"], None).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK (GGUF v3, 2 tensors, test)"), "{out}");
}

// Multi-thread: `poll_until` blocks this thread while the hub serves from the workers.
#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_download_leaves_nothing_under_the_final_name_and_resumes() {
    let hub = hub(None).await;
    let env = Env::new();
    env.pin(&hub).await;
    let size = model().len() as u64;
    hub.set_fault(FILE, Fault::StallAt(size * 6 / 10));
    let mut child = env.cmd(&hub, &["weights", "fetch"]).spawn().expect("spawn");
    poll_until(
        "the download to pass half the file",
        Duration::from_secs(60),
        || hub.bytes_served() >= size / 2,
    );
    child.kill().await.expect("kill");
    assert!(
        !env.models().join(FILE).exists(),
        "final name exists after a kill"
    );
    assert!(
        files_in(&env.models()).is_empty(),
        "{:?}",
        files_in(&env.models())
    );

    hub.clear_faults();
    let (code, out, err) = env.run(&hub, &["weights", "fetch"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("resumed after 10.0 MB"), "{out}");
}

#[tokio::test]
async fn gated_repo_without_token_explains_and_never_shows_the_token() {
    let hub = hub(Some("hf_RIGHT")).await;
    let env = Env::new();
    let (code, _, err) = env.run(&hub, &["weights", "lock", REPO, FILE], None).await;
    assert_eq!(code, 6, "{err}");
    insta::assert_snapshot!(err.replace(&hub.endpoint(), "[HUB]"));
    assert!(!env.lock().exists(), "nothing written on failure");

    let (code, _, err) = env
        .run(&hub, &["weights", "lock", REPO, FILE], Some("hf_WRONG"))
        .await;
    assert_eq!(code, 6);
    assert!(err.contains("the token was refused"), "{err}");
    assert!(!err.contains("hf_WRONG"), "{err}");

    let (code, out, err) = env
        .run(&hub, &["weights", "lock", REPO, FILE], Some("hf_RIGHT"))
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pinned tiny-q4-k in"), "{out}");
    assert!(!out.contains("hf_RIGHT") && !err.contains("hf_RIGHT"));
}

#[tokio::test]
async fn adopt_places_a_verified_copy_without_downloading() {
    let hub = hub(None).await;
    let env = Env::new();
    env.pin(&hub).await;
    let copy = env.tmp.path().join(FILE);
    std::fs::write(&copy, model()).unwrap();
    let bad_dir = env.tmp.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    std::fs::write(bad_dir.join(FILE), &model()[..1000]).unwrap();

    let (code, _, err) = env
        .run(
            &hub,
            &["weights", "adopt", bad_dir.join(FILE).to_str().unwrap()],
            None,
        )
        .await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not adopting"), "{err}");
    assert!(files_in(&env.models()).is_empty());

    let (code, out, err) = env
        .run(&hub, &["weights", "adopt", copy.to_str().unwrap()], None)
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("adopted (hard link), verified"), "{out}");
    assert_eq!(hub.bytes_served(), 0);
    let (code, out, _) = env.run(&hub, &["weights", "verify"], None).await;
    assert_eq!(code, 0, "{out}");
}

/// F8 and F12 of the 2026-12-07 adversarial pass, as a user meets them: a hub whose commit is
/// not 40 lowercase hex digits, or whose file metadata is malformed, is a hub error (exit 6),
/// never blamed on the user's lock (exit 3), and no lock is written.
#[tokio::test]
async fn a_hostile_hubs_answers_are_hub_errors_and_write_no_lock() {
    let hub = hub(None).await;
    let env = Env::new();
    hub.answer_sha(&"A".repeat(40));
    let (code, _, err) = env.run(&hub, &["weights", "lock", REPO, FILE], None).await;
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("is not a commit id"), "{err}");
    assert!(!env.lock().exists());
    hub.answer_sha(COMMIT);
    hub.set_fault(
        FILE,
        Fault::Headers(vec![("x-linked-etag".into(), Some("abc123".into()))]),
    );
    let (code, _, err) = env.run(&hub, &["weights", "lock", REPO, FILE], None).await;
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("malformed x-linked-etag: \"abc123\""), "{err}");
    assert!(!err.contains("Git LFS"), "{err}");
    assert!(!env.lock().exists());
}

/// Issue #21: the repository id, revision and file paths given to `weights lock` go into the
/// hub's URLs (with the token): each is checked before any request, and refused with exit 3
/// naming the argument; nothing is written to the lock.
#[tokio::test]
async fn lock_arguments_that_would_change_the_hub_url_are_refused_before_any_request() {
    let hub = hub(Some("hf_secret_token_abcdef")).await;
    let env = Env::new();
    let cases: [(&[&str], &str); 6] = [
        (
            &["../../../etc/passwd#", FILE],
            "repo \"../../../etc/passwd#\"",
        ),
        (&["org/%2e%2e", FILE], "repo \"org/%2e%2e\""),
        (&["org/..", FILE], "repo \"org/..\""),
        (&[REPO, FILE, "--revision", "%2e%2e"], "revision \"%2e%2e\""),
        (
            &[REPO, FILE, "--revision", "../main"],
            "revision \"../main\"",
        ),
        (&[REPO, "a/./b.gguf"], "\"a/./b.gguf\" is not a path"),
    ];
    for (args, want) in cases {
        let mut all = vec!["weights", "lock"];
        all.extend_from_slice(args);
        let (code, out, err) = env.run(&hub, &all, Some("hf_secret_token_abcdef")).await;
        assert_eq!(code, 3, "{args:?}: {out}\n{err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        assert!(!err.contains("hf_secret_token"), "{err}");
        assert!(hub.requests().is_empty(), "{args:?}: {:?}", hub.requests());
        assert!(!env.lock().exists(), "{args:?}: nothing written");
    }
}

/// Issue #21: a hostile hub whose model info does not end is refused after 16 MiB (exit 6, a
/// hub protocol error), not read until the memory runs out. The fake hub's "endless" body stops
/// after `ENDLESS_BYTES` (256 MiB), so a client that reads it all fails the byte bound below
/// without exhausting the machine.
#[tokio::test(flavor = "multi_thread")]
async fn an_endless_model_info_is_refused_after_a_bound() {
    let hub = hub(None).await;
    hub.endless_model_info();
    let env = Env::new();
    let (code, out, err) = tokio::time::timeout(
        Duration::from_secs(120),
        env.run(&hub, &["weights", "lock", REPO, FILE], None),
    )
    .await
    .expect("a clean error within the deadline");
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(err.contains("longer than 16 MiB"), "{err}");
    assert!(
        hub.bytes_served() < 32 << 20,
        "read {} bytes of an endless answer",
        hub.bytes_served()
    );
    assert!(!env.lock().exists());
}

/// Issue #21: a download whose ranged answer does not stop where it should (hf-hub 0.4 reads a
/// chunk's whole body into memory) is stopped once one request delivered more than it asked
/// for, with a hub error, instead of growing until the memory runs out.
#[tokio::test(flavor = "multi_thread")]
async fn an_endless_download_answer_is_stopped_at_the_requested_size() {
    // The ranges as asked, and the adversarial report's lie (`bytes 0-4/5`, then no end).
    for range in [None, Some("bytes 0-4/5")] {
        let hub = hub(None).await;
        let env = Env::new();
        env.pin(&hub).await;
        hub.set_fault(FILE, Fault::Endless(range.map(str::to_owned)));
        let (code, out, err) = tokio::time::timeout(
            Duration::from_secs(120),
            env.run(&hub, &["weights", "fetch"], None),
        )
        .await
        .expect("a clean error within the deadline");
        assert_eq!(code, 6, "{range:?}: {out}\n{err}");
        assert!(
            err.contains("more than the 10000000 bytes it asked for"),
            "{range:?}: {err}"
        );
        assert!(
            hub.bytes_served() < 64 << 20,
            "{range:?}: read {} bytes of an endless answer",
            hub.bytes_served()
        );
        assert!(
            files_in(&env.models()).is_empty(),
            "{range:?}: {:?}",
            files_in(&env.models())
        );
    }
}
