//! The deployment plan ([`DeploymentPlan`]): a deployment spec, its lock entry, where the files
//! are and the API key, all validated before any I/O. (A bench plan is `vlmctl_bench::plan::Plan`.)

use std::path::{Path, PathBuf};

use vlmctl_lifecycle::spec::{ModelMount, Spec};
use vlmctl_weights::{ModelEntry, Role, VerifyJob};

use crate::DeployError;
use crate::client_error::ClientError;
use crate::pin::PinNeed;
pub use crate::types::MIN_API_KEY_LEN;

/// The `org.vlmctl.lock-sha256` label of a deployment shown before its model is pinned.
pub const UNPINNED: &str = "unpinned";

/// The spec used without `--spec`: the runbook's deployment.
pub const DEFAULT_SPEC: &str = include_str!("../../../docker/panda-llamacpp.toml");

/// How [`DEFAULT_SPEC`] is named in messages.
pub const DEFAULT_SPEC_NAME: &str = "docker/panda-llamacpp.toml (embedded)";

/// Everything validated before any I/O: spec, lock entry, where the files are, the API key.
#[derive(Debug, Clone)]
pub struct DeploymentPlan {
    /// The deployment.
    pub spec: Spec,
    /// Its model's lock entry.
    pub model: ModelEntry,
    /// The models directory (absolute, canonical when it exists) and the files in it.
    pub mount: ModelMount,
    /// What verifying the model means.
    pub jobs: Vec<VerifyJob>,
    /// The API key, read from the variable or the key file the spec names.
    pub api_key: Option<String>,
    /// Why the spec's key file gave no key (kept until a job needs the key: `export` and
    /// `status` need none).
    pub api_key_problem: Option<crate::apikey::KeyFileProblem>,
    /// The interface the spec's `server.host` named, when it named one: `spec.server.host` is
    /// then its address on this machine ([`crate::interface`]).
    pub interface: Option<String>,
    /// Set when the spec's `[model]` is not pinned in the lock (yet, or any more): `model`
    /// and `mount` then come from the intent alone (no sizes, no hashes), which is enough to
    /// show the deployment (`--dry-run`, `export`, `gates`) but not to run it: pin first
    /// ([`crate::pin::pin`]).
    pub unpinned: Option<PinNeed>,
}

/// Where the model files go: a directory given for this run, else the lock's `dir`, else
/// `<models_root>/<name>`.
#[derive(Debug, Clone, Default)]
pub struct Dirs {
    /// `--dir`.
    pub dir: Option<PathBuf>,
    /// The root for models without a `dir`.
    pub models_root: PathBuf,
}

/// The spec at `path`, or the embedded default. A file that does not parse as a spec but has
/// a bench plan's `[[target]]` tables is said to be one.
pub fn load_spec(path: Option<&Path>) -> Result<Spec, DeployError> {
    Ok(match path {
        Some(p) => match Spec::load(p) {
            Err(e @ vlmctl_lifecycle::LifecycleError::SpecInvalid { .. }) => {
                return Err(if looks_like_bench_plan(p) {
                    DeployError::BenchPlanAsSpec { path: p.to_owned() }
                } else {
                    e.into()
                });
            }
            other => other?,
        },
        None => Spec::parse(DEFAULT_SPEC, Path::new(DEFAULT_SPEC_NAME))?,
    })
}

/// Whether the TOML file at `p` has an array of `[[target]]` tables, as a bench plan has.
fn looks_like_bench_plan(p: &Path) -> bool {
    vlmctl_files::read_regular_text(p, vlmctl_files::MAX_TEXT_BYTES, "a deployment spec")
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.get("target").is_some_and(toml::Value::is_array))
}

/// Lock files near the spec and the working directory (`*.lock` in either, and in an
/// `examples/` folder beside either or one level up) that have an entry named `model`, other
/// than `lock` itself: what a forgotten `--lock` should have named.
#[must_use]
pub fn locks_pinning(model: &str, spec: Option<&Path>, lock: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from("."), PathBuf::from("examples")];
    if let Some(d) = spec.and_then(Path::parent) {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        dirs.push(d.to_owned());
        dirs.push(d.join("examples"));
        dirs.push(d.join("..").join("examples"));
    }
    let own = std::fs::canonicalize(lock).ok();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "lock") && p.is_file())
            .collect();
        files.sort();
        for f in files {
            let Ok(real) = std::fs::canonicalize(&f) else {
                continue;
            };
            if own.as_ref() == Some(&real) || seen.contains(&real) {
                continue;
            }
            seen.push(real);
            if vlmctl_weights::WeightsLock::load(&f).is_ok_and(|l| l.model(model).is_some()) {
                out.push(f.strip_prefix("./").map(Path::to_owned).unwrap_or(f));
            }
        }
    }
    out
}

impl DeploymentPlan {
    /// Loads and validates the spec and the lock, resolves the models directory and reads the
    /// API key from the environment variable the spec names. A spec whose `[model]` the lock
    /// does not pin gives a plan with [`DeploymentPlan::unpinned`] set; one that names an entry the lock
    /// does not have is an error.
    pub fn load(spec: Option<&Path>, lock: &Path, dirs: &Dirs) -> Result<Self, DeployError> {
        Self::for_spec(load_spec(spec)?, spec, lock, dirs)
    }

    /// [`DeploymentPlan::load`] for a spec already parsed (from `spec_path`, `None` for the embedded
    /// default): a job that parsed it once (to record it, to find a deployment by name) does not
    /// parse it again.
    pub fn for_spec(
        spec: Spec,
        spec_path: Option<&Path>,
        lock: &Path,
        dirs: &Dirs,
    ) -> Result<Self, DeployError> {
        // A spec that names its model by name only needs a lock with that entry: without one
        // (a forgotten --lock, most often), say which locks nearby have it.
        let not_in_lock = |spec: &Spec| DeployError::ModelNotInLock {
            model: spec.model.clone(),
            spec: spec_path.map_or_else(|| PathBuf::from(DEFAULT_SPEC_NAME), Path::to_owned),
            lock: lock.to_owned(),
            candidates: locks_pinning(&spec.model, spec_path, lock),
        };
        let lock_data = match crate::pin::load_lock(&spec, lock) {
            Err(DeployError::Weights(vlmctl_weights::WeightsError::LockRead {
                source, ..
            })) if source.kind() == std::io::ErrorKind::NotFound && spec.model_intent.is_none() => {
                return Err(not_in_lock(&spec));
            }
            other => other?,
        };
        if let Some(need) = crate::pin::need(&spec, &lock_data, lock) {
            let model = ModelEntry {
                name: need.request.name.clone(),
                repo: need.request.repo.clone(),
                revision: need.request.revision.clone(),
                tracks: None,
                dir: need.request.dir.clone(),
                pinned_from: None,
                files: need
                    .request
                    .files
                    .iter()
                    .map(|(path, role)| vlmctl_weights::LockedFile {
                        path: path.clone(),
                        role: *role,
                        size: 0,
                        sha256: vlmctl_weights::Sha256Digest([0; 32]),
                    })
                    .collect(),
            };
            let mut plan = Self::with_model(spec, model, dirs)?;
            UNPINNED.clone_into(&mut plan.mount.lock_sha256);
            plan.jobs.clear();
            plan.unpinned = Some(need);
            return Ok(plan);
        }
        let Some(model) = lock_data.model(&spec.model).cloned() else {
            return Err(not_in_lock(&spec));
        };
        Self::with_model(spec, model, dirs)
    }

    fn with_model(mut spec: Spec, model: ModelEntry, dirs: &Dirs) -> Result<Self, DeployError> {
        // An interface's name becomes its address here, before anything reads the host.
        let interface = spec.server.interface().map(str::to_owned);
        if let Some(name) = &interface {
            spec.server.host = crate::interface::address_of(name)?.to_string();
        }
        let dir = mount_source(&vlmctl_weights::model_dir(
            &model,
            dirs.dir.as_deref(),
            &dirs.models_root,
        ))?;
        let file_of = |role: Role| {
            model
                .files
                .iter()
                .find(|f| f.role == role)
                .map(|f| f.path.clone())
        };
        let mount = ModelMount {
            dir: dir.clone(),
            model_file: file_of(Role::Model).unwrap_or_default(),
            mmproj_file: file_of(Role::Mmproj),
            lock_sha256: model.sha256(),
        };
        // Read when set; required only by the jobs that start a server (`export` writes the
        // variable's name, `status` needs no key).
        let (api_key, api_key_problem) = match spec
            .server
            .api_key_source()
            .map(|source| crate::apikey::read(&source))
        {
            None => (None, None),
            Some(Ok(key)) => (key, None),
            Some(Err(problem)) => (None, Some(problem)),
        };
        let jobs = VerifyJob::for_model(&model, &dir);
        Ok(Self {
            spec,
            model,
            mount,
            jobs,
            api_key,
            api_key_problem,
            interface,
            unpinned: None,
        })
    }

    /// An error unless the model is pinned: the jobs that fetch, verify or serve files need
    /// their sizes and hashes.
    pub fn require_pinned(&self) -> Result<(), DeployError> {
        match &self.unpinned {
            Some(need) => Err(DeployError::NotPinned {
                need: Box::new(need.clone()),
            }),
            None => Ok(()),
        }
    }

    /// The API key the spec asks for, present and long enough to be a key (a short one would
    /// also be scrubbed out of every other word of every message).
    pub fn require_api_key(&self) -> Result<(), DeployError> {
        use vlmctl_lifecycle::spec::ApiKeySource;
        let Some(source) = self.spec.server.api_key_source() else {
            return Ok(());
        };
        let len = self.api_key.as_deref().map(|k| k.chars().count());
        match source {
            ApiKeySource::Env(var) => match len {
                None => Err(DeployError::ApiKeyMissing { var }),
                Some(len) if len < MIN_API_KEY_LEN => Err(DeployError::ApiKeyTooShort { var, len }),
                Some(_) => Ok(()),
            },
            ApiKeySource::File(path) => {
                if let Some(problem) = &self.api_key_problem {
                    return Err(problem.clone().into_error(&path).into());
                }
                match len.unwrap_or(0) {
                    len if len < MIN_API_KEY_LEN => {
                        Err(ClientError::KeyFileTooShort { path, len }.into())
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// An error when the spec names an interface and `engine` is another host: the name was
    /// resolved on this machine, not there.
    pub fn check_interface_on(&self, engine: &vlmctl_lifecycle::Engine) -> Result<(), DeployError> {
        match &self.interface {
            Some(name) if engine.is_remote() => Err(ClientError::InterfaceUnderHost {
                name: name.clone(),
                host: engine.name().to_owned(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// `http://host:port` of the server (IPv6 in brackets).
    #[must_use]
    pub fn base_url(&self) -> String {
        vlmctl_lifecycle::spec::http_base(&self.spec.server.host, self.spec.server.port)
    }

    /// Where this process reaches the server: [`Self::base_url`] on this machine; on a remote
    /// host (the server bound to that host's loopback), a local port forwarded there over SSH.
    pub async fn reach_url(
        &self,
        engine: &vlmctl_lifecycle::Engine,
    ) -> Result<String, crate::DeployError> {
        let s = &self.spec.server;
        let (host, port) = engine.reach(&s.host, s.port).await?;
        Ok(vlmctl_lifecycle::spec::http_base(&host, port))
    }
}

/// The models directory as verified and as mounted: one absolute path, canonical when it
/// exists (symlinks resolved), so that what is hashed is what the container sees. A relative
/// path would be verified under the working directory but read by Docker as a volume name.
pub fn mount_source(dir: &Path) -> Result<PathBuf, DeployError> {
    let abs = std::path::absolute(dir).map_err(|source| DeployError::ModelsDir {
        dir: dir.to_owned(),
        source,
    })?;
    Ok(std::fs::canonicalize(&abs).unwrap_or(abs))
}

#[cfg(test)]
impl DeploymentPlan {
    /// The embedded spec with an empty model entry whose lock hash is `lock_sha256`: for unit
    /// tests of decisions over a plan.
    pub(crate) fn fixture(lock_sha256: &str) -> Self {
        Self {
            spec: load_spec(None).expect("the embedded spec"),
            model: ModelEntry {
                name: "m".into(),
                repo: "r/r".into(),
                revision: "0".repeat(40),
                tracks: None,
                dir: None,
                pinned_from: None,
                files: Vec::new(),
            },
            mount: ModelMount {
                dir: PathBuf::from("/m"),
                model_file: "m.gguf".into(),
                mmproj_file: None,
                lock_sha256: lock_sha256.to_owned(),
            },
            jobs: Vec::new(),
            api_key: None,
            api_key_problem: None,
            interface: None,
            unpinned: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_models_dir_becomes_one_absolute_path() {
        let cwd = std::env::current_dir().unwrap();
        let got = mount_source(Path::new("no-such-models-dir")).unwrap();
        assert_eq!(got, cwd.join("no-such-models-dir"));
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        assert_eq!(
            mount_source(&tmp.path().join("link")).unwrap(),
            std::fs::canonicalize(&real).unwrap(),
            "the mount is the verified target, not a link that could be swapped"
        );
    }

    /// An interface's name is resolved here only: under `--host` it is refused, naming it
    /// and the host, before anything changes.
    #[test]
    fn an_interface_name_is_refused_on_another_host() {
        use vlmctl_lifecycle::hosts::{Host, Sessions, SshHost};
        let mut plan = DeploymentPlan::fixture("");
        let tmp = tempfile::tempdir().unwrap();
        let local = vlmctl_lifecycle::Engine::local(tmp.path());
        let beast = vlmctl_lifecycle::Engine::new(
            Host::Ssh {
                name: "beast".into(),
                target: SshHost {
                    user: None,
                    host: "beast".into(),
                    port: None,
                },
            },
            tmp.path(),
            Sessions::default(),
        );
        plan.check_interface_on(&beast).unwrap();
        plan.interface = Some("eth0".into());
        plan.check_interface_on(&local).unwrap();
        let e = plan.check_interface_on(&beast).unwrap_err();
        assert!(
            matches!(&e, DeployError::Client(ClientError::InterfaceUnderHost { name, host }) if name == "eth0" && host == "beast"),
            "{e}"
        );
    }

    #[test]
    fn a_server_needs_its_key_present_and_long_enough() {
        let mut plan = DeploymentPlan::fixture("");
        plan.require_api_key().unwrap();
        plan.spec.server.api_key_env = Some("K".into());
        assert!(matches!(
            plan.require_api_key(),
            Err(DeployError::ApiKeyMissing { .. })
        ));
        plan.api_key = Some("k".into());
        assert!(matches!(
            plan.require_api_key(),
            Err(DeployError::ApiKeyTooShort { len: 1, .. })
        ));
        plan.api_key = Some("k".repeat(MIN_API_KEY_LEN));
        plan.require_api_key().unwrap();
    }

    #[test]
    fn the_embedded_spec_is_valid() {
        let spec = load_spec(None).unwrap();
        assert_eq!(spec.name, "panda-llamacpp");
    }
}
