//! The GPU memory gate, from `nvidia-smi`. Parsing and the decision are pure; running the binary
//! is a thin wrapper (the path is passed in, so tests use a stub that replays recorded output).
//!
//! Facts designed for: on a GB10 (unified memory) `memory.used` and friends read
//! `[Not Supported]` or `[N/A]`, while `--query-compute-apps` still lists per-process memory; a
//! CPU-only host has no `nvidia-smi` at all.
//!
//! On another host (`--host`), [`container`] runs the same queries there, in a container in
//! that host's PID namespace, and reads that host's cgroups and `/proc/meminfo`.

use std::path::Path;

pub mod container;

/// `--query-gpu` fields, in order.
pub const GPU_QUERY: &str =
    "--query-gpu=name,memory.total,memory.used,memory.free,compute_cap,driver_version";
/// `--query-compute-apps` fields, in order.
pub const APPS_QUERY: &str = "--query-compute-apps=pid,process_name,used_memory";

/// One GPU. Memory fields are `None` where the driver says `[Not Supported]`/`[N/A]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gpu {
    /// Product name.
    pub name: String,
    /// MiB.
    pub total_mib: Option<u64>,
    /// MiB.
    pub used_mib: Option<u64>,
    /// MiB.
    pub free_mib: Option<u64>,
    /// e.g. `12.0`.
    pub compute_cap: String,
    /// Driver version.
    pub driver: String,
}

/// A process holding GPU memory, and the container it runs in if any.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuProcess {
    /// Host PID.
    pub pid: u32,
    /// Process name.
    pub name: String,
    /// MiB.
    pub used_mib: Option<u64>,
    /// Container id (from the PID's cgroup), when it is in one.
    pub container_id: Option<String>,
}

/// What nvidia-smi said, or that there is none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum GpuState {
    /// No `nvidia-smi` on this host.
    NoDriver,
    /// GPUs and their compute processes.
    Gpus {
        /// One per GPU.
        gpus: Vec<Gpu>,
        /// Compute processes.
        processes: Vec<GpuProcess>,
        /// `MemAvailable` of the host the GPUs are in (its `/proc/meminfo`), MiB: the free
        /// memory of a unified-memory GPU (GB10), which reports no `memory.free`.
        mem_available_mib: Option<u64>,
    },
}

fn field(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.starts_with('[') {
        return None;
    }
    s.split_whitespace().next()?.parse().ok()
}

/// Parses `--query-gpu=... --format=csv,noheader,nounits`.
pub fn parse_gpus(csv: &str) -> Result<Vec<Gpu>, String> {
    csv.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            // From the right: the name, first, is the only field that may hold a comma.
            let mut f: Vec<&str> = l.rsplitn(6, ',').map(str::trim).collect();
            if f.len() != 6 {
                return Err(format!("unexpected nvidia-smi line {l:?} (want 6 fields)"));
            }
            f.reverse();
            Ok(Gpu {
                name: f[0].to_owned(),
                total_mib: field(f[1]),
                used_mib: field(f[2]),
                free_mib: field(f[3]),
                compute_cap: f[4].to_owned(),
                driver: f[5].to_owned(),
            })
        })
        .collect()
}

/// Parses `--query-compute-apps=... --format=csv,noheader,nounits`.
pub fn parse_apps(csv: &str) -> Result<Vec<GpuProcess>, String> {
    csv.lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("No running processes"))
        .map(|l| {
            // The pid first, the memory last, the process name (a path, which may hold a
            // comma: `/opt/a,b/python`) all in between.
            let (pid, name, used) = l
                .split_once(',')
                .and_then(|(pid, rest)| {
                    let (name, used) = rest.rsplit_once(',')?;
                    Some((pid.trim(), name.trim(), used.trim()))
                })
                .ok_or_else(|| format!("unexpected nvidia-smi line {l:?} (want 3 fields)"))?;
            Ok(GpuProcess {
                pid: pid.parse().map_err(|_| format!("bad pid in {l:?}"))?,
                name: name.to_owned(),
                used_mib: field(used),
                container_id: None,
            })
        })
        .collect()
}

/// The Docker container id in a `/proc/<pid>/cgroup` file, for cgroup v1
/// (`.../docker/<id>`) and v2 with the systemd driver (`.../docker-<id>.scope`).
#[must_use]
pub fn container_id_from_cgroup(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.rsplit(':').next()?;
        path.split('/').find_map(|seg| {
            let id = seg
                .strip_prefix("docker-")
                .and_then(|s| s.strip_suffix(".scope"))
                .unwrap_or(seg);
            (id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_owned())
        })
    })
}

/// `MemAvailable` from `/proc/meminfo`, in MiB.
#[must_use]
pub fn mem_available_mib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib / 1024)
}

/// Free memory for a new server: the GPUs' `memory.free` summed, or on unified-memory GPUs
/// (no `memory.free`) the `MemAvailable` of their host (`mem_available_mib`). Returns (MiB, how
/// it was measured).
#[must_use]
pub fn free_mib(gpus: &[Gpu], mem_available_mib: Option<u64>) -> Option<(u64, &'static str)> {
    if !gpus.is_empty() && gpus.iter().all(|g| g.free_mib.is_some()) {
        return Some((
            gpus.iter().filter_map(|g| g.free_mib).sum(),
            "nvidia-smi memory.free",
        ));
    }
    mem_available_mib.map(|m| (m, "unified memory: the host's /proc/meminfo MemAvailable"))
}

/// Where `nvidia-smi` runs: on this machine (its path; `None`: not installed), or on the
/// engine's host in a short-lived container from `image` with every GPU requested and the
/// host's PID namespace ([`container`]: the NVIDIA container toolkit puts the driver's
/// `nvidia-smi` in it), which is how another host's GPUs, the containers its GPU processes run
/// in and its free memory are seen without installing anything there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// This machine's `nvidia-smi`.
    Local(Option<std::path::PathBuf>),
    /// In a container on the engine's host.
    Container {
        /// An image the host has.
        image: String,
    },
}

/// [`query`] through a [`Probe`]: either way the processes are mapped to the containers they
/// run in, and the free memory is that of the host the GPUs are in.
pub async fn probe(p: &Probe, docker: Option<&bollard::Docker>) -> Result<GpuState, String> {
    match (p, docker) {
        (Probe::Local(path), _) => query(path.as_deref()).await,
        (Probe::Container { .. }, None) => Err("no Docker engine to run nvidia-smi on".to_owned()),
        (Probe::Container { image }, Some(d)) => {
            match container::probe(d, image, GPU_QUERY, APPS_QUERY).await? {
                Some(parts) => state_of(&parts),
                None => Ok(GpuState::NoDriver),
            }
        }
    }
}

/// Pure: another host's GPU state from what the probe there printed: its GPUs, each compute
/// process with the container it runs in (from its cgroup, as [`query`] maps them on this
/// machine), and that host's `MemAvailable`.
pub fn state_of(parts: &container::Parts) -> Result<GpuState, String> {
    let gpus = parse_gpus(&parts.gpus)?;
    let mut processes = parse_apps(&parts.apps)?;
    for p in &mut processes {
        p.container_id = parts
            .cgroups
            .get(&p.pid)
            .and_then(|c| container_id_from_cgroup(c));
    }
    Ok(GpuState::Gpus {
        gpus,
        processes,
        mem_available_mib: mem_available_mib(&parts.meminfo),
    })
}

/// Runs nvidia-smi at `path` (None: not installed) on this machine, maps processes to
/// containers and reads this machine's `MemAvailable`.
pub async fn query(path: Option<&Path>) -> Result<GpuState, String> {
    let Some(path) = path else {
        return Ok(GpuState::NoDriver);
    };
    let run = |query: &'static str| async move {
        let out = tokio::process::Command::new(path)
            .args([query, "--format=csv,noheader,nounits"])
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {query} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let gpus = parse_gpus(&run(GPU_QUERY).await?)?;
    let mut processes = parse_apps(&run(APPS_QUERY).await?)?;
    for p in &mut processes {
        p.container_id = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid))
            .ok()
            .and_then(|c| container_id_from_cgroup(&c));
    }
    Ok(GpuState::Gpus {
        gpus,
        processes,
        mem_available_mib: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_available_mib(&m)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on panda (RTX 5070 Ti, driver 580.126.09), values from the runbook.
    pub const PANDA_GPU: &str = "NVIDIA GeForce RTX 5070 Ti, 16303, 8996, 6823, 12.0, 580.126.09\n";
    /// GB10 (titan/beast): unified memory, memory fields not supported.
    pub const GB10_GPU: &str = "NVIDIA GB10, [N/A], [Not Supported], [N/A], 12.1, 580.142\n";

    #[test]
    fn discrete_card_reports_free_memory() {
        let g = parse_gpus(PANDA_GPU).unwrap();
        assert_eq!(g[0].free_mib, Some(6823));
        assert_eq!(free_mib(&g, None), Some((6823, "nvidia-smi memory.free")));
    }

    #[test]
    fn gb10_falls_back_to_meminfo() {
        let g = parse_gpus(GB10_GPU).unwrap();
        assert_eq!(g[0].used_mib, None);
        let meminfo = "MemTotal: 128000000 kB\nMemAvailable:   62914560 kB\n";
        assert_eq!(mem_available_mib(meminfo), Some(61440));
        assert_eq!(mem_available_mib("MemTotal: 1 kB\n"), None);
        assert_eq!(
            free_mib(&g, mem_available_mib(meminfo)),
            Some((
                61440,
                "unified memory: the host's /proc/meminfo MemAvailable"
            ))
        );
        assert_eq!(free_mib(&g, None), None);
    }

    /// On another host: the server's PID, as that host numbers it, maps to its container by the
    /// cgroup read there, and the free memory is that host's.
    #[test]
    fn another_hosts_answer_maps_the_servers_pid_to_its_container_and_reads_its_memory() {
        let id = "b".repeat(64);
        let container::Answer::Done(parts) = container::answer(&container::recorded(&id)).unwrap()
        else {
            panic!("a complete answer")
        };
        let GpuState::Gpus {
            gpus,
            processes,
            mem_available_mib,
        } = state_of(&parts).unwrap()
        else {
            panic!()
        };
        assert_eq!(gpus[0].name, "NVIDIA GB10");
        assert_eq!(
            (processes[0].pid, processes[0].used_mib),
            (4242, Some(9000))
        );
        assert_eq!(processes[0].container_id.as_deref(), Some(id.as_str()));
        assert_eq!(processes[1].container_id, None);
        assert_eq!(mem_available_mib, Some(61440));
        assert_eq!(
            free_mib(&gpus, mem_available_mib),
            Some((
                61440,
                "unified memory: the host's /proc/meminfo MemAvailable"
            ))
        );
        // Docker's default on cgroup v2 is a cgroup namespace of the probe's own: another
        // container's cgroup reads relative to it, and still maps.
        let relative = container::Parts {
            cgroups: [(4242, format!("0::/../docker-{id}.scope\n"))].into(),
            ..parts
        };
        let GpuState::Gpus { processes, .. } = state_of(&relative).unwrap() else {
            panic!()
        };
        assert_eq!(processes[0].container_id.as_deref(), Some(id.as_str()));
    }

    /// A process name is a path, and a path may hold a comma: the pid is the first field, the
    /// memory the last, the name all in between (the GPU's name likewise, from the right).
    #[test]
    fn a_comma_in_a_process_or_gpu_name_does_not_break_the_line() {
        let apps = parse_apps("4242, /opt/a,b/python, 5158\n").unwrap();
        assert_eq!(apps[0].pid, 4242);
        assert_eq!(apps[0].name, "/opt/a,b/python");
        assert_eq!(apps[0].used_mib, Some(5158));
        assert!(
            parse_apps("4242, 5158\n").is_err(),
            "two fields are not a line"
        );
        assert!(parse_apps("x, /bin/p, 1\n").is_err());
        let g = parse_gpus("NVIDIA A, B, 81559, 1, 81558, 9.0, 570.124.06\n").unwrap();
        assert_eq!(g[0].name, "NVIDIA A, B");
        assert_eq!(g[0].free_mib, Some(81558));
        assert_eq!(g[0].driver, "570.124.06");
        assert!(parse_gpus("NVIDIA A, 1, 2, 3, 4\n").is_err());
    }

    #[test]
    fn apps_and_cgroups() {
        let apps = parse_apps("4242, /usr/bin/python3, 5158\n77, vllm, [N/A]\n").unwrap();
        assert_eq!(apps[0].used_mib, Some(5158));
        assert_eq!(apps[1].used_mib, None);
        let id = "a".repeat(64);
        assert_eq!(
            container_id_from_cgroup(&format!("12:memory:/docker/{id}\n")),
            Some(id.clone())
        );
        assert_eq!(
            container_id_from_cgroup(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some(id)
        );
        assert_eq!(
            container_id_from_cgroup("0::/user.slice/session-1.scope\n"),
            None
        );
        assert!(parse_gpus("garbage").is_err());
    }
}
