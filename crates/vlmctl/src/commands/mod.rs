//! One module per command family; shared plumbing (plan, state dir, hub client) here and
//! shared rendering in [`crate::render`].
pub mod bench;
pub mod export;
pub mod gates;
pub mod provision;
pub mod restore;
pub mod runs;
pub mod serve;
pub mod status;
pub mod teardown;
pub mod tune;
pub mod weights;

use std::path::PathBuf;

use vlmctl_deploy::{Dirs, Plan};
use vlmctl_weights::HubClient;

use crate::cli::{DirArgs, HubArgs, StateArgs};
use crate::env_vars;
use crate::failure::Failure;

/// `$VAR/vlmctl` for an XDG base directory variable, else `~/<fallback>/vlmctl` (the XDG
/// default when the variable is unset or empty).
pub(crate) fn xdg_dir(var: env_vars::Var, fallback: &str) -> std::path::PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || vlmctl_weights::expand_home(fallback),
            std::path::PathBuf::from,
        )
        .join("vlmctl")
}

/// Where the selected host's journals, records and locks live: `--state-dir` (else the XDG
/// state directory) for this machine, its `hosts/<name>` folder for another
/// ([`vlmctl_lifecycle::hosts::Host::state_dir`]).
pub(crate) fn state_dir(args: &StateArgs) -> PathBuf {
    vlmctl_lifecycle::hosts::selected().state_dir(&base_state_dir(args))
}

/// `--state-dir`, else the XDG state directory: this machine's, whatever the host (the history
/// lives here).
pub(crate) fn base_state_dir(args: &StateArgs) -> PathBuf {
    state_dir_or_default(args.state_dir.as_deref())
}

/// Resolves `--host` (else `DOCKER_HOST`, else the current Docker context) and selects it for
/// every Docker call of this process.
pub(crate) fn select_host(flag: Option<&str>) -> Result<(), Failure> {
    let host =
        vlmctl_lifecycle::hosts::resolve(flag, &vlmctl_lifecycle::hosts::docker_config_dir())?;
    vlmctl_lifecycle::hosts::select(host);
    Ok(())
}

fn state_dir_or_default(dir: Option<&std::path::Path>) -> PathBuf {
    dir.map_or_else(
        || xdg_dir(env_vars::XDG_STATE_HOME, "~/.local/state"),
        std::path::Path::to_path_buf,
    )
}

impl crate::cli::StateDirArgs {
    /// `--state-dir`, else the XDG state directory, as [`state_dir`] resolves it.
    pub(crate) fn dir(&self) -> PathBuf {
        state_dir_or_default(self.state_dir.as_deref())
    }
}

/// The validated plan for a spec (or the embedded default), a lock and directories; its API key
/// is registered as a secret the moment it is read.
pub(crate) fn plan(
    spec: Option<&std::path::Path>,
    lock: &std::path::Path,
    dirs: &DirArgs,
) -> Result<Plan, Failure> {
    let plan = Plan::load(
        spec,
        lock,
        &Dirs {
            dir: dirs.dir.clone(),
            models_root: dirs.models_root(),
        },
    )?;
    // A key too short to be one is refused before it is used (`require_api_key`).
    if let Some(k) = &plan.api_key {
        crate::redact::api_key(k);
    }
    Ok(plan)
}

/// The plan for a spec, its `[model]` pinned into the lock first when the lock does not pin it
/// (yet, or any more): resolved against the hub, written, and said on stderr with a reminder
/// to commit the lock. With `locked`, such a change is refused instead (exit 3).
pub(crate) async fn pinned_plan(
    spec: Option<&std::path::Path>,
    lock: &std::path::Path,
    dirs: &DirArgs,
    hub: &HubArgs,
    locked: bool,
    out: &mut crate::Output,
) -> Result<Plan, Failure> {
    let first = plan(spec, lock, dirs)?;
    let Some(need) = &first.unpinned else {
        return Ok(first);
    };
    if locked {
        return Err(vlmctl_deploy::DeployError::LockedChange {
            need: Box::new(need.clone()),
        }
        .into());
    }
    let client = hub_client(hub)?;
    out.progress(&format!("pinning {need}; asking {}", client.endpoint()));
    let pinned = vlmctl_deploy::pin::pin(&client, need).await?;
    out.progress(&crate::render::pinned(&pinned));
    let again = plan(spec, lock, dirs)?;
    // Someone changed the lock between our write and this read.
    again.require_pinned()?;
    Ok(again)
}

impl crate::cli::DeployArgs {
    /// The plan for this deployment's arguments, its model pinned first when the lock does
    /// not pin it ([`pinned_plan`]).
    pub(crate) async fn pinned_plan(&self, out: &mut crate::Output) -> Result<Plan, Failure> {
        pinned_plan(
            self.spec.as_deref(),
            &self.lock.lock,
            &self.dirs,
            &self.hub,
            self.pin.locked,
            out,
        )
        .await
    }
}

/// The hub client from `--endpoint`, `--cache-dir`, `HF_HOME` and the token (registered as a
/// secret).
pub(crate) fn hub_client(args: &HubArgs) -> Result<HubClient, Failure> {
    let env_path = |var: env_vars::Var| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    // A mirror's endpoint may carry credentials (`https://user:pass@mirror/`): the password is
    // a secret like the token, shown nowhere.
    if let Some(password) = vlmctl_weights::endpoint_password(&args.endpoint) {
        crate::redact::secret(&password);
    }
    let hf_home = env_path(env_vars::HF_HOME);
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| vlmctl_weights::default_cache_dir(None, hf_home.clone()));
    let token = std::env::var(env_vars::HF_TOKEN)
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| vlmctl_weights::stored_token(hf_home.as_deref()))
        .inspect(|t| crate::redact::secret(t));
    Ok(HubClient::new(&args.endpoint, token, cache)?)
}
