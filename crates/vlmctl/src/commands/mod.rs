//! One module per command family; shared plumbing (plan, state dir, hub client) here and
//! shared rendering in [`crate::render`].
pub mod bench;
pub mod client;
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

use vlmctl_deploy::DeploymentPlan;
use vlmctl_weights::HubClient;

use crate::cli::{DirArgs, HubArgs, StateArgs};
use crate::failure::Failure;
use vlmctl_base::env as env_vars;

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

/// `--state-dir`, else the XDG state directory: this machine's, whatever the host (the history
/// lives here).
pub(crate) fn base_state_dir(args: &StateArgs) -> PathBuf {
    state_dir_or_default(args.state_dir.as_deref())
}

/// The engine the command's jobs change: `--host` (else `DOCKER_HOST`, else the current Docker
/// context) resolved, its journals, records and locks under `--state-dir` (else the XDG state
/// directory) for this machine, in its `hosts/<name>` folder there for another
/// ([`vlmctl_lifecycle::hosts::Host::state_dir`]).
pub(crate) fn engine(
    args: &StateArgs,
    sessions: &vlmctl_lifecycle::hosts::Sessions,
) -> Result<vlmctl_lifecycle::Engine, Failure> {
    Ok(vlmctl_lifecycle::Engine::resolve(
        args.host.as_deref(),
        &vlmctl_lifecycle::hosts::docker_config_dir(),
        &base_state_dir(args),
        sessions.clone(),
    )?)
}

/// The XDG state directory (no `--state-dir` to take).
pub(crate) fn default_state_dir() -> PathBuf {
    state_dir_or_default(None)
}

fn state_dir_or_default(dir: Option<&std::path::Path>) -> PathBuf {
    dir.map_or_else(
        || xdg_dir(env_vars::XDG_STATE_HOME, "~/.local/state"),
        std::path::Path::to_path_buf,
    )
}

impl crate::cli::StateDirArgs {
    /// `--state-dir`, else the XDG state directory, as [`base_state_dir`] resolves it.
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
) -> Result<DeploymentPlan, Failure> {
    let plan = DeploymentPlan::load(spec, lock, &dirs.dirs())?;
    // A key too short to be one is refused before it is used (`require_api_key`).
    if let Some(k) = &plan.api_key {
        crate::redact::api_key(k);
    }
    Ok(plan)
}

/// The plan for a spec, its `[model]` pinned into the lock first when the lock does not pin it
/// (yet, or any more): the library's [`vlmctl_deploy::weights::pinned_plan`], its progress on
/// stderr with a reminder to commit the lock. With `locked`, such a change is refused (exit 3).
pub(crate) async fn pinned_plan(
    spec: Option<&std::path::Path>,
    lock: &std::path::Path,
    dirs: &DirArgs,
    hub: &HubClient,
    locked: bool,
    out: &mut crate::Output,
) -> Result<DeploymentPlan, Failure> {
    let parsed = vlmctl_deploy::plan::load_spec(spec)?;
    pinned_plan_of(parsed, spec, lock, dirs, hub, locked, out).await
}

/// [`pinned_plan`] for a spec already parsed (from `spec_path`): it is not parsed again.
pub(crate) async fn pinned_plan_of(
    spec: vlmctl_lifecycle::spec::Spec,
    spec_path: Option<&std::path::Path>,
    lock: &std::path::Path,
    dirs: &DirArgs,
    hub: &HubClient,
    locked: bool,
    out: &mut crate::Output,
) -> Result<DeploymentPlan, Failure> {
    let plan = vlmctl_deploy::weights::pinned_plan(
        spec,
        spec_path,
        lock,
        &dirs.dirs(),
        hub,
        locked,
        &mut |e: vlmctl_deploy::events::Event| {
            if let Some(line) = crate::render::job_line(&e) {
                out.progress(&line);
            }
        },
    )
    .await?;
    // A key too short to be one is refused before it is used (`require_api_key`).
    if let Some(k) = &plan.api_key {
        crate::redact::api_key(k);
    }
    Ok(plan)
}

impl crate::cli::DeployArgs {
    /// The plan for this deployment's arguments, its model pinned first when the lock does
    /// not pin it ([`pinned_plan`]).
    pub(crate) async fn pinned_plan(
        &self,
        hub: &HubClient,
        out: &mut crate::Output,
    ) -> Result<DeploymentPlan, Failure> {
        pinned_plan(
            self.spec.as_deref(),
            &self.lock.lock,
            &self.dirs,
            hub,
            self.pin.locked,
            out,
        )
        .await
    }

    /// [`Self::pinned_plan`] for its spec already parsed.
    pub(crate) async fn pinned_plan_of(
        &self,
        spec: vlmctl_lifecycle::spec::Spec,
        hub: &HubClient,
        out: &mut crate::Output,
    ) -> Result<DeploymentPlan, Failure> {
        pinned_plan_of(
            spec,
            self.spec.as_deref(),
            &self.lock.lock,
            &self.dirs,
            hub,
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

/// A `[y/N]` question at the terminal, answered yes only by `y`; without a terminal (stdin not
/// one) the answer is no. The line is read on a blocking thread, so that Ctrl-C at the prompt
/// ends the job at once. Used by `provision` (stop a conflict?) and `teardown` (start one
/// again?).
pub(crate) async fn ask_yes_no(question: String) -> bool {
    use std::io::{BufRead as _, IsTerminal as _};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    crate::redact::write_unfinished(&question);
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).is_ok()
            && line.trim().eq_ignore_ascii_case("y")
    })
    .await
    .unwrap_or(false)
}
