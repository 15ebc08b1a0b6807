//! The server's GPU memory against the spec's ceiling (the runbook's quantization-trap red flag).
//! Measured where the server runs: on this machine by its `nvidia-smi`, on another host by one
//! in a container there (`vlmctl_lifecycle::gpu::container`), the processes mapped to the
//! server's container by their cgroups either way. When no figure can be had, the reason is
//! kept: with a ceiling in the spec that is a failure ([`require_measured`]), without one a
//! warning ([`unmeasured_warning`]): never a silent pass.

use vlmctl_lifecycle::gpu::{self, GpuProcess, GpuState};
use vlmctl_lifecycle::spec::{Gpus, Spec};

use crate::DeployError;

/// Pure: the GPU memory `container_id`'s processes use (`None` when nvidia-smi lists none of
/// them with a figure: not 0, which would read as "on the CPU"), and whether it is above
/// `max_mib`.
pub fn check(
    processes: &[GpuProcess],
    container_id: &str,
    container: &str,
    max_mib: Option<u64>,
) -> Result<Option<u64>, DeployError> {
    let figures: Vec<u64> = processes
        .iter()
        .filter(|p| p.container_id.as_deref() == Some(container_id))
        .filter_map(|p| p.used_mib)
        .collect();
    if figures.is_empty() {
        return Ok(None);
    }
    let used: u64 = figures.iter().sum();
    match max_mib {
        Some(max) if used > max => Err(DeployError::MemoryCeiling {
            container: container.to_owned(),
            used_mib: used,
            max_mib: max,
        }),
        _ => Ok(Some(used)),
    }
}

/// Pure: why nvidia-smi's processes give no figure for `container_id` (what [`check`] returned
/// `None` for).
#[must_use]
pub fn why_unmeasured(processes: &[GpuProcess], container_id: &str) -> String {
    let ours = processes
        .iter()
        .filter(|p| p.container_id.as_deref() == Some(container_id))
        .count();
    if processes.is_empty() {
        "nvidia-smi lists no compute process".to_owned()
    } else if ours == 0 {
        format!(
            "nvidia-smi lists {} compute process(es) (PIDs {}), none of them in the server's \
             container",
            processes.len(),
            processes
                .iter()
                .map(|p| p.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "nvidia-smi gives no per-process figure for the server's processes".to_owned()
    }
}

/// What `nvidia-smi` says after the launch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// The server's GPU memory; `None` without a GPU to measure or a per-process figure.
    pub process_mib: Option<u64>,
    /// Each GPU's compute capability.
    pub compute_caps: Vec<String>,
    /// On a GPU deployment without a figure: why (the query failed, or no process listed is
    /// the server's).
    pub unmeasured: Option<String>,
}

/// A ceiling in the spec that could not be checked fails the run (exit 8): the runbook's 8 GB
/// ceiling is an abort gate, and a gate that cannot be evaluated must not pass.
pub fn require_measured(spec: &Spec, reading: &Reading) -> Result<(), DeployError> {
    match (spec.memory.max_process_mib, &reading.unmeasured) {
        (Some(max_mib), Some(why)) if spec.gpus != Gpus::None => {
            Err(DeployError::MemoryUnmeasured {
                container: spec.name.clone(),
                max_mib,
                why: why.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Without a ceiling, a GPU server whose memory could not be measured is said, not passed over:
/// the GPU proof's memory floor was not checked either.
#[must_use]
pub fn unmeasured_warning(spec: &Spec, reading: &Reading) -> Option<String> {
    let why = reading.unmeasured.as_ref()?;
    (spec.gpus != Gpus::None).then(|| {
        format!(
            "the GPU memory of {} could not be measured on its host ({why}): no ceiling \
             (max_process_mib) is set, and the GPU proof's memory floor was not checked",
            spec.name
        )
    })
}

/// Measures with `nvidia-smi` on the server's host and checks the ceiling; empty for a
/// CPU deployment, and with the reason when there is no figure.
pub async fn measure(
    engine: &vlmctl_lifecycle::Engine,
    spec: &Spec,
    container_id: &str,
) -> Result<Reading, DeployError> {
    if spec.gpus == Gpus::None {
        return Ok(Reading::default());
    }
    let docker = engine.connect().await.ok();
    let (gpus, processes) =
        match gpu::probe(&crate::gates::gpu_probe(engine, spec), docker.as_ref()).await {
            Ok(GpuState::Gpus {
                gpus, processes, ..
            }) => (gpus, processes),
            Ok(GpuState::NoDriver) => {
                return Ok(Reading {
                    unmeasured: Some("no nvidia-smi on the host".to_owned()),
                    ..Reading::default()
                });
            }
            Err(e) => {
                return Ok(Reading {
                    unmeasured: Some(e),
                    ..Reading::default()
                });
            }
        };
    let process_mib = check(
        &processes,
        container_id,
        &spec.name,
        spec.memory.max_process_mib,
    )?;
    Ok(Reading {
        process_mib,
        compute_caps: gpus.into_iter().map(|g| g.compute_cap).collect(),
        unmeasured: process_mib
            .is_none()
            .then(|| why_unmeasured(&processes, container_id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(container: Option<&str>, mib: Option<u64>) -> GpuProcess {
        GpuProcess {
            pid: 1,
            name: "llama-server".into(),
            used_mib: mib,
            container_id: container.map(str::to_owned),
        }
    }

    #[test]
    fn only_the_servers_processes_count_and_the_ceiling_is_inclusive() {
        let procs = [
            p(Some("srv"), Some(5000)),
            p(Some("srv"), Some(3192)),
            p(Some("voice"), Some(4000)),
            p(None, Some(100)),
            p(Some("srv"), None),
        ];
        assert_eq!(
            check(&procs, "srv", "panda", Some(8192)).unwrap(),
            Some(8192)
        );
        let e = check(&procs, "srv", "panda", Some(8191)).unwrap_err();
        assert!(
            matches!(
                e,
                DeployError::MemoryCeiling {
                    used_mib: 8192,
                    max_mib: 8191,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(check(&procs, "srv", "panda", None).unwrap(), Some(8192));
        // None listed, or listed without a figure (`[N/A]`): unknown, not 0.
        assert_eq!(check(&procs, "other", "panda", Some(0)).unwrap(), None);
        assert_eq!(
            check(&[p(Some("srv"), None)], "srv", "panda", Some(0)).unwrap(),
            None
        );
    }

    fn spec(gpus: &str, max: Option<u64>) -> Spec {
        let mut s = Spec::parse(
            &format!(
                "name = \"beast\"\nimage = \"i\"\nmodel = \"m\"\ngpus = {gpus}\n[server]\n\
                 host = \"127.0.0.1\"\nport = 1\n"
            ),
            std::path::Path::new("x.toml"),
        )
        .unwrap();
        s.memory.max_process_mib = max;
        s
    }

    #[test]
    fn a_ceiling_that_cannot_be_checked_fails_and_no_ceiling_warns() {
        // The processes nvidia-smi listed on the host, none mapped to the server's container.
        let why = why_unmeasured(&[p(None, Some(9000)), p(Some("voice"), Some(10))], "srv");
        assert!(
            why.contains("2 compute process(es)") && why.contains("none of them"),
            "{why}"
        );
        assert_eq!(
            why_unmeasured(&[], "srv"),
            "nvidia-smi lists no compute process"
        );
        assert!(why_unmeasured(&[p(Some("srv"), None)], "srv").contains("no per-process"));
        let unmeasured = Reading {
            unmeasured: Some(why),
            ..Reading::default()
        };
        let e = require_measured(&spec("\"all\"", Some(8192)), &unmeasured).unwrap_err();
        assert!(
            matches!(e, DeployError::MemoryUnmeasured { max_mib: 8192, .. }),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("max_process_mib = 8192 cannot be checked"),
            "{e}"
        );
        assert!(unmeasured_warning(&spec("\"all\"", Some(8192)), &unmeasured).is_some());
        // No ceiling: a warning that names the floor too, not a failure.
        require_measured(&spec("\"all\"", None), &unmeasured).unwrap();
        let w = unmeasured_warning(&spec("\"all\"", None), &unmeasured).unwrap();
        assert!(w.contains("floor was not checked"), "{w}");
        // Measured, or a CPU deployment: nothing to say.
        let measured = Reading {
            process_mib: Some(10),
            ..Reading::default()
        };
        require_measured(&spec("\"all\"", Some(8192)), &measured).unwrap();
        assert_eq!(unmeasured_warning(&spec("\"all\"", None), &measured), None);
        require_measured(&spec("\"none\"", Some(8192)), &unmeasured).unwrap();
    }
}
