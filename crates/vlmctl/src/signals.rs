//! Signals as a job's [`Cancel`]: the one place the CLI turns SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT into "stop now" for whatever job runs (provision, bench, tune, weights, serve). Its
//! own module so that the commands share it without importing each other.

use vlmctl_deploy::events::Cancel;

use crate::exit_codes;
use crate::failure::Failure;

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, registered now (unlike `tokio::signal::ctrl_c`, which
/// registers on first poll), each cancelling the job with its name. SIGHUP is what a dropped
/// SSH session sends, the runbooks' normal way to run this; SIGQUIT (Ctrl-\) would otherwise
/// dump core with containers down. Later signals are absorbed: the undo runs to its end.
pub(crate) fn cancel_on_signals(cancel: &Cancel) -> Result<tokio::task::JoinHandle<()>, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let fail = |e: std::io::Error| {
        Failure::new(
            anyhow::Error::new(e).context("cannot install signal handlers"),
            None,
            exit_codes::FAILURE,
        )
    };
    let mut int = signal(SignalKind::interrupt()).map_err(fail)?;
    let mut term = signal(SignalKind::terminate()).map_err(fail)?;
    let mut hup = signal(SignalKind::hangup()).map_err(fail)?;
    let mut quit = signal(SignalKind::quit()).map_err(fail)?;
    let cancel = cancel.clone();
    Ok(tokio::spawn(async move {
        loop {
            let why = tokio::select! {
                _ = int.recv() => "Ctrl-C (SIGINT)",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP (the terminal or SSH session went away)",
                _ = quit.recv() => "SIGQUIT",
            };
            cancel.cancel(why);
        }
    }))
}
