//! Talking to the Hugging Face hub: metadata without downloading (for `weights lock` and to
//! tell "upstream changed" from "transfer corrupted"), and downloads through `hf-hub`.
//!
//! Why `hf-hub` 0.4 and not 1.0: 0.4 (`api::tokio`) downloads in ranged chunks and resumes an
//! interrupted download from `blobs/<etag>.sync.part` and its committed-bytes marker; 1.0 is a
//! rewrite that restarts downloads from zero and switches to the Xet protocol when the server
//! offers it (232 more crates). Users pull multi-GB files over home links; resume matters more.
//! 0.4 never checks sha256 or etag against the content: that check is ours ([`crate::fetch`]).

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap};

use crate::{LockedFile, ModelEntry, Role, Sha256Digest, WeightsError};

/// The official hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where and how to reach the hub, and where its cache lives. The token is never printed: the
/// `Debug` form redacts it.
#[derive(Clone)]
pub struct HubClient {
    pub(crate) endpoint: String,
    pub(crate) token: Option<String>,
    pub(crate) cache_dir: PathBuf,
    http: reqwest::Client,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// What to pin: a lock entry's name, source and files, before the hub resolved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRequest {
    /// The entry's name.
    pub name: String,
    /// Hub repository, `org/name`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Paths in the repository, with their roles.
    pub files: Vec<(String, Role)>,
    /// The entry's `dir`.
    pub dir: Option<String>,
    /// The branch or tag to record as the entry's `tracks` when `revision` is a commit that was
    /// itself resolved from one (a re-pin at the entry's commit); else `revision` when it is a
    /// branch or tag.
    pub tracks: Option<String>,
}

impl PinRequest {
    /// Checks what goes into the hub's URLs before any request: the repository id, the
    /// revision and each file's path, by the rules the spec and the lock apply to theirs.
    pub fn check(&self) -> Result<(), WeightsError> {
        check_repo_id(&self.repo)?;
        check_revision(&self.revision)?;
        for (path, _) in &self.files {
            check_repo_path(path).map_err(|why| WeightsError::BadRepoPath {
                file: path.clone(),
                why,
            })?;
        }
        Ok(())
    }
}

/// What the hub says about one file at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// The commit the revision resolved to (`x-repo-commit`).
    pub commit: String,
    /// Content sha256 for LFS files (`x-linked-etag`); `None` for small git files.
    pub sha256: Option<Sha256Digest>,
    /// Size in bytes (`x-linked-size`, else `content-length`).
    pub size: u64,
}

impl HubClient {
    /// A client for `endpoint` (like `HF_ENDPOINT`), authenticating with `token` (like
    /// `HF_TOKEN`), caching under `cache_dir` (like `HF_HUB_CACHE`, the official layout
    /// `models--org--name/{blobs,refs,snapshots}`).
    pub fn new(
        endpoint: &str,
        token: Option<String>,
        cache_dir: PathBuf,
    ) -> Result<Self, WeightsError> {
        let http = reqwest::Client::builder()
            // The hub answers resolve requests for LFS files with a redirect to its CDN; the
            // metadata we want is on the redirect itself.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vlmctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| WeightsError::HubUnreachable {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            cache_dir,
            http,
        })
    }

    /// The endpoint, for messages.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The hub cache directory.
    #[must_use]
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(url);
        match &self.token {
            Some(t) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            None => req,
        }
    }

    /// Resolves `revision` (branch, tag or commit) of `repo` to a commit sha.
    pub async fn commit_of(&self, repo: &str, revision: &str) -> Result<String, WeightsError> {
        check_repo_id(repo)?;
        check_revision(revision)?;
        // A branch like `refs/pr/1` is one path segment to the hub.
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            revision.replace('/', "%2F")
        );
        let resp = self.send(self.get(&url), repo, None).await?;
        let body = self.read_bounded(resp, &url).await?;
        let info: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| WeightsError::HubProtocol {
                url: url.clone(),
                what: format!("model info is not JSON: {e}"),
            })?;
        // The commit goes into URLs and into the lock: anything but a commit id is the hub's
        // fault (a `../..` would leave the repository's namespace), never the user's lock.
        match info["sha"].as_str() {
            Some(sha) if is_commit(sha) => Ok(sha.to_owned()),
            Some(sha) => Err(WeightsError::HubProtocol {
                url,
                what: format!(
                    "model info's `sha` is not a commit id (40 lowercase hex digits): {}",
                    shown(sha)
                ),
            }),
            None => Err(WeightsError::HubProtocol {
                url,
                what: "model info has no `sha`".to_owned(),
            }),
        }
    }

    /// A lock entry for `request`: its revision resolved to a commit, each file's size and
    /// sha256 read from the hub's metadata at that commit. Nothing is downloaded.
    pub async fn resolve(&self, request: &PinRequest) -> Result<ModelEntry, WeightsError> {
        request.check()?;
        let commit = self.commit_of(&request.repo, &request.revision).await?;
        let is_commit = is_commit(&request.revision);
        if is_commit && commit != request.revision {
            return Err(WeightsError::HubProtocol {
                url: format!(
                    "{}/api/models/{}/revision/{}",
                    self.endpoint, request.repo, request.revision
                ),
                what: format!(
                    "asked for commit {}, the hub answered {commit}",
                    request.revision
                ),
            });
        }
        let mut files = Vec::new();
        for (path, role) in &request.files {
            let meta = self.file_meta(&request.repo, &commit, path).await?;
            let Some(sha256) = meta.sha256 else {
                return Err(WeightsError::NotLfs {
                    repo: request.repo.clone(),
                    file: path.clone(),
                    commit,
                });
            };
            files.push(LockedFile {
                path: path.clone(),
                role: *role,
                size: meta.size,
                sha256,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ModelEntry {
            name: request.name.clone(),
            repo: request.repo.clone(),
            revision: commit,
            tracks: request
                .tracks
                .clone()
                .or_else(|| (!is_commit).then(|| request.revision.clone())),
            dir: request.dir.clone(),
            pinned_from: None,
            files,
        })
    }

    /// Metadata of one file, without downloading it.
    pub async fn file_meta(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<RemoteFile, WeightsError> {
        // The lock and the spec refuse paths that could change the URL (`%`, `?`, `#`, `..`);
        // checked again here, as this is where the path becomes part of a URL.
        check_repo_id(repo)?;
        check_revision(revision)?;
        check_repo_path(file).map_err(|why| WeightsError::BadRepoPath {
            file: file.to_owned(),
            why,
        })?;
        let url = format!("{}/{repo}/resolve/{revision}/{file}", self.endpoint);
        let resp = self.send(self.get(&url), repo, Some(file)).await?;
        let meta = parse_meta(resp.headers()).map_err(|what| WeightsError::HubProtocol {
            url: url.clone(),
            what,
        })?;
        // Asked at a commit, the answer must be about that commit: the lock pins repo@commit.
        if is_commit(revision) && meta.commit != revision {
            return Err(WeightsError::HubProtocol {
                url,
                what: format!(
                    "asked for commit {revision}, the hub's x-repo-commit is {}",
                    meta.commit
                ),
            });
        }
        Ok(meta)
    }

    /// A metadata answer's body, read in pieces up to [`MAX_METADATA_BYTES`]: a hub that sends
    /// more (or does not stop) is refused before it fills the memory. By hand because reqwest's
    /// `bytes()`/`json()` read the whole body, whatever its size.
    async fn read_bounded(
        &self,
        mut resp: reqwest::Response,
        url: &str,
    ) -> Result<Vec<u8>, WeightsError> {
        let too_big = || WeightsError::HubProtocol {
            url: url.to_owned(),
            what: format!(
                "the answer is longer than {} MiB: no model info is that big",
                MAX_METADATA_BYTES >> 20
            ),
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_METADATA_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(piece) =
            resp.chunk()
                .await
                .map_err(|source| WeightsError::HubUnreachable {
                    endpoint: self.endpoint.clone(),
                    source,
                })?
        {
            if body.len() + piece.len() > MAX_METADATA_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        repo: &str,
        file: Option<&str>,
    ) -> Result<reqwest::Response, WeightsError> {
        let resp = req
            .send()
            .await
            .map_err(|source| WeightsError::HubUnreachable {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            return Ok(resp);
        }
        Err(status_error(
            status,
            resp.headers(),
            repo,
            file,
            self.token.is_some(),
        ))
    }
}

pub(crate) fn status_error(
    status: StatusCode,
    headers: &HeaderMap,
    repo: &str,
    file: Option<&str>,
    sent_token: bool,
) -> WeightsError {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    WeightsError::HubStatus {
        repo: repo.to_owned(),
        file: file.map(str::to_owned),
        status: status.as_u16(),
        error_code: header("x-error-code"),
        sent_token,
    }
}

/// The most vlmctl reads of one metadata answer (model info): 16 MiB, hundreds of times a real
/// one (a repository with thousands of files lists them in a few hundred KiB).
pub const MAX_METADATA_BYTES: usize = 16 << 20;

/// The largest file vlmctl pins: 2 TiB, twice the largest GGUF published so far. A bigger
/// `x-linked-size` is a broken or hostile hub, not a model.
pub const MAX_FILE_SIZE: u64 = 2 << 40;

/// A commit id as the hub writes it: 40 lowercase hex digits.
#[must_use]
pub fn is_commit(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A path inside a repository, as it may go into a resolve URL: relative, plain components
/// (no `.`, `..`), and none of `%`, `?`, `#` (a URL parser reads `%2e%2e` as `..`, and `?`, `#`
/// end the path), backslashes or control characters.
pub fn check_repo_path(p: &str) -> Result<(), &'static str> {
    crate::lock::check_relative_path(p)
}

/// A hub repository id as it may go into a URL: `org/name`, each part letters, digits, '.',
/// '_', '-' and not starting with '.' (the lock's rule, and the spec's: `vlmctl_lifecycle::spec`
/// checks `[model] repo` the same way), at most 200 characters.
pub fn check_repo_id(repo: &str) -> Result<(), WeightsError> {
    let ok = repo.len() <= 200
        && repo.split('/').count() == 2
        && repo.split('/').all(crate::lock::valid_name);
    if ok {
        Ok(())
    } else {
        Err(WeightsError::BadPinArgument {
            field: "repo",
            value: shown(repo),
            what: "a hub repository id of the form \"org/name\"",
        })
    }
}

/// A revision as it may go into a URL: a branch, tag or commit name as the spec's `[model]
/// revision` allows (`vlmctl_lifecycle::spec`, the same rule): letters, digits, '.', '_', '-',
/// '/', not starting with '-', '/' or '.', not ending with '/', no "..", at most 255 characters.
pub fn check_revision(revision: &str) -> Result<(), WeightsError> {
    if crate::lock::valid_revision(revision) {
        Ok(())
    } else {
        Err(WeightsError::BadPinArgument {
            field: "revision",
            value: shown(revision),
            what: "a branch, tag or commit name",
        })
    }
}

/// A value from the hub, as a message may show it: quoted, escaped, at most 80 characters.
fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(80).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    format!("{s:?}")
}

fn parse_meta(h: &HeaderMap) -> Result<RemoteFile, String> {
    let get = |k: &str| -> Result<Option<String>, String> {
        h.get(k)
            .map(|v| {
                v.to_str()
                    .map(|v| v.trim_matches('"').to_owned())
                    .map_err(|_| format!("malformed {k}: not visible ASCII"))
            })
            .transpose()
    };
    let commit = get("x-repo-commit")?.ok_or("no x-repo-commit header")?;
    if !is_commit(&commit) {
        return Err(format!(
            "malformed x-repo-commit (not 40 lowercase hex digits): {}",
            shown(&commit)
        ));
    }
    // No x-linked-etag: not an LFS file (the caller says so); one that is not a sha256 is the
    // hub's error, not the file's.
    let sha256 = match get("x-linked-etag")? {
        None => None,
        Some(e) => Some(
            e.parse::<Sha256Digest>()
                .map_err(|why| format!("malformed x-linked-etag: {} ({why})", shown(&e)))?,
        ),
    };
    let (key, value) = match get("x-linked-size")? {
        Some(v) => ("x-linked-size", v),
        None => (
            CONTENT_LENGTH.as_str(),
            get(CONTENT_LENGTH.as_str())?.ok_or("no x-linked-size or content-length header")?,
        ),
    };
    // Digits only: u64's parser would take a leading `+`.
    let size = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| format!("malformed {key}: {}", shown(&value)))?;
    if sha256.is_some() && size == 0 {
        return Err(format!(
            "{key} is 0: an LFS file of no bytes cannot be a GGUF"
        ));
    }
    if size > MAX_FILE_SIZE {
        return Err(format!(
            "{key} {size} is more than {MAX_FILE_SIZE} bytes (2 TiB): no model file is that big"
        ));
    }
    Ok(RemoteFile {
        commit,
        sha256,
        size,
    })
}

/// The password in an endpoint URL (a mirror's `https://user:pass@host/`): a secret, to be kept
/// out of every message, like the token.
#[must_use]
pub fn endpoint_password(endpoint: &str) -> Option<String> {
    reqwest::Url::parse(endpoint)
        .ok()?
        .password()
        .map(str::to_owned)
}

/// `models--org--name` under the cache, as the official client lays it out.
#[must_use]
pub fn repo_cache_dir(cache_dir: &Path, repo: &str) -> PathBuf {
    cache_dir.join(format!("models--{}", repo.replace('/', "--")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #21: what goes into the hub's URLs from the command line obeys the spec's and the
    /// lock's rules.
    #[test]
    fn repo_ids_and_revisions_that_would_change_a_url_are_refused() {
        for good in ["org/name", "unsloth/gemma-4-E2B-it-GGUF", "a.b/c_d-1"] {
            assert!(check_repo_id(good).is_ok(), "{good}");
        }
        for bad in [
            "../../../etc/passwd#",
            "org/%2e%2e",
            "org/..",
            "org",
            "a/b/c",
            "/name",
            "org/na me",
            "org/.hidden",
        ] {
            assert!(
                matches!(
                    check_repo_id(bad),
                    Err(WeightsError::BadPinArgument { field: "repo", .. })
                ),
                "{bad}"
            );
        }
        for good in ["main", "v1.2", "refs/pr/1", &"ab".repeat(20)] {
            assert!(check_revision(good).is_ok(), "{good}");
        }
        for bad in [
            "", "%2e%2e", "..", "../main", "a/../b", "-x", "/x", "x/", "a?b", "a#b",
        ] {
            assert!(
                matches!(
                    check_revision(bad),
                    Err(WeightsError::BadPinArgument {
                        field: "revision",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
