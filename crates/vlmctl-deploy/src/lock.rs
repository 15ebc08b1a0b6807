//! Taking a deployment's lock for a job: at once, or waiting behind the holder.

use std::path::Path;

use vlmctl_lifecycle::LifecycleError;
use vlmctl_lifecycle::lockfile::{self, DeploymentLock};

use crate::DeployError;
use crate::events::{Cancel, Event, Sink};

/// Takes `deployment`'s lock for `command`: fails at once when another command holds it, or,
/// with `wait`, says whom it waits for and waits (until `cancel`).
pub async fn lock(
    state: &Path,
    deployment: &str,
    command: &str,
    wait: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<DeploymentLock, DeployError> {
    match lockfile::try_acquire(state, deployment, command) {
        Err(LifecycleError::Busy { holder, .. }) if wait => {
            sink.event(Event::WaitingForLock {
                deployment: deployment.to_owned(),
                holder,
            });
            let (state, deployment, command) =
                (state.to_owned(), deployment.to_owned(), command.to_owned());
            // flock(2) blocks a thread; a cancelled wait leaves that thread to the process's end.
            let waiting = tokio::task::spawn_blocking(move || {
                lockfile::acquire_blocking(&state, &deployment, &command)
            });
            tokio::select! {
                got = waiting => match got {
                    Ok(lock) => Ok(lock?),
                    Err(e) => Err(DeployError::Interrupted { why: format!("the lock wait ended: {e}") }),
                },
                why = cancel.cancelled() => Err(DeployError::Interrupted { why }),
            }
        }
        other => Ok(other?),
    }
}
