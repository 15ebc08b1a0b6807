//! Fetch, lock metadata and adopt against the fake hub, with its scripted faults.

use vlmctl_weights::fake_hub::Fault;
use vlmctl_weights::{FetchOutcome, WeightsError};

use crate::common::{COMMIT, FILE, REPO, Setup, tiny_model, tree};

#[tokio::test]
async fn metadata_resolves_commit_sha_and_size_without_downloading() {
    let s = Setup::new(None, None).await;
    assert_eq!(s.client.commit_of(REPO, "main").await.unwrap(), COMMIT);
    let meta = s.client.file_meta(REPO, "main", FILE).await.unwrap();
    assert_eq!(meta.commit, COMMIT);
    assert_eq!(meta.size, s.model.files[0].size);
    assert_eq!(meta.sha256, Some(s.model.files[0].sha256));
    assert_eq!(s.hub.bytes_served(), 0);
}

#[tokio::test]
async fn fetch_places_verified_file_once_then_is_a_no_op() {
    let s = Setup::new(None, None).await;
    assert_eq!(
        s.fetch().await.unwrap(),
        FetchOutcome::Downloaded { resumed_from: 0 }
    );
    let size = s.model.files[0].size;
    // The file once, plus the 1-byte `Range: bytes=0-0` metadata probe hf-hub sends to the CDN.
    let served = size + 1;
    assert_eq!(s.hub.bytes_served(), served);
    assert_eq!(std::fs::read(s.final_path()).unwrap(), tiny_model());
    // Only the final name in the model dir: no temporary left behind.
    assert_eq!(tree(&s.dir()), vec![FILE.to_owned()]);
    // The hub cache has the official layout, so `hf download` caches are shared.
    let cache = tree(&s.tmp.path().join("hf-cache"));
    let sha = s.model.files[0].sha256.to_string();
    assert!(
        cache.contains(&format!("models--vlmctl-test--tiny-GGUF/blobs/{sha}")),
        "{cache:?}"
    );
    assert!(
        cache.contains(&format!(
            "models--vlmctl-test--tiny-GGUF/snapshots/{COMMIT}/{FILE}"
        )),
        "{cache:?}"
    );

    assert_eq!(s.fetch().await.unwrap(), FetchOutcome::AlreadyPresent);
    assert_eq!(s.hub.bytes_served(), served, "nothing downloaded again");

    std::fs::remove_file(s.final_path()).unwrap();
    assert_eq!(s.fetch().await.unwrap(), FetchOutcome::FromCache);
    assert_eq!(s.hub.bytes_served(), served, "placed from the hub cache");
}

#[tokio::test]
async fn corrupted_transfer_is_deleted_and_diagnosed_as_corruption() {
    let s = Setup::new(None, None).await;
    s.hub.set_fault(FILE, Fault::WrongBytes);
    let err = s.fetch().await.unwrap_err();
    assert!(
        matches!(err, WeightsError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(
        err.hint().contains("transfer was corrupted"),
        "{}",
        err.hint()
    );
    assert!(!s.final_path().exists());
    assert!(tree(&s.dir()).is_empty(), "{:?}", tree(&s.dir()));
    let sha = s.model.files[0].sha256.to_string();
    assert!(
        !tree(&s.tmp.path().join("hf-cache"))
            .iter()
            .any(|f| f.ends_with(&sha)),
        "bad blob kept"
    );
    s.hub.clear_faults();
    assert!(matches!(
        s.fetch().await.unwrap(),
        FetchOutcome::Downloaded { .. }
    ));
}

#[tokio::test]
async fn upstream_change_is_refused_before_downloading() {
    let s = Setup::new(None, None).await;
    s.hub.replace_file(
        FILE,
        &bytes::Bytes::from(vlmctl_weights::gguf::synthetic(&[("x", &[32], 0)])),
    );
    let err = s.fetch().await.unwrap_err();
    assert!(
        matches!(err, WeightsError::UpstreamChanged { .. }),
        "{err:?}"
    );
    assert!(err.hint().contains("re-pin"), "{}", err.hint());
    assert_eq!(s.hub.bytes_served(), 0);
    assert!(!s.final_path().exists());
}

#[tokio::test]
async fn gated_repo_needs_the_token_and_the_token_is_never_shown() {
    let secret = "hf_SECRETtoken123";
    let s = Setup::new(Some(secret), None).await;
    let err = s.fetch().await.unwrap_err();
    match &err {
        WeightsError::HubStatus {
            status: 401,
            error_code,
            sent_token: false,
            ..
        } => {
            assert_eq!(error_code.as_deref(), Some("GatedRepo"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.hint().contains("HF_TOKEN"), "{}", err.hint());

    let wrong = Setup::new(Some(secret), Some("hf_wrong")).await;
    let err = wrong.fetch().await.unwrap_err();
    assert!(err.hint().contains("token was refused"), "{}", err.hint());

    let ok = Setup::new(Some(secret), Some(secret)).await;
    assert!(matches!(
        ok.fetch().await.unwrap(),
        FetchOutcome::Downloaded { .. }
    ));
    assert!(!format!("{:?}", ok.client).contains(secret));
    assert!(!format!("{err:?} {err}").contains(secret));
}

#[tokio::test]
async fn missing_file_revision_and_repo_are_told_apart() {
    let s = Setup::new(None, None).await;
    let mut m = s.model.clone();
    m.files[0].path = "nope.gguf".to_owned();
    let err = s
        .client
        .fetch(
            &m,
            &m.files[0],
            &s.dir(),
            std::sync::Arc::new(vlmctl_weights::NoProgress),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WeightsError::HubStatus { status: 404, error_code: Some(c), .. } if c == "EntryNotFound"),
        "{err:?}"
    );
    assert!(err.hint().contains("the lock's `path`"), "{}", err.hint());

    m = s.model.clone();
    m.revision = "0".repeat(40);
    let err = s
        .client
        .fetch(
            &m,
            &m.files[0],
            &s.dir(),
            std::sync::Arc::new(vlmctl_weights::NoProgress),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WeightsError::HubStatus { status: 404, error_code: Some(c), .. } if c == "RevisionNotFound"),
        "{err:?}"
    );

    m = s.model.clone();
    m.repo = "nobody/nothing".to_owned();
    let err = s
        .client
        .fetch(
            &m,
            &m.files[0],
            &s.dir(),
            std::sync::Arc::new(vlmctl_weights::NoProgress),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WeightsError::HubStatus { status: 401, error_code: Some(c), .. } if c == "RepoNotFound"),
        "{err:?}"
    );
    assert!(
        err.hint().contains("check the repository id"),
        "{}",
        err.hint()
    );
}

#[tokio::test]
async fn server_errors_say_retry_later() {
    let s = Setup::new(None, None).await;
    s.hub.set_fault(FILE, Fault::Status(503));
    let err = s.fetch().await.unwrap_err();
    assert!(
        matches!(err, WeightsError::HubStatus { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.hint().contains("try again later"));
    assert!(!s.final_path().exists());
}

#[tokio::test]
async fn dropped_connection_resumes_without_refetching_committed_chunks() {
    let s = Setup::new(None, None).await;
    let size = s.model.files[0].size;
    s.hub.set_fault(FILE, Fault::DropAt(size * 6 / 10));
    let err = s.fetch().await.unwrap_err();
    assert!(matches!(err, WeightsError::Transfer { .. }), "{err:?}");
    assert!(err.hint().contains("resumes"), "{}", err.hint());
    assert!(
        !s.final_path().exists(),
        "nothing under the final name after a failed download"
    );
    let first_run = s.hub.requests().len();

    let outcome = s.fetch().await.unwrap();
    let FetchOutcome::Downloaded { resumed_from } = outcome else {
        panic!("{outcome:?}")
    };
    // hf-hub commits whole 10 MB chunks: the cut at 60 % (15.1 MB) keeps the first chunk.
    assert_eq!(resumed_from, 10_000_000);
    // The second run asked for nothing below the committed prefix but the 1-byte probe.
    let ranges: Vec<u64> = s.hub.requests()[first_run..]
        .iter()
        .filter(|r| r.contains("/cdn/") && !r.contains("bytes=0-0"))
        .filter_map(|r| r.split("bytes=").nth(1)?.split('-').next()?.parse().ok())
        .collect();
    assert!(!ranges.is_empty());
    assert!(
        ranges.iter().all(|&start| start >= resumed_from),
        "{:?}",
        s.hub.requests()
    );
    assert_eq!(std::fs::read(s.final_path()).unwrap(), tiny_model());
}

#[tokio::test]
async fn an_existing_wrong_file_is_never_overwritten() {
    let s = Setup::new(None, None).await;
    std::fs::create_dir_all(s.dir()).unwrap();
    std::fs::write(s.final_path(), b"mine").unwrap();
    let err = s.fetch().await.unwrap_err();
    assert!(
        matches!(err, WeightsError::ExistingFileBad { .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read(s.final_path()).unwrap(), b"mine");
}

#[tokio::test]
async fn adopt_links_a_good_copy_and_rejects_a_bad_one() {
    let s = Setup::new(None, None).await;
    let copy = s.tmp.path().join(FILE);
    std::fs::write(&copy, tiny_model()).unwrap();
    let lock = vlmctl_weights::WeightsLock {
        models: vec![s.model.clone()],
    };
    let (m, f) = vlmctl_weights::match_adoptee(&lock, None, &copy).unwrap();
    let bad = s.tmp.path().join("bad").join(FILE);
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    let mut content = tiny_model().to_vec();
    let last = content.len() - 1;
    content[last] ^= 1;
    std::fs::write(&bad, &content).unwrap();
    let err = vlmctl_weights::adopt(m, f, &bad, &s.dir()).unwrap_err();
    assert!(err.to_string().contains("sha256 mismatch"), "{err}");
    assert!(!s.final_path().exists());

    assert_eq!(
        vlmctl_weights::adopt(m, f, &copy, &s.dir()).unwrap(),
        FetchOutcome::Adopted { linked: true }
    );
    assert_eq!(std::fs::read(s.final_path()).unwrap(), tiny_model());
    assert_eq!(s.hub.bytes_served(), 0, "no download");
}
