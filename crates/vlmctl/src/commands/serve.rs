//! `vlmctl serve`: checks its arguments (every spec and plan loads, the address and key go
//! together), then runs the service until a signal.

use vlmctl_deploy::Dirs;
use vlmctl_deploy::events::Cancel;

use crate::cli::ServeArgs;
use crate::failure::Failure;
use crate::signals::cancel_on_signals;
use crate::{Output, exit_codes};
use vlmctl_base::env as env_vars;

/// `vlmctl serve`.
pub async fn serve(
    args: &ServeArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let cancel = Cancel::new();
    let _signals = cancel_on_signals(&cancel)?;
    let api_key = std::env::var(env_vars::VLMCTL_SERVE_API_KEY)
        .ok()
        .filter(|k| !k.is_empty());
    // A key too short to be one is refused by the service before it listens.
    if let Some(k) = &api_key {
        crate::redact::api_key(k);
    }
    // Bad input fails now, not at the first click.
    for spec in &args.specs {
        super::plan(Some(spec), &args.lock.lock, &args.dirs)?;
    }
    for plan in &args.plans {
        vlmctl_bench::plan::LoadedPlan::load(plan)?;
    }
    let base = super::base_state_dir(&args.state);
    let cfg = vlmctl_serve::Config {
        bind: std::net::SocketAddr::new(args.bind, args.port),
        api_key,
        store: args
            .store
            .store
            .clone()
            .unwrap_or_else(|| vlmctl_store::default_path(&base)),
        engine: engine.clone(),
        specs: args.specs.clone(),
        lock: args.lock.lock.clone(),
        dirs: Dirs {
            dir: args.dirs.dir.clone(),
            models_root: args.dirs.models_root(),
        },
        hub: super::hub_client(&args.hub)?,
        plans: args.plans.clone(),
        host: vlmctl_deploy::history::host_name(engine),
        secrets: crate::redact::secrets().clone(),
        limits: vlmctl_serve::Limits::default(),
    };
    let store = cfg.store.clone();
    let stopped = vlmctl_serve::serve(cfg, cancel.clone(), |addr| {
        out.progress(&format!(
            "vlmctl serve: http://{addr}/ (history: {}; Ctrl-C or SIGTERM stops it)",
            store.display()
        ));
    })
    .await?;
    if let Some(why) = cancel.reason() {
        out.progress(&format!("vlmctl serve stopped: {why}"));
    }
    if stopped.worker_cut_off {
        return Err(Failure::new(
            anyhow::anyhow!(
                "the action in progress did not end within {} s of the stop and was cut off",
                vlmctl_serve::WORKER_GRACE.as_secs()
            ),
            Some(
                "a relaunch may have left containers stopped: `vlmctl restore` brings back \
                 what its journal names"
                    .to_owned(),
            ),
            exit_codes::INTERRUPTED,
        ));
    }
    Ok(exit_codes::SUCCESS)
}
