//! Pin on first use, as a user meets it: a spec's `[model]` names a repository, a revision and
//! files; the first `weights fetch --spec` (or `provision`) writes the lock entry from the
//! hub's metadata, later runs leave the lock alone, `--locked` refuses changes, `weights update`
//! follows the branch. Against the in-process fake hub (it speaks huggingface.co's HTTP,
//! including its error codes); nothing here needs Docker: pinning comes before any of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use sha2::Digest as _;
use vlmctl_weights::fake_hub::{FakeHub, FakeRepo};

use crate::common::vlmctl;

const REPO: &str = "vlmctl-test/pin-GGUF";
const COMMIT: &str = "feed000000000000000000000000000000000001";
const FILE: &str = "pin-Q4_K.gguf";
const GATED: &str = "vlmctl-test/gated-GGUF";
const HEADER: &str = "# our lock: the header stays\n\nversion = 1\n";

/// A small GGUF; `version` changes its content (upstream publishing a new file).
fn model(version: u64) -> Bytes {
    Bytes::from(vlmctl_weights::gguf::synthetic(&[
        ("w", &[64, 64 * version], 0),
        ("b", &[16], 0),
    ]))
}

async fn hub() -> FakeHub {
    FakeHub::start(vec![
        FakeRepo {
            id: REPO.into(),
            commit: COMMIT.into(),
            token: None,
            files: BTreeMap::from([(FILE.into(), model(1))]),
        },
        FakeRepo {
            id: GATED.into(),
            commit: COMMIT.into(),
            token: Some("hf_the_right_token_0123456789".into()),
            files: BTreeMap::from([(FILE.into(), model(1))]),
        },
    ])
    .await
    .expect("fake hub")
}

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::write(env.lock(), HEADER).unwrap();
        env
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn lock(&self) -> PathBuf {
        self.path("weights.lock")
    }
    fn lock_bytes(&self) -> Vec<u8> {
        std::fs::read(self.lock()).unwrap()
    }
    /// A CPU spec whose `[model]` is `model_table` (the lines of the table).
    fn spec(&self, model_table: &str) -> PathBuf {
        let p = self.path("spec.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"pin-test\"\nimage = \"127.0.0.1:1/none:never-pulled\"\ngpus = \"none\"\n\
                 [model]\n{model_table}\ndir = \"{}\"\n\
                 [server]\nhost = \"127.0.0.1\"\nport = 1\n",
                self.path("models").display()
            ),
        )
        .unwrap();
        p
    }
    async fn run(&self, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let mut c = tokio::process::Command::from(vlmctl());
        c.args(args)
            .env("VLMCTL_LOCK", self.lock())
            .env("VLMCTL_STATE_DIR", self.path("state"))
            .env("HF_ENDPOINT", endpoint)
            .env("HF_HUB_CACHE", self.path("hf-cache"))
            .env("HF_HOME", self.path("hf-home"))
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().await.expect("run vlmctl");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

fn table(files: &str) -> String {
    format!("name = \"pin\"\nrepo = \"{REPO}\"\nfiles = [{files}]")
}

#[tokio::test]
async fn fetch_with_a_spec_pins_on_first_use_then_the_lock_decides() {
    let hub = hub().await;
    let env = Env::new();
    let spec = env.spec(&table(&format!("\"{FILE}\"")));
    let spec_arg = spec.to_str().unwrap();

    let (code, out) = env
        .run(
            &hub.endpoint(),
            &["weights", "fetch", "--spec", spec_arg],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "pinned pin in {}: {REPO}@main -> {COMMIT}",
            env.lock().display()
        )),
        "{out}"
    );
    assert!(
        out.contains("commit ") && out.contains("--locked enforces it"),
        "{out}"
    );
    let text = String::from_utf8(env.lock_bytes()).unwrap();
    let lock = vlmctl_weights::WeightsLock::parse(&text, &env.lock()).unwrap();
    let entry = lock.model("pin").expect("the entry");
    assert_eq!(entry.revision, COMMIT, "the commit main resolved to");
    assert_eq!(entry.tracks.as_deref(), Some("main"));
    assert_eq!(
        entry.files[0].sha256.to_string(),
        hex::encode(sha2::Sha256::digest(model(1))),
        "the file's real sha256"
    );
    assert_eq!(entry.files[0].size, model(1).len() as u64);
    assert!(text.starts_with(HEADER), "the header is kept:\n{text}");
    assert!(env.path("models").join(FILE).is_file(), "fetched: {out}");

    // Pinned: a second run reads the lock, writes nothing and asks the hub for no commit.
    let before = env.lock_bytes();
    let asked = hub.requests().len();
    let (code, out) = env
        .run(
            &hub.endpoint(),
            &["weights", "fetch", "--spec", spec_arg],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("pinned"), "{out}");
    assert_eq!(env.lock_bytes(), before, "the lock is byte-identical");
    assert!(
        hub.requests()[asked..]
            .iter()
            .all(|r| !r.contains("/api/models/")),
        "no revision resolved again: {:?}",
        &hub.requests()[asked..]
    );

    // The intent changes (a projector is added): --locked and VLMCTL_LOCKED refuse, exit 3,
    // saying what would change, and change nothing.
    env.spec(&table(&format!("\"{FILE}\", \"mmproj-F16.gguf\"")));
    for env_var in [None, Some(("VLMCTL_LOCKED", "1"))] {
        let args: &[&str] = if env_var.is_some() {
            &["weights", "fetch", "--spec", spec_arg]
        } else {
            &["weights", "fetch", "--spec", spec_arg, "--locked"]
        };
        let (code, out) = env.run(&hub.endpoint(), args, env_var.as_slice()).await;
        assert_eq!(code, 3, "{out}");
        assert!(
            out.contains("--locked (VLMCTL_LOCKED) forbids it")
                && out.contains("files: [pin-Q4_K.gguf (model)] -> [mmproj-F16.gguf (mmproj), pin-Q4_K.gguf (model)]"),
            "{out}"
        );
        assert_eq!(env.lock_bytes(), before, "nothing written");
    }
    // VLMCTL_LOCKED=0 is off, as clap reads a false-y value.
    let (code, out) = env
        .run(
            &hub.endpoint(),
            &["gates", "--spec", spec_arg],
            &[("VLMCTL_LOCKED", "0")],
        )
        .await;
    assert!(
        out.contains(&format!("weights    FAIL    not pinned yet: pin: vlmctl-test/pin-GGUF@{COMMIT} (mmproj-F16.gguf, pin-Q4_K.gguf); the entry in")),
        "gates says what it would pin and stays read-only ({code}): {out}"
    );
    assert_eq!(env.lock_bytes(), before, "gates writes nothing");
}

#[tokio::test]
async fn dry_run_needs_no_lock_entry_and_no_network() {
    let env = Env::new();
    std::fs::remove_file(env.lock()).unwrap();
    let spec = env.spec(&format!(
        "{}\nrevision = \"v1\"",
        table(&format!("\"{FILE}\", \"mmproj-F16.gguf\""))
    ));
    // A hub that is not there: the dry run must not need it.
    let nowhere = format!("http://127.0.0.1:{}", crate::common::free_port());
    let (code, out) = env
        .run(
            &nowhere,
            &["provision", "--dry-run", "--spec", spec.to_str().unwrap()],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    for want in [
        "not pinned yet: pin: vlmctl-test/pin-GGUF@v1",
        "--model /models/pin-Q4_K.gguf --mmproj /models/mmproj-F16.gguf --host 127.0.0.1",
        "org.vlmctl.lock-sha256=unpinned",
        ",readonly",
    ] {
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
    assert!(!env.lock().exists(), "no lock written");
    assert!(!env.path("state").exists(), "no state written");
}

#[tokio::test]
async fn the_hub_failing_to_pin_exits_6_and_writes_nothing() {
    let hub = hub().await;
    let env = Env::new();
    let nowhere = format!("http://127.0.0.1:{}", crate::common::free_port());
    let cases: [(&str, String, Option<&str>, &str, &str); 6] = [
        (
            "a repo the hub does not have (with a token: 404)",
            table(&format!("\"{FILE}\"")).replace(REPO, "vlmctl-test/nope"),
            Some("hf_some_token_0123456789"),
            "404 (RepoNotFound)",
            "check the repository id",
        ),
        (
            "a gated repo, no token (401)",
            table(&format!("\"{FILE}\"")).replace(REPO, GATED),
            None,
            "401 (GatedRepo)",
            "set HF_TOKEN",
        ),
        (
            "a gated repo, the wrong token",
            table(&format!("\"{FILE}\"")).replace(REPO, GATED),
            Some("hf_the_wrong_token_000000000"),
            "401 (GatedRepo)",
            "accept its license",
        ),
        (
            "a file the repo does not have (404)",
            table("\"nope-Q4_K.gguf\""),
            None,
            "404 (EntryNotFound)",
            "the file does not exist at that revision",
        ),
        (
            "a hub that is down",
            table(&format!("\"{FILE}\"")),
            None,
            "cannot reach the Hugging Face hub",
            "check the network",
        ),
        (
            "a mirror that is down, with credentials in its URL",
            table(&format!("\"{FILE}\"")),
            None,
            "cannot reach the Hugging Face hub",
            "check the network",
        ),
    ];
    let cases_len = cases.len();
    for (what, model_table, token, error, hint) in cases {
        let spec = env.spec(&model_table);
        let endpoint = if what.contains("credentials") {
            nowhere.replace("http://", "http://mirror-user:s3cret-mirror-pw@")
        } else if what.contains("down") {
            nowhere.clone()
        } else {
            hub.endpoint()
        };
        let token_env: Vec<(&str, &str)> = token.map(|t| ("HF_TOKEN", t)).into_iter().collect();
        let (code, out) = env
            .run(
                &endpoint,
                &["provision", "--yes", "--spec", spec.to_str().unwrap()],
                &token_env,
            )
            .await;
        assert_eq!(code, 6, "{what}: {out}");
        assert!(out.contains(error) && out.contains(hint), "{what}: {out}");
        if let Some(t) = token {
            assert!(!out.contains(t), "{what}: the token is never shown: {out}");
        }
        assert!(!out.contains("s3cret-mirror-pw"), "{what}: {out}");
        assert_eq!(
            env.lock_bytes(),
            HEADER.as_bytes(),
            "{what}: lock untouched"
        );
        let state = besides_the_history(&env.path("state"));
        assert!(state.is_empty(), "{what}: no state written: {state:?}");
        assert!(!env.path("models").exists(), "{what}: no model dir");
    }
    // The history records each attempt, failed, without the mirror's password.
    let store = vlmctl_store::Store::open(&env.path("state/history.sqlite")).unwrap();
    let jobs = store.jobs(None).unwrap();
    assert_eq!(jobs.len(), cases_len, "{jobs:?}");
    let seen = format!("{jobs:?}");
    assert!(!seen.contains("s3cret-mirror-pw"), "{seen}");
    assert!(
        jobs.iter().all(|j| j.state == vlmctl_store::State::Failed),
        "{seen}"
    );
}

/// The files in a state dir besides the history database (which records failed jobs too).
fn besides_the_history(state: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(vlmctl_store::FILE_NAME))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn weights_update_follows_the_tracked_branch() {
    let hub = hub().await;
    let env = Env::new();
    let dir = env.path("models").display().to_string();
    let (code, out) = env
        .run(
            &hub.endpoint(),
            &[
                "weights", "lock", REPO, FILE, "--name", "pin", "--dir", &dir,
            ],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = env
        .run(
            &hub.endpoint(),
            &[
                "weights",
                "lock",
                GATED,
                FILE,
                "--name",
                "fixed",
                "--revision",
                COMMIT,
            ],
            &[("HF_TOKEN", "hf_the_right_token_0123456789")],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    let pinned = env.lock_bytes();

    let (code, out) = env
        .run(
            &hub.endpoint(),
            &["weights", "lock", REPO, FILE, "--name", "other"],
            &[("VLMCTL_LOCKED", "1")],
        )
        .await;
    assert_eq!(code, 3, "weights lock honours VLMCTL_LOCKED: {out}");
    assert_eq!(env.lock_bytes(), pinned);

    let (code, out) = env.run(&hub.endpoint(), &["weights", "update"], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pin  ") && out.contains("unchanged"), "{out}");
    assert!(
        out.contains("pinned to a commit, not a branch or tag"),
        "{out}"
    );
    assert_eq!(
        env.lock_bytes(),
        pinned,
        "nothing changed upstream: nothing written"
    );

    // Upstream moves main to a new commit with new content.
    let next = "feed000000000000000000000000000000000002";
    hub.push_commit(REPO, next, &BTreeMap::from([(FILE.into(), model(2))]));
    let (code, out) = env
        .run(&hub.endpoint(), &["weights", "update", "--locked"], &[])
        .await;
    assert_eq!(code, 3, "--locked checks only: {out}");
    assert!(
        out.contains("upstream moved: pin would be updated"),
        "{out}"
    );
    assert_eq!(env.lock_bytes(), pinned);
    let (code, out) = env
        .run(&hub.endpoint(), &["weights", "update", "pin"], &[])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{COMMIT} -> {next}")) && out.contains("1 file(s) changed"),
        "{out}"
    );
    let text = String::from_utf8(env.lock_bytes()).unwrap();
    let lock = vlmctl_weights::WeightsLock::parse(&text, Path::new("x")).unwrap();
    let entry = lock.model("pin").unwrap();
    assert_eq!(entry.revision, next);
    assert_eq!(
        entry.files[0].sha256.to_string(),
        hex::encode(sha2::Sha256::digest(model(2)))
    );
    assert_eq!(entry.dir.as_deref(), Some(dir.as_str()), "dir kept");
    assert_eq!(
        lock.model("fixed").unwrap().revision,
        COMMIT,
        "the other entry untouched"
    );
    assert!(text.starts_with(HEADER), "{text}");
}

/// A host with the files but without the hub (its endpoint a closed port): `weights lock
/// --local DIR` pins from the files themselves (sha256 and size computed here, GGUF checked),
/// says so in the lock and the output, and a spec's `[model]` then runs from that lock with no
/// hub. Later, with the hub, `weights lock` pins from its answer and says the files match.
#[tokio::test]
async fn an_offline_pin_hashes_local_files_and_says_it_was_not_checked_against_the_hub() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let offline = format!("http://{closed}");
    let env = Env::new();
    let models = env.path("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join(FILE), model(1)).unwrap();
    std::fs::write(models.join("notes.gguf"), b"not a gguf at all").unwrap();
    let dir = models.to_str().unwrap();

    a_file_that_is_not_gguf_is_not_pinned(&env, &offline, dir).await;

    let (code, out) = env
        .run(
            &offline,
            &[
                "weights", "lock", REPO, FILE, "--name", "pin", "--local", dir,
            ],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("pinned from local files (sizes and sha256 computed here, GGUF checked), NOT checked against the hub")
            && out.contains("the commit is unknown (written as all zeros, tracking main)"),
        "{out}"
    );
    let text = String::from_utf8(env.lock_bytes()).unwrap();
    assert!(text.contains("pinned_from = \"local\""), "{text}");
    let lock = vlmctl_weights::WeightsLock::parse(&text, &env.lock()).unwrap();
    let entry = lock.model("pin").expect("the entry");
    assert_eq!(entry.revision, vlmctl_weights::UNKNOWN_REVISION);
    assert_eq!(entry.tracks.as_deref(), Some("main"));
    assert_eq!(entry.dir.as_deref(), Some(dir));
    assert_eq!(
        entry.files[0].sha256.to_string(),
        hex::encode(sha2::Sha256::digest(model(1)))
    );

    // A spec whose [model] names these files runs from that lock: no pinning, no hub.
    let spec = env.spec(&table(&format!("\"{FILE}\"")));
    let (code, out) = env
        .run(
            &offline,
            &["provision", "--dry-run", "--spec", spec.to_str().unwrap()],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("not pinned"), "{out}");

    // A commit given is recorded as given (and still said to be unchecked).
    let (code, out) = env
        .run(
            &offline,
            &[
                "weights",
                "lock",
                REPO,
                FILE,
                "--name",
                "pin",
                "--local",
                dir,
                "--revision",
                COMMIT,
            ],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("the commit {COMMIT} is as given")),
        "{out}"
    );

    // With the hub: pinned from its answer, the mark gone, and the files compared.
    let hub = hub().await;
    let (code, out) = env
        .run(
            &hub.endpoint(),
            &["weights", "lock", REPO, FILE, "--name", "pin"],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the hub's files are the ones pinned from local files before"),
        "{out}"
    );
    let text = String::from_utf8(env.lock_bytes()).unwrap();
    assert!(!text.contains("pinned_from"), "{text}");
}

/// `weights lock --local` of a file that is not a GGUF: refused (exit 4), nothing written.
async fn a_file_that_is_not_gguf_is_not_pinned(env: &Env, offline: &str, dir: &str) {
    // Not a GGUF: refused, nothing written.
    let before = env.lock_bytes();
    let (code, out) = env
        .run(
            offline,
            &[
                "weights",
                "lock",
                REPO,
                "notes.gguf",
                "--name",
                "pin",
                "--local",
                dir,
            ],
            &[],
        )
        .await;
    assert_eq!(code, 4, "{out}");
    assert_eq!(env.lock_bytes(), before, "nothing written");
}
