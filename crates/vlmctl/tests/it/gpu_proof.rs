//! The proof that the model runs on the GPU (issue #11), end to end with the real daemon and the
//! real CPU llama-server image: a spec that asks for GPUs gets a server that runs on the CPU,
//! as on a host whose container toolkit gives the container no GPU, and provision must fail
//! with exit 8, the log line and a hint, and undo what it did. Since issue #23 the evidence
//! comes from the one-shot GPU probe (verbosity 4, no network) that runs before the launch:
//! it must be gone afterwards, and one that a killed run left must be removed by the next run.
//!
//! dockerd must accept `--gpus`: `scripts/test` starts it with a no-op
//! `nvidia-container-runtime-hook` on its PATH (`scripts/lib/fake-nvidia/`), which registers
//! the "nvidia" device driver and gives the container nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;

use std::process::Command;
use std::time::Duration;

use crate::common::{Env, free_port, poll_until, run, signal, vlmctl};
use crate::deploy_real::{Run, docker, running};
use vlmctl_test::LabelGuard;

/// A stand-in `nvidia-smi` on vlmctl's PATH, answering the two queries vlmctl makes
/// (`vlmctl_lifecycle::gpu::GPU_QUERY`, `APPS_QUERY`) like the real tool on a host with an idle
/// H100: plenty of free memory, and no compute process, which is what nvidia-smi shows for a
/// llama-server that found no CUDA device (it never opens a CUDA context).
fn fake_nvidia_smi(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("nvidia-smi");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         case \"$1\" in\n\
         \x20 --query-gpu=*) echo 'NVIDIA H100 80GB HBM3, 81559, 1, 81558, 9.0, 570.124.06' ;;\n\
         \x20 --query-compute-apps=*) ;;\n\
         \x20 *) echo \"unexpected: $*\" >&2; exit 64 ;;\n\
         esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The ids of the GPU probes of `server`, found by their label, running or not.
fn probes_of(server: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.vlmctl.probe-of={server}"),
    ])
}

/// The ids of the running GPU probes of `server`.
fn probes_running(server: &str) -> String {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=org.vlmctl.probe-of={server}"),
    ])
}

/// Creates (does not start) what a run killed during its GPU probe leaves: a container named
/// and labelled as that probe. Returns its id.
fn left_probe(server: &str, image: &str) -> String {
    docker(&[
        "create",
        "--name",
        &format!("{server}-vlmctl-probe"),
        "--label",
        &format!("org.vlmctl.probe-of={server}"),
        image,
    ])
}

/// `provision --yes` of a spec that asks for every GPU and every layer on it, with `image`, the
/// 270M lock, a busybox conflict and the stand-in nvidia-smi: (exit code, stdout, stderr,
/// server name, conflict name).
fn provision_gpu_spec(r: &Run, image: &str, server: &str) -> (i32, String, String, String, String) {
    let (mut cmd, conflict) = gpu_spec_provision(r, image, server);
    let (code, out, err) = run(&mut cmd);
    assert!(
        !err.contains("could not select device driver"),
        "dockerd has no \"nvidia\" device driver, so no GPU spec can launch here: restart \
         dockerd through scripts/test, which puts a no-op nvidia-container-runtime-hook on its \
         PATH (scripts/lib/fake-nvidia/)\n{err}"
    );
    (code, out, err, server.to_owned(), conflict)
}

/// The command of [`provision_gpu_spec`], not run yet, and the conflict's name.
fn gpu_spec_provision(r: &Run, image: &str, server: &str) -> (Command, String) {
    let conflict = r.conflict();
    let spec = r.path("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"{server}\"\nimage = \"{image}\"\nmodel = \"gemma-3-270m-q4km\"\ngpus = \"all\"\n\
             restart = \"no\"\n[server]\nhost = \"127.0.0.1\"\nport = {}\nctx_size = 1024\n\
             n_gpu_layers = 999\nthreads = 1\n[health]\ntimeout_s = 90\n\
             [[conflict]]\nname = \"{conflict}\"\n",
            free_port()
        ),
    )
    .unwrap();
    // The 270M lock (as examples/cpu-test.lock), served from where scripts/test put the GGUF.
    let model = Env::require("VLMCTL_TEST_MODEL");
    let model = Path::new(&model);
    let lock = r.path("weights.lock");
    std::fs::write(
        &lock,
        vlmctl_test::model::lock("gemma-3-270m-q4km", model.parent().unwrap()),
    )
    .unwrap();
    let bin = r.path("bin");
    fake_nvidia_smi(&bin);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = vlmctl();
    cmd.args(["provision", "--yes", "--spec"])
        .arg(&spec)
        .env("VLMCTL_LOCK", &lock)
        .env("VLMCTL_STATE_DIR", r.path("state"))
        .env("PATH", &path)
        .stdin(Stdio::null());
    (cmd, conflict)
}

/// SIGTERM (and SIGINT alike: one `Cancel`) while the probe loads: the wait ends at once, the
/// probe is removed and the run undone (the conflict it stopped runs again), exit 130. The
/// probe's "server" is a busybox that never finishes loading.
#[test]
fn a_signal_while_the_probe_loads_removes_it_and_undoes_the_run() {
    let r = Run::new("probesig");
    let tag = slow_loading_image(&r);
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let (mut cmd, conflict) = gpu_spec_provision(&r, &tag, &server);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vlmctl");
    poll_until("the probe runs", Duration::from_secs(60), || {
        !probes_running(&server).is_empty()
    });
    signal("TERM", &child.id().to_string());
    let out = child.wait_with_output().expect("vlmctl ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert_eq!(probes_of(&server), "", "the probe was removed: {err}");
    assert!(running(&conflict), "the conflict runs again: {err}");
    assert!(err.contains(&format!("restored {conflict}")), "{err}");
}

#[test]
fn a_gpu_spec_whose_server_runs_on_the_cpu_fails_with_the_evidence_and_is_undone() {
    let r = Run::new("gpuproof");
    let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    // What a provision killed with SIGKILL while its probe loaded leaves: the probe, created
    // (running or not), under its label. This run must remove it, then make its own.
    let leftover = left_probe(&server, &image);
    let (code, out, err, server, conflict) = provision_gpu_spec(&r, &image, &server);
    assert_eq!(code, 8, "exit 8 (server), got {code}\n{out}\n{err}");
    assert!(
        err.contains(&format!(
            "warning: removed {server}-vlmctl-probe left by a run that was killed"
        )),
        "{err}"
    );
    assert!(
        !docker(&["ps", "-aq", "--no-trunc"]).contains(&leftover),
        "the leftover probe was removed: {err}"
    );
    // The probe was said while it loaded, and is gone: by its label, nothing is left.
    assert!(
        err.contains(&format!(
            "probing the GPU for {server}: loading the model once"
        )),
        "{err}"
    );
    assert_eq!(probes_of(&server), "", "no probe is left: {err}");
    // The evidence, quoted from the real server's log, and what to do.
    assert!(
        err.contains(&format!(
            "{server} does not run the model on the GPU: the server found no CUDA device; its \
             log says: \"warning: no usable GPU found, --gpu-layers option will be ignored\""
        )),
        "{err}"
    );
    // Where the weights went: logged only at the verbosity the probe runs at (4).
    assert!(
        err.contains("load_tensors:   CPU_Mapped model buffer size =   235.16 MiB"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hint: the container sees no GPU, or the image has no CUDA backend: check the NVIDIA \
             container toolkit: `docker run --rm --gpus all {} nvidia-smi` must list the GPU",
            Env::require("VLMCTL_TEST_LLAMA_IMAGE")
        )),
        "{err}"
    );
    // Undone: the server removed, the conflict running again, no record.
    assert!(
        err.contains(&format!("restored {conflict}")),
        "the error says what was undone: {err}"
    );
    let left = docker(&["ps", "-aq", "--filter", &format!("name=^{server}$")]);
    assert!(
        left.is_empty(),
        "the server container was never created (the probe failed first): {err}"
    );
    assert!(running(&conflict), "the conflict runs again: {err}");
    assert!(
        !r.path("state/records")
            .join(format!("{server}.json"))
            .exists(),
        "no record for a failed run"
    );
}

/// A CUDA image without kernels for the GPU: llama-server finds the device, then aborts at the
/// first kernel launch with `CUDA error: no kernel image is available for execution on the
/// device` (ggml-cuda.cu's `ggml_cuda_error`). A busybox image prints those lines (built from
/// the source's format strings, with a GB10's compute capability 12.1) and exits with SIGABRT's
/// code, as that server does; provision must say what the log means, not only that it exited.
#[test]
fn a_gpu_server_that_dies_of_a_cuda_error_gets_the_kernels_hint_and_is_undone() {
    let r = Run::new("gpuabort");
    let ctx = r.path("abort-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(Env::require("VLMCTL_TEST_BUSYBOX"), ctx.join("busybox")).unwrap();
    let script = "echo 'ggml_cuda_init: found 1 CUDA devices (Total VRAM: 124546 MiB):' >&2; \
                  echo '  Device 0: NVIDIA GB10, compute capability 12.1, VMM: yes, VRAM: 124546 MiB' >&2; \
                  echo 'load_tensors: offloaded 19/19 layers to GPU' >&2; \
                  echo 'CUDA error: no kernel image is available for execution on the device' >&2; \
                  echo '  current device: 0, in function ggml_cuda_compute_forward' >&2; \
                  exit 134";
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             ENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\", {}, \"llama-server\"]\n",
            serde_json::to_string(script).unwrap()
        ),
    )
    .unwrap();
    let tag = r.build_image("cuda-abort", &ctx);

    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let (code, out, err, server, conflict) = provision_gpu_spec(&r, &tag, &server);
    assert_eq!(code, 8, "{out}\n{err}");
    // It was the probe that died (the deployment was never created), and it is gone.
    assert!(
        err.contains(&format!("{server}-vlmctl-probe exited")),
        "{err}"
    );
    assert_eq!(probes_of(&server), "", "no probe is left: {err}");
    assert!(err.contains("exited") && err.contains("134"), "{err}");
    assert!(
        err.contains(
            "hint: the image has no kernels for compute capability 12.1: use server-cuda13 or \
             build from source"
        ),
        "{err}"
    );
    assert!(err.contains(&format!("restored {conflict}")), "{err}");
    assert!(running(&conflict), "the conflict runs again: {err}");
}

/// `kill -9` while the probe loads leaves it running, and the conflict stopped: the next
/// provision undoes that dead run first (the conflict started again, the probe removed by the
/// run's label), then runs its own (here on the CPU image: exit 8, undone), and nothing is left.
#[test]
fn a_probe_left_by_kill_9_is_removed_by_the_next_provision() {
    let r = Run::new("probekill");
    let tag = slow_loading_image(&r);
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let (mut cmd, conflict) = gpu_spec_provision(&r, &tag, &server);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vlmctl");
    poll_until("the probe runs", Duration::from_secs(60), || {
        !probes_running(&server).is_empty()
    });
    signal("9", &child.id().to_string());
    child.wait().expect("vlmctl ends");
    assert_ne!(
        probes_running(&server),
        "",
        "kill -9 left the probe running"
    );
    assert!(!running(&conflict), "and the conflict stopped");
    // The next provision of the deployment, on the CPU image (the spec written again).
    let spec = r.path("spec.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace(&tag, &Env::require("VLMCTL_TEST_LLAMA_IMAGE")),
    )
    .unwrap();
    let (code, out, err) = run(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
    assert_eq!(code, 8, "{out}\n{err}");
    assert_eq!(probes_of(&server), "", "no probe is left: {err}");
    assert!(running(&conflict), "the conflict runs again: {err}");
}

/// An image whose "llama-server" says it is loading and never finishes.
fn slow_loading_image(r: &Run) -> String {
    let ctx = r.path("slow-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(Env::require("VLMCTL_TEST_BUSYBOX"), ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         ENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\", \"echo 'load_model: loading model' >&2; exec /bin/busybox sleep 600\", \"llama-server\"]\n",
    )
    .unwrap();
    r.build_image("slow-load", &ctx)
}

/// A probe that a killed provision left is removed by the deployment's teardown, and by
/// `restore` (which finds it by its label, with no journal to go by).
#[test]
fn teardown_and_restore_remove_a_probe_that_a_killed_run_left() {
    let r = Run::new("probeleft");
    let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let state = r.path("state");
    for args in [vec!["teardown", server.as_str()], vec!["restore"]] {
        left_probe(&server, &image);
        assert_ne!(probes_of(&server), "");
        let (code, out, err) = run(vlmctl()
            .args(&args)
            .env("VLMCTL_STATE_DIR", &state)
            .stdin(Stdio::null()));
        assert_eq!(code, 0, "{args:?}: {out}\n{err}");
        assert_eq!(probes_of(&server), "", "{args:?} removed the probe: {err}");
        assert!(
            err.contains(&format!(
                "removed {server}-vlmctl-probe left by a run that was killed"
            )),
            "{args:?}: {err}"
        );
    }
}
