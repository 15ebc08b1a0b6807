//! The local port a caller is given for a server on another host ([`super::Sessions::reach`]):
//! ours for as long as we run, carrying each connection to the `ssh` forward behind it once that
//! is up, so a connection made while the `ssh` is being started again waits instead of failing.

use std::time::{Duration, Instant};

use super::ssh::Forward;

/// How long a connection to a TCP forward waits for an `ssh` that is being started again.
const RELAY_PATIENCE: Duration = Duration::from_secs(60);

/// Accepts the caller's connections on `front` and carries each to `ssh`'s port `behind` once
/// the forward is up: a connection made while the `ssh` is being started again waits for it
/// (as a Docker request does) instead of being refused, so a bench request is not lost to a
/// blip. Ends when the forward is closed or gone.
pub(super) async fn relay(
    front: tokio::net::TcpListener,
    behind: u16,
    f: std::sync::Weak<Forward>,
) {
    let Some(mut changed) = f.upgrade().map(|f| f.changed.subscribe()) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            a = front.accept() => a,
            c = changed.changed() => {
                if c.is_err() || f.upgrade().is_none_or(|f| f.closed()) {
                    return;
                }
                continue;
            }
        };
        let Ok((mut inbound, _)) = accepted else {
            // Out of file descriptors, say: not a reason to spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let f = f.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + RELAY_PATIENCE;
            let mut outbound = loop {
                let Some(fwd) = f.upgrade() else { return };
                if fwd.usable().await.is_err() {
                    return;
                }
                drop(fwd);
                match tokio::net::TcpStream::connect(("127.0.0.1", behind)).await {
                    Ok(s) => break s,
                    // Its ssh may have ended a moment ago, before anyone saw it: look again.
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => return,
                }
            };
            // No Nagle on either leg, as the bench client and ssh's own forwards have it: a
            // streamed token must not wait for the ACK of the one before (up to 40 ms).
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}
