//! A fake hub holding one synthetic GGUF, and a lock entry for it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use vlmctl_weights::fake_hub::{FakeHub, FakeRepo};
use vlmctl_weights::{HubClient, LockedFile, ModelEntry, NoProgress, Role, Sha256Digest, gguf};

pub const REPO: &str = "vlmctl-test/tiny-GGUF";
pub const COMMIT: &str = "c0ffee0000000000000000000000000000000001";
pub const FILE: &str = "tiny-F32.gguf";

/// ~25 MB: three of hf-hub's 10 MB chunks, so resume has something to skip.
pub fn tiny_model() -> Bytes {
    Bytes::from(gguf::synthetic(&[
        ("w", &[1024, 6144], 0),
        ("b", &[256], 12),
    ]))
}

pub fn entry(content: &[u8], revision: &str) -> ModelEntry {
    ModelEntry {
        name: "tiny".to_owned(),
        repo: REPO.to_owned(),
        revision: revision.to_owned(),
        tracks: None,
        dir: None,
        pinned_from: None,
        files: vec![LockedFile {
            path: FILE.to_owned(),
            role: Role::Model,
            size: content.len() as u64,
            sha256: Sha256Digest(Sha256::digest(content).into()),
        }],
    }
}

pub fn repo(content: Bytes, token: Option<&str>) -> FakeRepo {
    FakeRepo {
        id: REPO.to_owned(),
        commit: COMMIT.to_owned(),
        token: token.map(str::to_owned),
        files: BTreeMap::from([(FILE.to_owned(), content)]),
    }
}

pub struct Setup {
    pub hub: FakeHub,
    pub client: HubClient,
    pub model: ModelEntry,
    pub tmp: tempfile::TempDir,
}

impl Setup {
    pub async fn new(token: Option<&str>, client_token: Option<&str>) -> Self {
        let content = tiny_model();
        let hub = FakeHub::start(vec![repo(content.clone(), token)])
            .await
            .expect("start hub");
        let tmp = tempfile::tempdir().expect("tempdir");
        let client = HubClient::new(
            &hub.endpoint(),
            client_token.map(str::to_owned),
            tmp.path().join("hf-cache"),
        )
        .expect("client");
        Self {
            hub,
            client,
            model: entry(&content, COMMIT),
            tmp,
        }
    }

    pub fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("models")
    }

    pub async fn fetch(
        &self,
    ) -> Result<vlmctl_weights::FetchOutcome, vlmctl_weights::WeightsError> {
        self.client
            .fetch(
                &self.model,
                &self.model.files[0],
                &self.dir(),
                Arc::new(NoProgress),
            )
            .await
    }

    pub fn final_path(&self) -> std::path::PathBuf {
        self.dir().join(FILE)
    }
}

/// Every file name under `dir`, recursively, relative.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            }
        }
    }
    out.sort();
    out
}
