//! The read-only gates, run concurrently, one typed result each (pass/warn/fail, evidence,
//! hint). Nothing here changes anything.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;

use bollard::Docker;

use crate::LifecycleError;
use crate::containers::{self, ConflictInfo};
use crate::gpu::{self, GpuState};
use crate::platform::{self, Platform, PlatformVerdict};
use crate::ports::{self, PortHolder};
use crate::spec::{Gpus, Spec};

/// Outcome of one gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GateStatus {
    /// Fine.
    Pass,
    /// Worth a look; does not block.
    Warn,
    /// Blocks provisioning.
    Fail,
}

/// One gate's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GateResult {
    /// Gate name.
    pub name: String,
    /// Verdict.
    pub status: GateStatus,
    /// What was observed.
    pub evidence: String,
    /// What to do, when not a pass.
    pub hint: Option<String>,
}

impl GateResult {
    /// A result.
    pub fn new(
        name: &str,
        status: GateStatus,
        evidence: impl Into<String>,
        hint: Option<&str>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            status,
            evidence: evidence.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// Everything the gates learned, for the steps after them.
#[derive(Debug)]
pub struct GateReport {
    /// One per gate, in a fixed order.
    pub results: Vec<GateResult>,
    /// nvidia-smi's view, when it ran.
    pub gpu: Option<GpuState>,
    /// Conflicting containers found.
    pub conflicts: Vec<ConflictInfo>,
}

impl GateReport {
    /// True when no gate failed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.status != GateStatus::Fail)
    }
}

/// Runs all gates concurrently on `engine`. `docker` is the connection attempt (its failure is
/// the daemon gate's evidence); `nvidia_smi` the binary's path if on PATH; `weights` the weights gate,
/// computed by the caller with the weights crate.
pub async fn run(
    engine: &crate::Engine,
    docker: Result<&Docker, &LifecycleError>,
    spec: &Spec,
    nvidia_smi: gpu::Probe,
    weights: impl Future<Output = GateResult>,
) -> GateReport {
    let daemon = daemon_gate(engine, docker);
    let platform = platform_gate(docker.ok(), spec);
    let port = port_gate(engine, docker.ok(), spec);
    let gpu = gpu::probe(&nvidia_smi, docker.ok());
    let (daemon, platform, port, gpu_state, weights) =
        futures::join!(daemon, platform, port, gpu, weights);
    let gpu_gate = gpu_gate(spec, &gpu_state);
    let holders: HashMap<String, u64> = match &gpu_state {
        Ok(GpuState::Gpus { processes, .. }) => processes
            .iter()
            .filter_map(|p| Some((p.container_id.clone()?, p.used_mib.unwrap_or(0))))
            .collect(),
        _ => HashMap::new(),
    };
    let (conflict_gate, conflicts) = match docker {
        Ok(d) => match containers::conflicts(d, spec, &holders).await {
            Ok(c) => (conflict_gate(&c), c),
            Err(e) => (
                GateResult::new(
                    "conflicts",
                    GateStatus::Fail,
                    e.to_string(),
                    Some(&e.hint()),
                ),
                Vec::new(),
            ),
        },
        Err(_) => (
            GateResult::new(
                "conflicts",
                GateStatus::Fail,
                "no daemon",
                Some("see the daemon gate"),
            ),
            Vec::new(),
        ),
    };
    GateReport {
        results: vec![daemon, platform, port, gpu_gate, weights, conflict_gate],
        gpu: gpu_state.ok(),
        conflicts,
    }
}

async fn daemon_gate(
    engine: &crate::Engine,
    docker: Result<&Docker, &LifecycleError>,
) -> GateResult {
    match docker {
        Ok(d) => match d.version().await {
            Ok(v) => GateResult::new(
                "daemon",
                GateStatus::Pass,
                format!(
                    "Docker {} (API {}) at {}",
                    v.version.unwrap_or_default(),
                    v.api_version.unwrap_or_default(),
                    engine.docker_host()
                ),
                None,
            ),
            Err(source) => {
                let e = LifecycleError::DaemonUnreachable {
                    host: engine.docker_host(),
                    source,
                };
                GateResult::new("daemon", GateStatus::Fail, e.to_string(), Some(&e.hint()))
            }
        },
        Err(e) => GateResult::new(
            "daemon",
            GateStatus::Fail,
            vlmctl_base::chain::one_line(e),
            Some(&e.hint()),
        ),
    }
}

/// The platform the image must have: the spec's, where `host` is the platform of the engine's
/// host (`docker info`'s architecture: under `--host` the other machine's); the failed gate
/// when it cannot be known.
async fn wanted_platform(docker: &Docker, spec: &Spec) -> Result<Platform, Box<GateResult>> {
    let fail = |evidence: String, hint: Option<&str>| {
        Box::new(GateResult::new(
            "platform",
            GateStatus::Fail,
            evidence,
            hint,
        ))
    };
    if spec.platform != "host" {
        return Platform::parse(&spec.platform)
            .ok_or_else(|| fail(format!("bad platform {:?}", spec.platform), None));
    }
    match docker.info().await.map(|i| i.architecture) {
        Ok(Some(arch)) => Ok(Platform::of_engine(&arch)),
        Ok(None) => Err(fail(
            "the host's Docker engine reports no architecture".to_owned(),
            Some("name the platform in the spec (e.g. platform = \"linux/arm64\")"),
        )),
        Err(e) => Err(fail(
            format!("cannot read the host's architecture from its Docker engine: {e}"),
            Some("see the daemon gate"),
        )),
    }
}

/// Platform of the image: from the registry through the daemon; for an image that exists only
/// locally (built here, never pushed), from the local image. `platform = "host"` is the
/// platform of the engine's host (`docker info`'s architecture): under `--host` the other
/// machine's.
async fn platform_gate(docker: Option<&Docker>, spec: &Spec) -> GateResult {
    let Some(docker) = docker else {
        return GateResult::new(
            "platform",
            GateStatus::Fail,
            "no daemon",
            Some("see the daemon gate"),
        );
    };
    let wanted = match wanted_platform(docker, spec).await {
        Ok(w) => w,
        Err(failed) => return *failed,
    };
    let (found, source) = match platform::image_platforms(docker, &spec.image).await {
        Ok(p) => (p, "registry"),
        Err(registry_err) => match docker.inspect_image(&spec.image).await {
            Ok(img) => (
                vec![Platform {
                    os: img.os.unwrap_or_default(),
                    architecture: img.architecture.unwrap_or_default(),
                    variant: img.variant,
                }],
                "local image",
            ),
            Err(_) => {
                return GateResult::new(
                    "platform",
                    GateStatus::Fail,
                    vlmctl_base::chain::one_line(&registry_err),
                    Some(&registry_err.hint()),
                );
            }
        },
    };
    match platform::check(&wanted, &found) {
        PlatformVerdict::Supported(p) => GateResult::new(
            "platform",
            GateStatus::Pass,
            format!("{} has {p} ({source})", spec.image),
            None,
        ),
        PlatformVerdict::Unknown => GateResult::new(
            "platform",
            GateStatus::Warn,
            format!(
                "the registry lists no platform for {} ({source})",
                spec.image
            ),
            Some(
                "check by hand with `docker manifest inspect IMAGE`; a wrong-platform image fails at start with \"exec format error\"",
            ),
        ),
        PlatformVerdict::Unsupported(found) => GateResult::new(
            "platform",
            GateStatus::Fail,
            format!(
                "{} has no {wanted} image{}; it has: {}",
                spec.image,
                if spec.platform == "host" {
                    " (the host's platform, from its Docker engine)"
                } else {
                    ""
                },
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(
                "build llama.cpp's server image from source for this platform (e.g. with -DGGML_CUDA=ON) and point `image` at it",
            ),
        ),
    }
}

async fn port_gate(engine: &crate::Engine, docker: Option<&Docker>, spec: &Spec) -> GateResult {
    let Ok(host) = spec.server.host.parse::<IpAddr>() else {
        return GateResult::new("port", GateStatus::Fail, "bad host", None);
    };
    let port = spec.server.port;
    match ports::holder(engine.host(), docker, host, port).await {
        None => GateResult::new(
            "port",
            GateStatus::Pass,
            format!("{host}:{port} is free"),
            None,
        ),
        Some(PortHolder::Container(name)) if name == spec.name => GateResult::new(
            "port",
            GateStatus::Pass,
            format!("{host}:{port} is held by this deployment's own container"),
            None,
        ),
        Some(h) => GateResult::new(
            "port",
            GateStatus::Fail,
            format!(
                "{host}:{port} is taken by {}",
                match h {
                    PortHolder::Container(n) => format!("container {n}"),
                    PortHolder::Process { pid, name } => format!("process {name} (pid {pid})"),
                    PortHolder::Unknown => "an unknown process".to_owned(),
                }
            ),
            Some("pick another `server.port` in the spec, or stop what holds it"),
        ),
    }
}

/// Pure: the GPU gate from nvidia-smi's answer (on a unified-memory GPU, the free memory is
/// the `MemAvailable` of the host the GPUs are in, which the answer carries).
#[must_use]
pub fn gpu_gate(spec: &Spec, state: &Result<GpuState, String>) -> GateResult {
    let name = "gpu";
    if spec.gpus == Gpus::None {
        return GateResult::new(
            name,
            GateStatus::Pass,
            "CPU-only spec (gpus = \"none\")",
            None,
        );
    }
    let (gpus, processes, mem_available_mib) = match state {
        Err(e) => {
            return GateResult::new(
                name,
                GateStatus::Fail,
                e.clone(),
                Some("check the NVIDIA driver: `nvidia-smi` must run"),
            );
        }
        Ok(GpuState::NoDriver) => {
            return GateResult::new(
                name,
                GateStatus::Fail,
                "no nvidia-smi on this host (no NVIDIA driver)",
                Some(
                    "install the NVIDIA driver and container toolkit, or set gpus = \"none\" for a CPU-only deployment",
                ),
            );
        }
        Ok(GpuState::Gpus {
            gpus,
            processes,
            mem_available_mib,
        }) => (gpus, processes, *mem_available_mib),
    };
    if gpus.is_empty() {
        return GateResult::new(name, GateStatus::Fail, "nvidia-smi lists no GPU", None);
    }
    let desc = gpus
        .iter()
        .map(|g| format!("{} (sm {}, driver {})", g.name, g.compute_cap, g.driver))
        .collect::<Vec<_>>()
        .join(", ");
    let holders = processes
        .iter()
        .map(|p| {
            format!(
                "{} pid {} {} MiB",
                p.name,
                p.pid,
                p.used_mib.map_or("?".to_owned(), |m| m.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let Some(need) = spec.memory.need_free_mib else {
        return GateResult::new(name, GateStatus::Pass, desc, None);
    };
    match gpu::free_mib(gpus, mem_available_mib) {
        Some((free, how)) if free >= need => GateResult::new(
            name,
            GateStatus::Pass,
            format!("{desc}: {free} MiB free ({how}), need {need}"),
            None,
        ),
        Some((free, how)) => GateResult::new(
            name,
            GateStatus::Fail,
            format!("{desc}: {free} MiB free ({how}), need {need}; held by: {holders}"),
            Some(
                "stop a conflicting container (see the conflicts gate; --stop NAME), or lower need_free_mib if the model really needs less",
            ),
        ),
        None => GateResult::new(
            name,
            GateStatus::Warn,
            format!("{desc}: free memory unknown"),
            Some("could not measure free memory; check `nvidia-smi` by hand"),
        ),
    }
}

fn conflict_gate(c: &[ConflictInfo]) -> GateResult {
    if c.is_empty() {
        return GateResult::new(
            "conflicts",
            GateStatus::Pass,
            "no conflicting container running",
            None,
        );
    }
    GateResult::new(
        "conflicts",
        GateStatus::Warn,
        c.iter()
            .map(|c| {
                format!(
                    "{} ({}, {}, restart {}{})",
                    c.name,
                    c.status,
                    c.image,
                    c.restart_policy,
                    c.gpu_mib
                        .map(|m| format!(", {m} MiB GPU"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(
            "provision stops only what you confirm (prompt or --stop NAME) and restores it afterwards",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{parse_apps, parse_gpus};

    fn spec(gpus: &str, need: Option<u64>) -> Spec {
        let mut s = Spec::parse(
            &format!("name = \"x\"\nimage = \"i\"\nmodel = \"m\"\ngpus = {gpus}\n[server]\nhost = \"127.0.0.1\"\nport = 1\n"),
            std::path::Path::new("x.toml"),
        )
        .unwrap();
        s.memory.need_free_mib = need;
        s
    }

    #[test]
    fn gpu_gate_decisions() {
        let no_driver = Ok(GpuState::NoDriver);
        assert_eq!(
            gpu_gate(&spec("\"none\"", None), &no_driver).status,
            GateStatus::Pass
        );
        let r = gpu_gate(&spec("\"all\"", None), &no_driver);
        assert_eq!(r.status, GateStatus::Fail);
        assert!(r.hint.unwrap().contains("gpus = \"none\""));

        let panda = Ok(GpuState::Gpus {
            gpus: parse_gpus("NVIDIA GeForce RTX 5070 Ti, 16303, 8996, 6823, 12.0, 580.126.09")
                .unwrap(),
            processes: parse_apps("4242, python3, 5158\n5151, chatterbox, 3654").unwrap(),
            mem_available_mib: Some(100_000),
        });
        assert_eq!(
            gpu_gate(&spec("\"all\"", Some(4000)), &panda).status,
            GateStatus::Pass
        );
        let r = gpu_gate(&spec("\"all\"", Some(8000)), &panda);
        assert_eq!(r.status, GateStatus::Fail);
        assert!(
            r.evidence.contains("6823 MiB free")
                && r.evidence.contains("chatterbox pid 5151 3654 MiB"),
            "{}",
            r.evidence
        );

        // A GB10: the free memory is the MemAvailable of the host the GPU is in (the answer
        // carries it: this machine's locally, the other host's in a container there).
        let gb10 = |mem_available_mib| {
            Ok(GpuState::Gpus {
                gpus: parse_gpus("NVIDIA GB10, [N/A], [Not Supported], [N/A], 12.1, 580.142")
                    .unwrap(),
                processes: parse_apps("77, vllm, 94208").unwrap(),
                mem_available_mib,
            })
        };
        let r = gpu_gate(&spec("\"all\"", Some(8000)), &gb10(Some(10240)));
        assert_eq!(r.status, GateStatus::Pass, "{}", r.evidence);
        assert!(
            r.evidence
                .contains("10240 MiB free (unified memory: the host's /proc/meminfo MemAvailable)"),
            "{}",
            r.evidence
        );
        let r = gpu_gate(&spec("\"all\"", Some(8000)), &gb10(Some(4096)));
        assert_eq!(r.status, GateStatus::Fail, "{}", r.evidence);
        let r = gpu_gate(&spec("\"all\"", Some(8000)), &gb10(None));
        assert_eq!(r.status, GateStatus::Warn);
    }
}

#[cfg(test)]
mod platform_tests {
    use super::*;

    /// A Docker engine on a unix socket in `dir` that reports `arch` (`docker info`) and lists
    /// `platforms` for any image (`docker manifest inspect`): a host of another architecture
    /// than the machine running the test.
    fn engine(dir: &std::path::Path, arch: &'static str, platforms: &'static str) -> Docker {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let socket = dir.join(format!("{arch}.sock"));
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            let path = head.split_whitespace().nth(1).unwrap_or_default();
                            let body = if path.ends_with("/info") {
                                format!(r#"{{"Architecture":"{arch}","OSType":"linux"}}"#)
                            } else if path.contains("/distribution/") {
                                format!(
                                    r#"{{"Descriptor":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:{}","size":1}},"Platforms":[{platforms}]}}"#,
                                    "0".repeat(64)
                                )
                            } else {
                                r#"{"message":"not here"}"#.to_owned()
                            };
                            let status = if body.contains("not here") {
                                "404 Not Found"
                            } else {
                                "200 OK"
                            };
                            let answer = format!(
                                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if conn.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        crate::engine_at(&format!("unix://{}", socket.display()), 1 << 20).unwrap()
    }

    fn spec(platform: &str) -> Spec {
        Spec::parse(
            &format!(
                "name = \"x\"\nimage = \"i\"\nplatform = \"{platform}\"\nmodel = \"m\"\n\
                 [server]\nhost = \"127.0.0.1\"\nport = 1\n"
            ),
            std::path::Path::new("x.toml"),
        )
        .unwrap()
    }

    /// `platform = "host"` is the architecture the engine of the host being provisioned reports,
    /// whatever machine runs vlmctl: an amd64-only image fails on an aarch64 host (a GB10) and
    /// passes on an `x86_64` one.
    #[tokio::test]
    async fn host_is_the_engines_architecture_not_this_machines() {
        let dir = tempfile::tempdir().unwrap();
        let amd64_only = r#"{"architecture":"amd64","os":"linux"}"#;
        let gb10 = engine(dir.path(), "aarch64", amd64_only);
        let r = platform_gate(Some(&gb10), &spec("host")).await;
        assert_eq!(r.status, GateStatus::Fail, "{r:?}");
        assert_eq!(
            r.evidence,
            "i has no linux/arm64 image (the host's platform, from its Docker engine); it has: \
             linux/amd64"
        );
        let pc = engine(dir.path(), "x86_64", amd64_only);
        let r = platform_gate(Some(&pc), &spec("host")).await;
        assert_eq!(r.status, GateStatus::Pass, "{r:?}");
        assert_eq!(r.evidence, "i has linux/amd64 (registry)");
        // An explicit platform is itself, whatever the host.
        let r = platform_gate(Some(&gb10), &spec("linux/amd64")).await;
        assert_eq!(r.status, GateStatus::Pass, "{r:?}");
    }
}
