//! `status --all-hosts` visits its hosts at once: hosts that never answer (an `ssh` that waits
//! for a banner that does not come) cost one wait together, not one after another, and the
//! table keeps its order.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{run, vlmctl};

/// How long the test's `ssh` waits for a host's banner (`ConnectTimeout`).
const WAIT_S: u64 = 3;

/// A TCP port that takes connections and never says a word, as a host whose sshd hangs.
fn silent_host() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

#[test]
fn all_hosts_are_visited_at_once_and_listed_in_order() {
    let config = tempfile::tempdir().expect("docker config");
    let names = ["dead-a", "dead-b", "dead-c", "dead-d"];
    for (i, name) in names.iter().enumerate() {
        let meta = config.path().join(format!("contexts/meta/{i}"));
        std::fs::create_dir_all(&meta).expect("meta");
        std::fs::write(
            meta.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"ssh://root@127.0.0.1:{}","SkipTLSVerify":false}}}}}}"#,
                silent_host()
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
    let started = Instant::now();
    let (code, out, err) = run(vlmctl()
        .args(["status", "--all-hosts"])
        .env("DOCKER_CONFIG", config.path())
        .env("VLMCTL_SSH_CONFIG", &ssh_config)
        .env("VLMCTL_STATE_DIR", state.path())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .stdin(Stdio::null()));
    let took = started.elapsed();
    assert_eq!(code, 5, "hosts did not answer\n{out}\n{err}");
    // Each host was waited for (ssh gave up on its banner), and one after another would take
    // at least 4 waits; at once, about one.
    assert!(
        took >= Duration::from_secs(WAIT_S),
        "took {took:?}: no host was waited for"
    );
    assert!(
        took < Duration::from_secs(WAIT_S * 3),
        "took {took:?} for {} silent hosts of {WAIT_S} s each: not visited at once",
        names.len()
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
