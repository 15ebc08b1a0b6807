//! The server's GPU memory against the spec's ceiling (the runbook's quantization-trap red flag).

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

/// What `nvidia-smi` says after the launch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// The server's GPU memory; `None` without a GPU to measure or a per-process figure.
    pub process_mib: Option<u64>,
    /// Each GPU's compute capability.
    pub compute_caps: Vec<String>,
}

/// Measures with `nvidia-smi` and checks the ceiling; empty when there is no GPU to measure.
pub async fn measure(
    engine: &vlmctl_lifecycle::Engine,
    spec: &Spec,
    container_id: &str,
) -> Result<Reading, DeployError> {
    if spec.gpus == Gpus::None {
        return Ok(Reading::default());
    }
    let docker = engine.connect().await.ok();
    let Ok(GpuState::Gpus { gpus, processes }) =
        gpu::probe(&crate::gates::gpu_probe(engine, spec), docker.as_ref()).await
    else {
        return Ok(Reading::default());
    };
    Ok(Reading {
        process_mib: check(
            &processes,
            container_id,
            &spec.name,
            spec.memory.max_process_mib,
        )?,
        compute_caps: gpus.into_iter().map(|g| g.compute_cap).collect(),
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
}
