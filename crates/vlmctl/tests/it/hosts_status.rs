//! `status --all-hosts` visits its hosts at once: hosts that never answer (an `ssh` that waits
//! for a banner that does not come) are all waited for together, not one after another (seen
//! by the hosts themselves: their connections are open at the same moment), and the table
//! keeps its order.

use std::io::Read as _;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{run, vlmctl};

/// How long the test's `ssh` waits for a host's banner (`ConnectTimeout`).
const WAIT_S: u64 = 3;

/// Connections open now to the silent hosts, and the most that were open at once.
#[derive(Default)]
struct Open {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// A TCP port that takes connections and never says a word, as a host whose sshd hangs; each
/// connection counts in `open` until the client closes it.
fn silent_host(open: &Arc<Open>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let open = Arc::clone(open);
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let open = Arc::clone(&open);
            std::thread::spawn(move || {
                let now = open.now.fetch_add(1, Ordering::SeqCst) + 1;
                open.most.fetch_max(now, Ordering::SeqCst);
                // Until ssh gives up on its banner and closes.
                let mut sink = [0_u8; 256];
                while s.read(&mut sink).is_ok_and(|n| n > 0) {}
                open.now.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    port
}

#[test]
fn all_hosts_are_visited_at_once_and_listed_in_order() {
    let config = tempfile::tempdir().expect("docker config");
    let names = ["dead-a", "dead-b", "dead-c", "dead-d"];
    let open = Arc::new(Open::default());
    for (i, name) in names.iter().enumerate() {
        let meta = config.path().join(format!("contexts/meta/{i}"));
        std::fs::create_dir_all(&meta).expect("meta");
        std::fs::write(
            meta.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"ssh://root@127.0.0.1:{}","SkipTLSVerify":false}}}}}}"#,
                silent_host(&open)
            ),
        )
        .expect("meta.json");
    }
    let ssh_config = config.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host *\n  ConnectTimeout {WAIT_S}\n  StrictHostKeyChecking no\n  \
             UserKnownHostsFile /dev/null\n"
        ),
    )
    .expect("ssh config");
    let state = tempfile::tempdir().expect("state");
    let (code, out, err) = run(vlmctl()
        .args(["status", "--all-hosts"])
        .env("DOCKER_CONFIG", config.path())
        .env("VLMCTL_SSH_CONFIG", &ssh_config)
        .env("VLMCTL_STATE_DIR", state.path())
        .current_dir(crate::common::repo_root())
        .stdin(Stdio::null()));
    assert_eq!(code, 5, "hosts did not answer\n{out}\n{err}");
    // One after another, a host's connection closes before the next one opens: at most one at
    // a time. At once, all four are open together.
    assert_eq!(
        open.most.load(Ordering::SeqCst),
        names.len(),
        "the silent hosts were not all waited for at once\n{out}\n{err}"
    );
    let mut order: Vec<&str> = Vec::new();
    for host in out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
    {
        if order.last() != Some(&host) {
            order.push(host);
        }
    }
    let mut want = vec!["local"];
    want.extend(names);
    assert_eq!(
        order, want,
        "this machine first, then the contexts by name:\n{out}"
    );
    for name in names {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains("unreachable: ")),
            "{name} is a row saying why:\n{out}"
        );
    }
}
