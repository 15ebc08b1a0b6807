//! Taking a deployment's lock for a job: at once, or waiting behind the holder.

use std::path::Path;

use vlmctl_lifecycle::LifecycleError;
use vlmctl_lifecycle::lockfile::{self, DeploymentLock};

use crate::DeployError;
use crate::events::{Cancel, Event, Sink};

/// Takes the lock a tune of `deployment` holds ([`crate::tune::lock_name`]), so that `command`
/// does not act in the middle of a tune; taken before the deployment's own lock, in the order
/// a tune takes them. A busy lock is reported as the deployment's, naming who holds it.
pub async fn tune_guard(
    state: &Path,
    deployment: &str,
    command: &str,
    wait: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<DeploymentLock, DeployError> {
    let name = crate::tune::lock_name(deployment);
    acquire(state, &name, command, wait, sink, cancel)
        .await
        .map_err(|e| match e {
            DeployError::Lifecycle(LifecycleError::Busy { holder, lock, .. }) => {
                DeployError::Lifecycle(LifecycleError::Busy {
                    deployment: deployment.to_owned(),
                    holder,
                    lock,
                })
            }
            other => other,
        })
}

/// Takes `deployment`'s lock for `command`: fails at once when another command holds it, or,
/// with `wait`, says whom it waits for and waits (until `cancel`).
pub async fn acquire(
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
