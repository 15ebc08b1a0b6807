//! The ports gate: is the server port free on its bind address, and if not, who holds it (a
//! container, by name, or a process, by PID)? What `ss -tlnp` told the runbook's operator.

use std::net::{IpAddr, SocketAddr, TcpListener};

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;

/// Who holds a port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum PortHolder {
    /// A running container (by name).
    Container(String),
    /// A host process.
    Process {
        /// PID.
        pid: u32,
        /// `comm`.
        name: String,
    },
    /// Taken, by something we could not see (another user's process, no permission).
    Unknown,
}

/// `None` when `host:port` can be bound now on `engine`'s host; else who holds it.
pub async fn holder(
    engine: &crate::hosts::Host,
    docker: Option<&Docker>,
    host: IpAddr,
    port: u16,
) -> Option<PortHolder> {
    // On another host this machine's sockets and processes say nothing: the host's containers
    // are what can be seen (a plain process holding the port there shows at launch).
    if matches!(engine, crate::hosts::Host::Ssh { .. }) {
        let d = docker?;
        return container_on_port(d, port).await.map(PortHolder::Container);
    }
    match TcpListener::bind(SocketAddr::new(host, port)) {
        Ok(_) => return None,
        Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => {
            // E.g. the address is not on this host: not "taken", the launch will say more.
            return None;
        }
        Err(_) => {}
    }
    if let Some(d) = docker
        && let Some(name) = container_on_port(d, port).await
    {
        return Some(PortHolder::Container(name));
    }
    Some(process_on_port(port).unwrap_or(PortHolder::Unknown))
}

/// A running container publishing `port`, or on the host network with a process listening on
/// it (matched through the listening socket's owner being in the container's cgroup).
async fn container_on_port(docker: &Docker, port: u16) -> Option<String> {
    let list = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().build()))
        .await
        .ok()?;
    for c in &list {
        let name = c
            .names
            .as_ref()?
            .first()?
            .trim_start_matches('/')
            .to_owned();
        if c.ports
            .iter()
            .flatten()
            .any(|p| p.public_port == Some(port))
        {
            return Some(name);
        }
    }
    // Host-network containers publish nothing: find the socket's process and its container.
    if let Some(PortHolder::Process { pid, .. }) = process_on_port(port) {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let id = crate::gpu::container_id_from_cgroup(&cgroup)?;
        return list
            .iter()
            .find(|c| c.id.as_deref() == Some(id.as_str()))
            .and_then(|c| {
                c.names
                    .as_ref()?
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
            });
    }
    None
}

/// The process owning the listening socket on `port`, from `/proc/net/tcp{,6}` and the
/// `socket:[inode]` links under `/proc/*/fd`.
fn process_on_port(port: u16) -> Option<PortHolder> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| listening_inodes(&t, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && targets.iter().any(|t| link.as_os_str() == t.as_str())
            {
                let name = std::fs::read_to_string(proc_entry.path().join("comm"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default();
                return Some(PortHolder::Process { pid, name });
            }
        }
    }
    None
}

/// Inodes of sockets listening (state `0A`) on `port` in a `/proc/net/tcp` table.
#[must_use]
pub fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port && f.get(3) == Some(&"0A")).then(|| f.get(9).map(|s| (*s).to_owned()))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:2CAB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0\n   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n   2: 0100007F:2CAB 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n";

    #[test]
    fn proc_net_tcp_is_read_right() {
        assert_eq!(listening_inodes(TABLE, 11435), vec!["123456"]);
        assert_eq!(listening_inodes(TABLE, 8080), vec!["777"]);
        assert!(listening_inodes(TABLE, 1).is_empty());
    }

    #[tokio::test]
    async fn a_port_we_hold_is_reported_with_our_pid() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = holder(
            &crate::hosts::Host::Local,
            None,
            "127.0.0.1".parse().unwrap(),
            port,
        )
        .await;
        assert!(
            matches!(&h, Some(PortHolder::Process { pid, .. }) if *pid == std::process::id()),
            "{h:?}"
        );
        drop(l);
        assert_eq!(
            holder(
                &crate::hosts::Host::Local,
                None,
                "127.0.0.1".parse().unwrap(),
                port
            )
            .await,
            None
        );
    }
}
