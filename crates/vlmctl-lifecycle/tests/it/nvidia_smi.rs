//! The GPU query against a stub `nvidia-smi` that replays recorded output (no GPU here): a
//! discrete card with compute processes, a GB10 with `[Not Supported]` memory, a broken driver,
//! and no nvidia-smi at all.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vlmctl_lifecycle::gpu::{self, GpuState};

/// Writes a stub answering `--query-gpu` and `--query-compute-apps` like the real tool.
fn stub(dir: &Path, gpus: &str, apps: &str, exit: i32) -> PathBuf {
    let path = dir.join("nvidia-smi");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  --query-gpu=*) printf '%s' '{gpus}' ;;\n  --query-compute-apps=*) printf '%s' '{apps}' ;;\n  *) echo \"unexpected $*\" >&2; exit 64 ;;\nesac\nexit {exit}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn discrete_card_gb10_broken_and_absent() {
    let tmp = tempfile::tempdir().unwrap();
    // panda, session 67: RTX 5070 Ti with the voice pipeline resident.
    let p = stub(
        tmp.path(),
        "NVIDIA GeForce RTX 5070 Ti, 16303, 8996, 6823, 12.0, 580.126.09\n",
        "4242, /usr/bin/python3, 5158\n5151, python3, 3654\n",
        0,
    );
    let GpuState::Gpus {
        gpus,
        processes,
        mem_available_mib,
    } = gpu::query(Some(&p)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(gpus[0].free_mib, Some(6823));
    // This machine's MemAvailable (the host the GPUs are in, when nvidia-smi runs here).
    assert!(mem_available_mib.is_some());
    assert_eq!(
        processes.iter().map(|p| p.used_mib).collect::<Vec<_>>(),
        [Some(5158), Some(3654)]
    );
    // PIDs that are not on this host map to no container.
    assert!(processes.iter().all(|p| p.container_id.is_none()));

    let dir = tmp.path().join("gb10");
    std::fs::create_dir(&dir).unwrap();
    let p = stub(
        &dir,
        "NVIDIA GB10, [N/A], [Not Supported], [N/A], 12.1, 580.142\n",
        "77, vllm, 94208\n",
        0,
    );
    let GpuState::Gpus {
        gpus, processes, ..
    } = gpu::query(Some(&p)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((gpus[0].used_mib, gpus[0].free_mib), (None, None));
    assert_eq!(processes[0].used_mib, Some(94208));

    let dir = tmp.path().join("broken");
    std::fs::create_dir(&dir).unwrap();
    let p = stub(&dir, "", "", 9);
    let err = gpu::query(Some(&p)).await.unwrap_err();
    assert!(err.contains("failed"), "{err}");

    assert_eq!(gpu::query(None).await.unwrap(), GpuState::NoDriver);
}
