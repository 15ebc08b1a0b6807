//! Pin on first use, as a job step: the plan for a spec, its `[model]` pinned into the lock
//! first when the lock does not pin it (yet, or any more) — resolved against the hub, written,
//! and said ([`Event::Pinning`], [`Event::Pinned`]). Under `--locked` such a change is refused.
//! The spec is parsed once by the caller; only the lock is read again after the write.

use std::path::Path;

use vlmctl_lifecycle::spec::Spec;
use vlmctl_weights::HubClient;

use crate::events::{Event, Sink};
use crate::{DeployError, Dirs, Plan};

/// The plan for `spec` (read from `spec_path`, `None`: the embedded default) with the lock at
/// `lock`, pinned first when needed: plan, need, `locked`, hub, pin, plan again, and an error if
/// someone changed the lock between the write and the read.
pub async fn pinned_plan(
    spec: Spec,
    spec_path: Option<&Path>,
    lock: &Path,
    dirs: &Dirs,
    hub: &HubClient,
    locked: bool,
    sink: &mut dyn Sink,
) -> Result<Plan, DeployError> {
    let first = Plan::for_spec(spec.clone(), spec_path, lock, dirs)?;
    let Some(need) = &first.unpinned else {
        return Ok(first);
    };
    if locked {
        return Err(DeployError::LockedChange {
            need: Box::new(need.clone()),
        });
    }
    sink.event(Event::Pinning {
        need: need.to_string(),
        endpoint: hub.endpoint().to_owned(),
    });
    let pinned = crate::pin::pin(hub, need).await?;
    sink.event(Event::Pinned { pinned });
    let again = Plan::for_spec(spec, spec_path, lock, dirs)?;
    // Someone changed the lock between our write and this read.
    again.require_pinned()?;
    Ok(again)
}
