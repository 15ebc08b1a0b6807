//! Beast's GPU memory gates over `--host` (issue #23), on the second test host ("beast",
//! `scripts/lib/start-beast.sh`) given a GPU driver of sorts: a stand-in `nvidia-smi` in beast's
//! own `/run/vlmctl-fake-nvidia/`, which beast's no-op NVIDIA hook (`scripts/lib/fake-nvidia/`)
//! bind-mounts at `/usr/bin/nvidia-smi` into each container that asks for GPUs with the
//! `utility` capability, as the real container toolkit mounts the driver's. vlmctl is told none
//! of this: it sees beast's GPUs only from a container it runs there.
//!
//! The stand-in answers like a GB10 (unified memory: no `memory.free`) on which every
//! `llama-server` process holds 9000 MiB. It finds those processes in the `/proc` it sees, so it
//! lists the server only when the container it runs in is in the host's PID namespace, as the
//! real `nvidia-smi` lists only PIDs it can see; the PIDs it reports are the host's, and only
//! their cgroups, read there, say which container is the server.
//!
//! The server is a "GPU llama-server" ([`gpu_server_image`]): what llama.cpp's CUDA build logs
//! while it offloads the model at verbosity 4 (the GPU probe's), then the test image's real CPU
//! server, which serves. The conflict is a busybox of the image busybox is from
//! ([`LabelGuard::conflict`]): no Docker health check of the llama image's that a `sleep` could
//! never pass, so its restore is proven alive as a real conflict's would be.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::common::{Env, run};
use crate::deploy_real::readme_dir_args;
use crate::hosts_real::{
    beast, beast_docker, beast_guard, beast_port, cmd, on_beast, running_on_beast, ssh_left,
};
use vlmctl_test::LabelGuard;

/// What every `llama-server` holds, by the stand-in's account.
const SERVER_MIB: u64 = 9000;

/// The stand-in for the driver's `nvidia-smi` (a POSIX shell script, builtins only: the test
/// image's shell is busybox's).
fn stand_in() -> String {
    format!(
        "#!/bin/sh\n\
         # vlmctl's test hosts_gpu: a GB10 on which each llama-server holds {SERVER_MIB} MiB.\n\
         case \"$1\" in\n\
         \x20 --query-gpu=*) echo 'NVIDIA GB10, [N/A], [Not Supported], [N/A], 12.1, 580.142' ;;\n\
         \x20 --query-compute-apps=*)\n\
         \x20   for d in /proc/[0-9]*; do\n\
         \x20     comm=\n\
         \x20     read -r comm 2>/dev/null <\"$d/comm\"\n\
         \x20     case $comm in llama-server) echo \"${{d#/proc/}}, /app/llama-server, {SERVER_MIB}\" ;; esac\n\
         \x20   done ;;\n\
         \x20 *) echo \"unexpected: $*\" >&2; exit 64 ;;\n\
         esac\n"
    )
}

/// The entrypoint of the "GPU llama-server" (a POSIX shell script for busybox's `sh`). It
/// imitates llama.cpp's CUDA build (build 11434) loading the 270M model (18 layers + output) on
/// a GB10 with every layer asked for: at verbosity 4, and only there (the GPU probe's; the
/// deployment runs at 3, where llama.cpp logs neither), the lines it logs while loading
/// (`ggml/src/ggml-cuda/ggml-cuda.cu`'s `ggml_cuda_init: found %d CUDA devices` and `Device
/// %d: %s, compute capability %d.%d, ...`, `src/llama-model.cpp`'s `load_tensors: offloaded
/// %d/%d layers to GPU` and `%12s model buffer size`; as in `vlmctl_deploy::offload`'s
/// fixtures). Then the test image's CPU server serves (`model loaded`, `listening on`,
/// `/health`, `/v1/models`, the smoke request: all real) as `exec`'s PID 1, named
/// `llama-server` like the real one, without `-ngl`: the CPU build answers that flag with
/// `warning: no usable GPU found`, which a CUDA build never logs.
const GPU_SERVER: &str = r#"#!/bin/sh
ngl=0
skip=
for a do
  shift
  if [ -n "$skip" ]; then skip=; ngl=$a; continue; fi
  case $a in -ngl|--gpu-layers|--n-gpu-layers) skip=1; continue ;; esac
  set -- "$@" "$a"
done
layers=19
case $ngl in *[!0-9]*|'') ;; *) [ "$ngl" -lt 19 ] && layers=$ngl ;; esac
if [ "${LLAMA_ARG_LOG_VERBOSITY:-3}" -ge 4 ]; then
  echo '0.00.201.004 I ggml_cuda_init: found 1 CUDA devices (Total VRAM: 124546 MiB):' >&2
  echo '0.00.201.040 I   Device 0: NVIDIA GB10, compute capability 12.1, VMM: yes, VRAM: 124546 MiB' >&2
  echo "0.01.262.951 I load_tensors: offloaded $layers/19 layers to GPU" >&2
  echo '0.01.272.518 I load_tensors:        CUDA0 model buffer size =   235.16 MiB' >&2
fi
exec /usr/local/bin/llama-server "$@"
"#;

/// Builds the "GPU llama-server" on beast's daemon, `FROM` the test image (which beast has,
/// `scripts/lib/start-beast.sh`) with [`GPU_SERVER`] as its entrypoint, labelled with `guard`'s
/// run (removed with it). Returns its tag.
fn gpu_server_image(guard: &LabelGuard, dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("the image's folder");
    std::fs::write(dir.join("gpu-llama-server"), GPU_SERVER).expect("the entrypoint");
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY gpu-llama-server /usr/local/bin/gpu-llama-server\n\
             ENTRYPOINT [\"/bin/sh\", \"/usr/local/bin/gpu-llama-server\"]\n",
            Env::require("VLMCTL_TEST_LLAMA_IMAGE")
        ),
    )
    .expect("the Dockerfile");
    let tag = format!("vlmctl-test/gpu-llama-server:{}", guard.id());
    let built = guard
        .docker()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", &tag, "--label", &guard.label()])
        .arg(dir)
        .output()
        .expect("docker build on beast");
    assert!(built.status.success(), "{built:?}");
    tag
}

/// The README's CPU deployment as a GPU spec on `image`: every GPU, every layer asked for,
/// 1 MiB free needed before launch, a 64 MiB ceiling, `conflict` to stop. Written in `dir`.
fn gpu_spec(dir: &Path, image: &str, conflict: &str) -> PathBuf {
    let text = std::fs::read_to_string(crate::common::repo_root().join("docker/cpu-test.toml"))
        .expect("spec");
    let cpu = [
        "image = \"vlmctl-test/llama-server:cpu\"\n",
        "gpus = \"none\"\n",
        "\nport = 18435\n",
        "n_gpu_layers = 0\n",
    ];
    assert!(cpu.iter().all(|l| text.contains(l)), "{text}");
    let text = text
        .replace(cpu[0], &format!("image = \"{image}\"\n"))
        .replace(cpu[1], "gpus = \"all\"\n")
        .replace(cpu[2], &format!("\nport = {}\n", vlmctl_test::free_port()))
        .replace(cpu[3], "n_gpu_layers = 999\n");
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "{text}\n[memory]\nneed_free_mib = 1\nmax_process_mib = 64\n\n\
             [[conflict]]\nname = \"{conflict}\"\n"
        ),
    )
    .expect("the GPU spec");
    spec
}

/// Creates on beast what a vlmctl of this machine killed with SIGKILL leaves of its GPU helper:
/// a container `leftover`, labelled as that helper, whose owner (pid 4294967295 here) is gone.
fn leave_a_killed_runs_helper(leftover: &str) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let created = beast_docker()
        .args([
            "create",
            "--name",
            leftover,
            "--label",
            "org.vlmctl.helper=gpu",
        ])
        .arg("--label")
        .arg(format!(
            "org.vlmctl.helper-owner={}/4294967295",
            host.trim()
        ))
        .args(["--entrypoint", "/bin/busybox"])
        .arg(Env::require("VLMCTL_TEST_LLAMA_IMAGE"))
        .arg("true")
        .output()
        .expect("docker create on beast");
    assert!(created.status.success(), "{created:?}");
}

/// beast's driver, for as long as it lives: removed when dropped, so that the other tests see a
/// beast without one.
struct Driver(PathBuf);

impl Driver {
    fn install() -> Self {
        let dir = on_beast(Path::new("/run/vlmctl-fake-nvidia"));
        std::fs::create_dir_all(&dir).expect("beast's /run/vlmctl-fake-nvidia");
        let smi = dir.join("nvidia-smi");
        std::fs::write(&smi, stand_in()).expect("the stand-in nvidia-smi");
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self(dir)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Containers on beast that `filter` matches, running or not.
fn on_beast_listed(filter: &str) -> String {
    let out = beast_docker()
        .args(["ps", "-aq", "--filter", filter])
        .output()
        .expect("docker ps on beast");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The README's CPU deployment on beast as a GPU spec (every layer asked for) with the
/// runbook's kind of ceiling (far lower here), served by the "GPU llama-server": the gate before
/// launch reads beast's free memory (a GB10: `MemAvailable`, in the same helper container on
/// beast that found the GB10, which only beast's stand-in reports: this machine has no
/// `nvidia-smi`). beast shares this machine's kernel, so the figure itself cannot tell the two
/// `/proc/meminfo` apart; the test asserts the GB10 fallback's evidence, and
/// `vlmctl_lifecycle::gpu`'s unit test `another_hosts_answer_maps_the_servers_pid_to_its_
/// container_and_reads_its_memory` that the figure is the helper's. The GPU probe proves the
/// model on the GPU; the server's 9000 MiB, found through its host PID and cgroup, breach the
/// ceiling, and provision fails with exit 8 naming both; the run is undone on beast: no server,
/// no probe container (nor the one a killed vlmctl left), the conflict it stopped running again
/// and proven alive, no `ssh` left, no record.
#[test]
fn a_ceiling_breach_on_beast_fails_provision_with_exit_8_and_leaves_nothing_there() {
    let state = tempfile::tempdir().expect("state");
    let good = Env::require("VLMCTL_TEST_SSH_CONFIG");
    let _guard = beast_guard("vlmctl-cpu-test");
    let run_guard = LabelGuard::new("hostsgpu").on(&Env::require("VLMCTL_TEST_BEAST_DOCKER"));
    let conflict = run_guard.conflict(&state.path().join("busybox-ctx"), 1);
    let image = gpu_server_image(&run_guard, &state.path().join("gpu-server-ctx"));
    let spec = gpu_spec(state.path(), &image, &conflict);
    let _driver = Driver::install();
    // A probe container that a vlmctl of this machine, killed with SIGKILL, left on beast (its
    // owner, pid 4294967295 here, is gone): the next probe from this machine removes it.
    let leftover = "vlmctl-test-leftover-gpu-probe";
    let _leftover = beast_guard(leftover);
    leave_a_killed_runs_helper(leftover);

    let (code, out, err) = run(cmd(state.path(), &good)
        .args([
            "provision",
            "--host",
            &beast(),
            "--stop",
            &conflict,
            "--spec",
        ])
        .arg(&spec)
        .args(["--lock", "examples/cpu-test.lock"])
        .args(readme_dir_args()));
    let said = format!("{out}\n{err}");
    assert!(
        !said.contains("could not select device driver"),
        "beast's dockerd has no \"nvidia\" driver: scripts/lib/start-beast.sh restarts it with \
         the no-op hook on its PATH\n{said}"
    );
    assert_eq!(code, 8, "exit 8 (server), got {code}\n{said}");
    assert!(
        said.contains("GPU probe of vlmctl-cpu-test loaded the model")
            && !said.contains("does not run the model on the GPU")
            && said.contains("started vlmctl-cpu-test"),
        "the probe proved the model on beast's GPU, then the server started: {said}"
    );
    assert!(
        said.contains("MiB free (unified memory: the host's /proc/meminfo MemAvailable), need 1"),
        "the GPU gate read beast's free memory there: {said}"
    );
    assert!(
        err.contains(&format!(
            "vlmctl-cpu-test uses {SERVER_MIB} MiB of GPU memory, above max_process_mib = 64"
        )),
        "the ceiling and the figure, measured on beast: {said}"
    );
    assert!(
        err.contains(&format!("restored {conflict}")),
        "the error says what was undone: {said}"
    );
    assert!(
        on_beast_listed("name=^vlmctl-cpu-test$").is_empty(),
        "the server was removed from beast: {said}"
    );
    assert!(
        on_beast_listed("label=org.vlmctl.helper").is_empty(),
        "no GPU helper container left on beast, the killed run's included: {said}"
    );
    assert!(
        on_beast_listed("label=org.vlmctl.probe-of=vlmctl-cpu-test").is_empty()
            && on_beast_listed("name=^vlmctl-cpu-test-vlmctl-probe$").is_empty(),
        "the GPU probe was removed from beast: {said}"
    );
    assert!(
        running_on_beast(&conflict),
        "the conflict runs again: {said}"
    );
    assert!(
        !said.contains("NOT proven alive"),
        "and is proven alive: {said}"
    );
    assert!(ssh_left(&beast_port()).is_empty(), "no ssh left behind");
    let records: Vec<_> = std::fs::read_dir(state.path().join("hosts"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("records/vlmctl-cpu-test.json"))
        .filter(|r| r.exists())
        .collect();
    assert!(
        records.is_empty(),
        "no record for a failed run: {records:?}"
    );
}
