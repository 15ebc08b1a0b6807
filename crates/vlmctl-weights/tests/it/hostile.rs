//! A hub that answers with hostile or broken values (F7, F8 and F12 of the 2026-12-07
//! adversarial pass): nothing it says leaves the repository's URL namespace or reaches the lock
//! unchecked, and each is reported as the hub's error (exit 6), never as the user's lock.

use vlmctl_weights::fake_hub::{FakeHub, FakeRepo, Fault};
use vlmctl_weights::{HubClient, PinRequest, Role, WeightsError};

use crate::common::{COMMIT, FILE, REPO, Setup, repo, tiny_model};

fn request(files: &[&str]) -> PinRequest {
    PinRequest {
        name: "tiny".to_owned(),
        repo: REPO.to_owned(),
        revision: "main".to_owned(),
        files: files
            .iter()
            .map(|f| ((*f).to_owned(), Role::Model))
            .collect(),
        dir: None,
        tracks: None,
    }
}

fn protocol(e: WeightsError) -> String {
    match e {
        WeightsError::HubProtocol { what, .. } => what,
        other => panic!("want a hub protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_sha_that_is_not_a_lowercase_commit_is_a_hub_error_and_never_part_of_a_url() {
    let s = Setup::new(None, None).await;
    let escape = "../../../../../../../../../../etc/passwd";
    assert_eq!(escape.len(), 40);
    for sha in [escape, &"A".repeat(40), &"g".repeat(40)] {
        s.hub.answer_sha(sha);
        let err = s.client.resolve(&request(&[FILE])).await.unwrap_err();
        let what = protocol(err);
        assert!(what.contains("not a commit id"), "{sha}: {what}");
        assert!(what.contains(&format!("{sha:?}")), "{sha}: {what}");
    }
    let requests = s.hub.requests();
    assert!(
        requests.iter().all(|r| r.starts_with("GET /api/models/")),
        "only model info was asked: {requests:?}"
    );
}

#[tokio::test]
async fn malformed_or_absurd_file_metadata_is_a_hub_error_naming_the_value() {
    let s = Setup::new(None, None).await;
    let other = "0123456789abcdef0123456789abcdef01234567";
    let cases: Vec<(&str, String, String)> = vec![
        (
            "x-linked-etag",
            "abc123".into(),
            "malformed x-linked-etag: \"abc123\"".into(),
        ),
        (
            "x-linked-etag",
            "a".repeat(63),
            "malformed x-linked-etag".into(),
        ),
        (
            "x-linked-etag",
            "A".repeat(64),
            "malformed x-linked-etag".into(),
        ),
        (
            "x-linked-size",
            "1e18".into(),
            "malformed x-linked-size: \"1e18\"".into(),
        ),
        (
            "x-linked-size",
            "-5".into(),
            "malformed x-linked-size: \"-5\"".into(),
        ),
        (
            "x-linked-size",
            "+5".into(),
            "malformed x-linked-size: \"+5\"".into(),
        ),
        (
            "x-linked-size",
            "18446744073709551616".into(),
            "malformed x-linked-size".into(),
        ),
        ("x-linked-size", "0".into(), "x-linked-size is 0".into()),
        (
            "x-linked-size",
            "1000000000000000000".into(),
            "more than 2199023255552 bytes (2 TiB)".into(),
        ),
        (
            "x-repo-commit",
            other.into(),
            format!("asked for commit {COMMIT}, the hub's x-repo-commit is {other}"),
        ),
        (
            "x-repo-commit",
            "../../x".into(),
            "malformed x-repo-commit".into(),
        ),
    ];
    for (header, value, want) in cases {
        s.hub.set_fault(
            FILE,
            Fault::Headers(vec![(header.to_owned(), Some(value.clone()))]),
        );
        let err = s.client.resolve(&request(&[FILE])).await.unwrap_err();
        let what = protocol(err);
        assert!(
            what.contains(&want),
            "{header}: {value}: want {want:?} in {what}"
        );
        // Fetching against a lock asks the same questions, with the same answers.
        let err = s.fetch().await.unwrap_err();
        assert!(protocol(err).contains(&want), "fetch: {header}: {value}");
    }
    // No x-linked-etag at all is still what it was: a file that is not stored with LFS.
    s.hub.set_fault(
        FILE,
        Fault::Headers(vec![("x-linked-etag".to_owned(), None)]),
    );
    let err = s.client.resolve(&request(&[FILE])).await.unwrap_err();
    assert!(matches!(err, WeightsError::NotLfs { .. }), "{err:?}");
    // And the honest answer still pins.
    s.hub.clear_faults();
    let entry = s.client.resolve(&request(&[FILE])).await.unwrap();
    assert_eq!(entry.revision, COMMIT);
}

#[tokio::test]
async fn a_path_that_would_change_the_url_is_refused_before_any_request() {
    let hub = FakeHub::start(vec![
        repo(tiny_model(), None),
        FakeRepo {
            id: "evil/repo".to_owned(),
            ..repo(tiny_model(), None)
        },
    ])
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let client = HubClient::new(&hub.endpoint(), None, tmp.path().join("c")).unwrap();
    for path in [
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/evil/repo/resolve/main/tiny-F32.gguf",
        "tiny-F32.gguf?x=1",
        "tiny-F32.gguf#x",
    ] {
        let err = client.resolve(&request(&[path])).await.unwrap_err();
        assert!(
            matches!(&err, WeightsError::BadRepoPath { file, .. } if file == path),
            "{path}: {err:?}"
        );
        let err = client.file_meta(REPO, COMMIT, path).await.unwrap_err();
        assert!(matches!(err, WeightsError::BadRepoPath { .. }), "{path}");
    }
    assert_eq!(hub.requests(), Vec::<String>::new());
}
