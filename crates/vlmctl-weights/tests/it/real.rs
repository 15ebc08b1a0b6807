//! With the real components from `scripts/test`: the real Gemma 3 270M GGUF served by the fake
//! hub, and Python's official `huggingface_hub` client as the judge of the fake's fidelity.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use vlmctl_test::Env;
use vlmctl_weights::fake_hub::{FakeHub, Fault};
use vlmctl_weights::{FetchOutcome, HubClient, NoProgress};

use crate::common::{COMMIT, FILE, REPO, entry, repo, tree};

fn real_model() -> Bytes {
    Bytes::from(std::fs::read(Env::require("VLMCTL_TEST_MODEL")).expect("read VLMCTL_TEST_MODEL"))
}

/// On the current-thread runtime the CLI uses (hf-hub's chunk tasks then run in order; on a
/// multi-threaded runtime they race for its semaphore and the committed prefix is shorter).
#[tokio::test(flavor = "current_thread")]
async fn real_model_download_cut_at_60_percent_resumes() {
    let content = real_model();
    let size = content.len() as u64;
    let hub = FakeHub::start(vec![repo(content.clone(), None)])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let client = HubClient::new(&hub.endpoint(), None, tmp.path().join("cache")).unwrap();
    let model = entry(&content, COMMIT);
    let dir = tmp.path().join("models");
    hub.set_fault(FILE, Fault::DropAt(size * 6 / 10));
    let fetch = || client.fetch(&model, &model.files[0], &dir, Arc::new(NoProgress));
    let err = fetch().await.unwrap_err();
    assert!(
        matches!(err, vlmctl_weights::WeightsError::Transfer { .. }),
        "{err:?}"
    );
    assert!(!dir.join(FILE).exists());
    let first_run = hub.requests().len();
    let outcome = fetch().await.unwrap();
    let FetchOutcome::Downloaded { resumed_from } = outcome else {
        panic!("{outcome:?}")
    };
    // Whole 10 MB chunks below the cut at 151.9 MB are kept.
    assert_eq!(resumed_from, 150_000_000, "of {size}");
    let restarted_below: Vec<String> = hub.requests()[first_run..]
        .iter()
        .filter(|r| r.contains("/cdn/") && !r.contains("bytes=0-0"))
        .filter(|r| {
            r.split("bytes=")
                .nth(1)
                .and_then(|x| x.split('-').next()?.parse::<u64>().ok())
                .is_some_and(|start| start < resumed_from)
        })
        .cloned()
        .collect();
    assert!(restarted_below.is_empty(), "{restarted_below:?}");
    assert_eq!(
        vlmctl_weights::sha256_file(&dir.join(FILE)).unwrap(),
        model.files[0].sha256
    );
}

/// Python's `huggingface_hub` downloads through the fake hub into a cache, and our fetch then
/// finds the file in that cache: the fake speaks the hub's protocol, and we share the official
/// cache layout.
#[tokio::test(flavor = "multi_thread")]
async fn official_python_client_downloads_through_the_fake_hub() {
    let python = Env::require("VLMCTL_TEST_PYTHON");
    let content = crate::common::tiny_model();
    let hub = FakeHub::start(vec![repo(content.clone(), None)])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache: PathBuf = tmp.path().join("cache");
    let script = r"
import hashlib, sys
from huggingface_hub import HfApi, hf_hub_download
repo, name, rev, endpoint, cache = sys.argv[1:6]
info = HfApi(endpoint=endpoint).model_info(repo, revision=rev)
print('sha', info.sha)
print('siblings', ','.join(s.rfilename for s in info.siblings))
path = hf_hub_download(repo, name, revision=rev, endpoint=endpoint, cache_dir=cache)
print('path', path)
print('sha256', hashlib.sha256(open(path, 'rb').read()).hexdigest())
";
    let out = tokio::process::Command::new(&python)
        .args(["-c", script, REPO, FILE, "main", &hub.endpoint()])
        .arg(&cache)
        .env_remove("HF_TOKEN")
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_XET", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HOME", tmp.path().join("hf-home"))
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = entry(&content, COMMIT);
    assert!(stdout.contains(&format!("sha {COMMIT}")), "{stdout}");
    assert!(stdout.contains(&format!("siblings {FILE}")), "{stdout}");
    assert!(
        stdout.contains(&format!("sha256 {}", model.files[0].sha256)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("snapshots/{COMMIT}/{FILE}")),
        "{stdout}"
    );

    let served = hub.bytes_served();
    let client = HubClient::new(&hub.endpoint(), None, cache.clone()).unwrap();
    let outcome = client
        .fetch(
            &model,
            &model.files[0],
            &tmp.path().join("models"),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    assert_eq!(outcome, FetchOutcome::FromCache, "{:?}", tree(&cache));
    assert_eq!(
        hub.bytes_served(),
        served,
        "reused the official client's cache"
    );
}
