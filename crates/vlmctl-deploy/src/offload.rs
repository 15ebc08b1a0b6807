//! Proof that the model runs on the GPU (issue #11): a CUDA image without kernels for the GPU,
//! or a container that gets no GPU, runs llama.cpp on the CPU at a fraction of the speed and
//! answers every request all the same. [`parse`] reads a llama-server log into [`LogEvidence`]
//! (the CUDA devices it found, the layers it offloaded, the failures it logged) and [`decide`]
//! weighs it, with the server's GPU memory from `nvidia-smi`, into a [`Proof`] or a
//! [`Shortfall`]. All pure; provision reads the logs and nvidia-smi.
//!
//! Two logs (issue #23): the devices and layers are logged only at verbosity 4, where
//! llama-server also logs about 35 trace lines per request, so the deployment runs at 3 and
//! the evidence comes from a one-shot probe that loads the same model in the same image with
//! the same GPU request and arguments at 4, before the launch
//! (`vlmctl_lifecycle::containers::ContainerPlan::probe`, which says why that is sound). The
//! probe's log goes to [`decide`] (without a memory figure: it fails fast, before the
//! launch), and again after the deployment's smoke request with the deployment's GPU memory,
//! after [`check_server`] read the deployment's own log (at 3) for the failures llama.cpp logs
//! at that verbosity.
//!
//! The lines matched are llama.cpp's (build 11434, the one the tests run):
//! `ggml/src/ggml-cuda/ggml-cuda.cu` (`ggml_cuda_init: found %d CUDA devices (Total VRAM: %zu
//! MiB):`, `  Device %d: %s, compute capability %d.%d, VMM: %s, VRAM: %zu MiB`, `%s: failed to
//! initialize CUDA: %s`, `CUDA error: %s`), `src/llama-model.cpp` (`load_tensors: offloaded %d/%d
//! layers to GPU`, logged only by a build that can offload, and `load_tensors: %12s model buffer
//! size = %8.2f MiB`) and `common/arg.cpp` (`warning: no usable GPU found, --gpu-layers option
//! will be ignored`). Each may follow the log's `0.01.272.518 I ` prefix.

pub use crate::types::{NotOnGpu, Shortfall};
use serde::Serialize;

/// A CUDA device, as llama-server found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CudaDevice {
    /// CUDA device index.
    pub index: u32,
    /// e.g. `NVIDIA GB10`.
    pub name: String,
    /// e.g. `12.1`.
    pub compute_cap: String,
    /// Its memory, as CUDA reports it.
    pub vram_mib: Option<u64>,
}

/// `offloaded N/M layers to GPU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Offloaded {
    /// Layers on the GPU (N).
    pub layers: u32,
    /// Layers the model has, its output layer included (M).
    pub of: u32,
}

/// One `model buffer size` line: where the weights went (`CUDA0`, `CPU_Mapped`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelBuffer {
    /// Buffer type.
    pub buffer: String,
    /// Its size.
    pub mib: f64,
}

/// What the server's log says about where the model runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LogEvidence {
    /// CUDA devices found.
    pub devices: Vec<CudaDevice>,
    /// Why CUDA could not be initialized (e.g. `no CUDA-capable device is detected`).
    pub cuda_init_failed: Option<String>,
    /// The layers offloaded to the GPU.
    pub offloaded: Option<Offloaded>,
    /// `warning: no usable GPU found`: the server ignores `-ngl`.
    pub no_usable_gpu: bool,
    /// `CUDA error: ...` messages (e.g. `no kernel image is available for execution on the
    /// device`).
    pub cuda_errors: Vec<String>,
    /// Where the weights went.
    pub model_buffers: Vec<ModelBuffer>,
    /// The log lines all this was read from, verbatim (prefix and trailing space trimmed).
    pub lines: Vec<String>,
}

/// The message of a log line: after the `0.01.272.518 I ` prefix the server's log adds, if any.
fn message(line: &str) -> &str {
    let t = line.trim();
    let mut parts = t.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ts), Some(level), Some(rest))
            if ts.split('.').count() == 4
                && ts.split('.').all(|p| p.chars().all(|c| c.is_ascii_digit()))
                && level.len() == 1 =>
        {
            rest
        }
        _ => t,
    }
}

fn parse_device(msg: &str) -> Option<CudaDevice> {
    let rest = msg.trim_start().strip_prefix("Device ")?;
    let (index, rest) = rest.split_once(": ")?;
    let (name, rest) = rest.split_once(", compute capability ")?;
    let compute_cap = rest.split(',').next()?.trim().to_owned();
    let vram_mib = rest
        .split_once("VRAM: ")
        .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok());
    Some(CudaDevice {
        index: index.trim().parse().ok()?,
        name: name.trim().to_owned(),
        compute_cap,
        vram_mib,
    })
}

fn parse_offloaded(msg: &str) -> Option<Offloaded> {
    let (_, rest) = msg.split_once("offloaded ")?;
    let (counts, _) = rest.split_once(" layers to GPU")?;
    let (layers, of) = counts.split_once('/')?;
    Some(Offloaded {
        layers: layers.trim().parse().ok()?,
        of: of.trim().parse().ok()?,
    })
}

fn parse_buffer(msg: &str) -> Option<ModelBuffer> {
    let rest = msg.strip_prefix("load_tensors:")?;
    let (buffer, size) = rest.split_once(" model buffer size =")?;
    Some(ModelBuffer {
        buffer: buffer.trim().to_owned(),
        mib: size.trim().trim_end_matches("MiB").trim().parse().ok()?,
    })
}

/// Reads llama-server's log (its start: this is all logged while the model loads).
#[must_use]
pub fn parse(log: &str) -> LogEvidence {
    let mut ev = LogEvidence::default();
    for line in log.lines() {
        let msg = message(line);
        let matched = if msg.contains("ggml_cuda_init: found ") {
            true
        } else if let Some(d) = parse_device(msg) {
            ev.devices.push(d);
            true
        } else if let Some((_, why)) = msg.split_once("failed to initialize CUDA: ") {
            ev.cuda_init_failed = Some(why.trim().to_owned());
            true
        } else if let Some(o) = parse_offloaded(msg) {
            ev.offloaded = Some(o);
            true
        } else if msg.contains("no usable GPU found") {
            ev.no_usable_gpu = true;
            true
        } else if let Some((_, why)) = msg.split_once("CUDA error: ") {
            ev.cuda_errors.push(why.trim().to_owned());
            true
        } else if let Some(b) = parse_buffer(msg) {
            ev.model_buffers.push(b);
            true
        } else {
            false
        };
        if matched {
            ev.lines.push(line.trim().to_owned());
        }
    }
    ev
}

/// What the spec and the lock ask of the server.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// `server.n_gpu_layers`.
    pub n_gpu_layers: u32,
    /// `memory.min_process_mib` (0: no floor).
    pub min_process_mib: Option<u64>,
    /// Sum of the lock entry's file sizes (model and projector), in bytes.
    pub model_bytes: u64,
    /// The image (for the hint).
    pub image: &'a str,
}

/// The GPU memory floor: `min_process_mib` when set (0: none), else 80 % of the model's files,
/// which a server that runs the model on the GPU holds (weights are loaded whole; its KV cache
/// and compute buffers come on top).
#[must_use]
pub fn floor_mib(min_process_mib: Option<u64>, model_bytes: u64) -> Option<u64> {
    match min_process_mib {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(model_bytes / 10 * 8 / (1024 * 1024)),
    }
}

/// The evidence that the model runs on the GPU, for the record and the success line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proof {
    /// CUDA devices the server found.
    pub devices: Vec<CudaDevice>,
    /// Layers offloaded.
    pub offloaded: Option<Offloaded>,
    /// Layers asked for: `min(n_gpu_layers, M)`.
    pub expected_layers: u32,
    /// Where the weights went.
    pub model_buffers: Vec<ModelBuffer>,
    /// The server's GPU memory from `nvidia-smi`; `None` where it gives no per-process figure.
    pub process_mib: Option<u64>,
    /// The floor it was held to, if any.
    pub floor_mib: Option<u64>,
    /// What was not checked, and why.
    pub notes: Vec<String>,
    /// The log lines read.
    pub log_lines: Vec<String>,
}

impl Proof {
    /// One line: `NVIDIA H100 80GB HBM3 (sm 9.0), 19/19 layers, 914 MiB`.
    #[must_use]
    pub fn summary(&self) -> String {
        let device = self.devices.first().map_or_else(
            || "no CUDA device".to_owned(),
            |d| format!("{} (sm {})", d.name, d.compute_cap),
        );
        let layers = self.offloaded.map_or_else(
            || "layers unknown".to_owned(),
            |o| format!("{}/{} layers", o.layers, o.of),
        );
        let memory = self.process_mib.map_or_else(
            || "GPU memory figure unavailable".to_owned(),
            |m| format!("{m} MiB"),
        );
        format!("{device}, {layers}, {memory}")
    }
}

/// Whether the proof was made, for the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GpuProof {
    /// The spec asks for no GPU.
    NotChecked {
        /// Why.
        why: String,
    },
    /// The model runs on the GPU.
    Proven(Proof),
}

/// Pure: the hint for a server that exited while loading, when its log says CUDA failed (a
/// `CUDA error`, or CUDA that could not start); `None` when the log says nothing of CUDA.
#[must_use]
pub fn cuda_failure_hint(ev: &LogEvidence, image: &str) -> Option<String> {
    let cc = ev.devices.first().map(|d| d.compute_cap.as_str());
    let shortfall = if let Some(message) = ev.cuda_errors.first() {
        Shortfall::CudaError {
            message: message.clone(),
        }
    } else {
        Shortfall::NoDevice {
            cuda_says: Some(ev.cuda_init_failed.clone()?),
        }
    };
    Some(shortfall.hint(image, cc))
}

/// Pure: the deployment's own log, at the verbosity it runs at (3), where llama.cpp still logs
/// the GPU failures: a CUDA error, CUDA that could not start, no usable GPU (`-ngl` ignored).
/// The probe found the GPU; this says the server that serves found it too.
pub fn check_server(server: &LogEvidence) -> Result<(), Shortfall> {
    if let Some(message) = server.cuda_errors.first() {
        return Err(Shortfall::CudaError {
            message: message.clone(),
        });
    }
    if server.cuda_init_failed.is_some() || server.no_usable_gpu {
        return Err(Shortfall::NoDevice {
            cuda_says: server.cuda_init_failed.clone(),
        });
    }
    Ok(())
}

/// Pure: the evidence, and the server's GPU memory (`None`: `nvidia-smi` gave no per-process
/// figure), against what was asked. Expected on the GPU: `min(n_gpu_layers, M)` layers (a spec
/// that asks for fewer on purpose passes); the memory floor holds only when all are asked for.
pub fn decide(
    ev: &LogEvidence,
    expect: &Expect<'_>,
    process_mib: Option<u64>,
) -> Result<Proof, Shortfall> {
    if let Some(message) = ev.cuda_errors.first() {
        return Err(Shortfall::CudaError {
            message: message.clone(),
        });
    }
    if ev.devices.is_empty() {
        return Err(Shortfall::NoDevice {
            cuda_says: ev.cuda_init_failed.clone(),
        });
    }
    let Some(offloaded) = ev.offloaded else {
        return Err(Shortfall::NoOffloadLine);
    };
    let expected = expect.n_gpu_layers.min(offloaded.of);
    if offloaded.layers < expected {
        return Err(Shortfall::Partial {
            layers: offloaded.layers,
            of: offloaded.of,
            expected,
        });
    }
    let mut notes = Vec::new();
    let floor = match floor_mib(expect.min_process_mib, expect.model_bytes) {
        Some(_) if expect.min_process_mib.is_none() && expected < offloaded.of => {
            notes.push(format!(
                "no memory floor: {expected}/{} layers asked for, so 80 % of the model's size \
                 does not apply (set memory.min_process_mib for one)",
                offloaded.of
            ));
            None
        }
        f => f,
    };
    match (floor, process_mib) {
        (Some(floor_mib), Some(used_mib)) if used_mib < floor_mib => {
            return Err(Shortfall::BelowFloor {
                used_mib,
                floor_mib,
            });
        }
        (Some(_), None) => notes.push(
            "nvidia-smi gave no per-process GPU memory figure for the server: the log decided"
                .to_owned(),
        ),
        _ => {}
    }
    Ok(Proof {
        devices: ev.devices.clone(),
        offloaded: Some(offloaded),
        expected_layers: expected,
        model_buffers: ev.model_buffers.clone(),
        process_mib,
        floor_mib: floor,
        notes,
        log_lines: ev.lines.clone(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_that_died_of_a_cuda_error_while_loading_gets_the_proofs_hint() {
        let ev = parse(GB10_NO_KERNELS);
        let hint = cuda_failure_hint(&ev, "ghcr.io/ggml-org/llama.cpp:server-cuda").unwrap();
        assert!(
            hint.contains("no kernels for compute capability 12.1: use server-cuda13"),
            "{hint}"
        );
        assert_eq!(
            cuda_failure_hint(&parse("main: loading model\n"), "i"),
            None
        );
    }

    use super::*;

    /// Real: the first 150 lines of stderr of the CPU llama-server the tests run (llama.cpp
    /// build 11434, `scripts/test`'s static CPU build) with the 270M GGUF, `-ngl 999
    /// -lv 4` (the verbosity of vlmctl's GPU probe).
    const CPU_LV4: &str = include_str!("testdata/cpu-server-11434-lv4.log");
    /// Real: the same server at its default verbosity (3), up to "listening".
    const CPU_LV3: &str = include_str!("testdata/cpu-server-11434-lv3.log");

    /// Built from llama.cpp's format strings (ggml-cuda.cu:267, :345; llama-model.cpp:1913-1926,
    /// with the server log's prefix), not captured: no CUDA here. An H100 with the 270M model
    /// (18 layers + output).
    const H100: &str = "\
0.00.118.204 I ggml_cuda_init: found 1 CUDA devices (Total VRAM: 81089 MiB):
0.00.118.230 I   Device 0: NVIDIA H100 80GB HBM3, compute capability 9.0, VMM: yes, VRAM: 81089 MiB
0.01.250.103 I load_tensors: loading model tensors, this can take a while... (load_mode = mmap)
0.01.262.950 I load_tensors: offloading output layer to GPU
0.01.262.951 I load_tensors: offloading 17 repeating layers to GPU
0.01.262.951 I load_tensors: offloaded 19/19 layers to GPU
0.01.272.518 I load_tensors:        CUDA0 model buffer size =   235.16 MiB
0.01.272.538 I load_tensors:   CPU_Mapped model buffer size =    42.00 MiB
";

    /// Built from the format strings (ggml-cuda.cu:267, :345, and `ggml_cuda_error`'s `CUDA
    /// error: %s` at :105): a GB10 on an image without sm 12.1 kernels.
    const GB10_NO_KERNELS: &str = "\
0.00.201.004 I ggml_cuda_init: found 1 CUDA devices (Total VRAM: 124546 MiB):
0.00.201.040 I   Device 0: NVIDIA GB10, compute capability 12.1, VMM: yes, VRAM: 124546 MiB
0.01.262.951 I load_tensors: offloaded 19/19 layers to GPU
CUDA error: no kernel image is available for execution on the device
  current device: 0, in function ggml_cuda_compute_forward at /app/ggml/src/ggml-cuda/ggml-cuda.cu:2751
";

    const MODEL_BYTES: u64 = 253_113_024;

    fn expect(image: &str) -> Expect<'_> {
        Expect {
            n_gpu_layers: 999,
            min_process_mib: None,
            model_bytes: MODEL_BYTES,
            image,
        }
    }

    #[test]
    fn the_real_cpu_server_found_no_cuda_device_and_offloaded_nothing() {
        for log in [CPU_LV4, CPU_LV3] {
            let ev = parse(log);
            assert!(ev.devices.is_empty());
            assert!(ev.no_usable_gpu);
            assert_eq!(ev.offloaded, None, "a CPU build does not log offloading");
            assert_eq!(ev.cuda_init_failed, None);
            assert!(ev.cuda_errors.is_empty());
            assert_eq!(
                ev.lines[0],
                "warning: no usable GPU found, --gpu-layers option will be ignored"
            );
            let e = decide(&ev, &expect("vlmctl-test/llama-server:cpu"), None).unwrap_err();
            assert_eq!(e, Shortfall::NoDevice { cuda_says: None });
            let hint = e.hint("vlmctl-test/llama-server:cpu", None);
            assert!(
                hint.contains("docker run --rm --gpus all vlmctl-test/llama-server:cpu nvidia-smi"),
                "{hint}"
            );
        }
        // Only at verbosity 4 does the log say where the weights went.
        assert_eq!(
            parse(CPU_LV4).model_buffers,
            [
                ModelBuffer {
                    buffer: "CPU_Mapped".into(),
                    mib: 235.16
                },
                ModelBuffer {
                    buffer: "CPU_REPACK".into(),
                    mib: 12.66
                }
            ]
        );
        assert!(parse(CPU_LV3).model_buffers.is_empty());
    }

    /// The deployment runs at 3: its own log (the real CPU server's, at 3) still shows a CPU
    /// fallback, whatever the probe said; a server whose log at 3 says nothing of the GPU (what
    /// a CUDA server that found its device logs at 3) passes on to the probe's evidence.
    #[test]
    fn the_servers_own_log_at_verbosity_3_still_fails_a_cpu_fallback() {
        assert_eq!(
            check_server(&parse(CPU_LV3)),
            Err(Shortfall::NoDevice { cuda_says: None })
        );
        assert!(matches!(
            check_server(&parse(GB10_NO_KERNELS)),
            Err(Shortfall::CudaError { .. })
        ));
        let init = "0.00.003.901 E ggml_cuda_init: failed to initialize CUDA: no CUDA-capable \
                    device is detected\n";
        assert_eq!(
            check_server(&parse(init)),
            Err(Shortfall::NoDevice {
                cuda_says: Some("no CUDA-capable device is detected".into())
            })
        );
        // At 3 the probe's evidence lines are not there: nothing to object to.
        let quiet: String = CPU_LV3
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("warning:"))
            .collect();
        assert_eq!(check_server(&parse(&quiet)), Ok(()));
        assert!(
            parse(&quiet).devices.is_empty(),
            "devices are logged at 4 only"
        );
    }

    #[test]
    fn a_fully_offloaded_server_above_the_floor_is_proven() {
        let ev = parse(H100);
        assert_eq!(
            ev.devices,
            [CudaDevice {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                compute_cap: "9.0".into(),
                vram_mib: Some(81089),
            }]
        );
        assert_eq!(ev.offloaded, Some(Offloaded { layers: 19, of: 19 }));
        assert_eq!(ev.model_buffers[0].buffer, "CUDA0");
        let p = decide(
            &ev,
            &expect("ghcr.io/ggml-org/llama.cpp:server-cuda"),
            Some(914),
        )
        .unwrap();
        assert_eq!(p.expected_layers, 19);
        assert_eq!(p.floor_mib, Some(193), "80 % of 253113024 bytes, in MiB");
        assert_eq!(
            p.summary(),
            "NVIDIA H100 80GB HBM3 (sm 9.0), 19/19 layers, 914 MiB"
        );
        assert!(p.notes.is_empty());
        // At the floor passes; below it fails.
        assert!(decide(&ev, &expect("i"), Some(193)).is_ok());
        assert_eq!(
            decide(&ev, &expect("i"), Some(192)).unwrap_err(),
            Shortfall::BelowFloor {
                used_mib: 192,
                floor_mib: 193
            }
        );
    }

    #[test]
    fn the_floor_is_80_percent_of_the_files_or_min_process_mib_and_0_turns_it_off() {
        assert_eq!(floor_mib(None, 10 * 1024 * 1024 * 1024), Some(8192));
        assert_eq!(floor_mib(Some(3000), 10 * 1024 * 1024 * 1024), Some(3000));
        assert_eq!(floor_mib(Some(0), 10 * 1024 * 1024 * 1024), None);
        let ev = parse(H100);
        let mut e = expect("i");
        e.min_process_mib = Some(1000);
        assert!(matches!(
            decide(&ev, &e, Some(914)),
            Err(Shortfall::BelowFloor {
                floor_mib: 1000,
                ..
            })
        ));
        e.min_process_mib = Some(0);
        let p = decide(&ev, &e, Some(1)).unwrap();
        assert_eq!(p.floor_mib, None);
    }

    #[test]
    fn without_a_per_process_figure_the_log_decides_and_says_so() {
        let p = decide(&parse(H100), &expect("i"), None).unwrap();
        assert_eq!(p.process_mib, None);
        assert_eq!(
            p.notes,
            ["nvidia-smi gave no per-process GPU memory figure for the server: the log decided"]
        );
        assert_eq!(
            p.summary(),
            "NVIDIA H100 80GB HBM3 (sm 9.0), 19/19 layers, GPU memory figure unavailable"
        );
    }

    #[test]
    fn fewer_layers_than_asked_fails_fewer_asked_on_purpose_passes() {
        let partial = H100.replace("offloaded 19/19", "offloaded 10/19");
        let ev = parse(&partial);
        let e = decide(&ev, &expect("i"), Some(914)).unwrap_err();
        assert_eq!(
            e,
            Shortfall::Partial {
                layers: 10,
                of: 19,
                expected: 19
            }
        );
        assert_eq!(
            e.to_string(),
            "only 10/19 layers were offloaded to the GPU (19 asked for)"
        );
        assert!(
            e.hint("i", Some("9.0"))
                .contains("raise server.n_gpu_layers")
        );
        // n_gpu_layers = 10: what was asked; the 80 % floor does not hold for part of a model.
        let mut asked = expect("i");
        asked.n_gpu_layers = 10;
        let p = decide(&ev, &asked, Some(120)).unwrap();
        assert_eq!(p.expected_layers, 10);
        assert_eq!(p.floor_mib, None);
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    }

    #[test]
    fn a_gb10_on_an_image_without_its_kernels_is_sent_to_cuda13() {
        let ev = parse(GB10_NO_KERNELS);
        assert_eq!(ev.devices[0].name, "NVIDIA GB10");
        assert_eq!(ev.devices[0].compute_cap, "12.1");
        let e = decide(&ev, &expect("ghcr.io/ggml-org/llama.cpp:server-cuda"), None).unwrap_err();
        assert_eq!(
            e,
            Shortfall::CudaError {
                message: "no kernel image is available for execution on the device".into()
            }
        );
        assert_eq!(
            e.hint("ghcr.io/ggml-org/llama.cpp:server-cuda", Some("12.1")),
            "the image has no kernels for compute capability 12.1: use server-cuda13 or build \
             from source"
        );
        // Already cuda13, or a 12.0 card (server-cuda has its kernels): build for it instead.
        for (image, cc) in [
            ("ghcr.io/ggml-org/llama.cpp:server-cuda13", "12.1"),
            ("ghcr.io/ggml-org/llama.cpp:server-cuda", "12.0"),
        ] {
            let h = e.hint(image, Some(cc));
            assert!(
                !h.contains("server-cuda13")
                    && h.contains(&format!("CMAKE_CUDA_ARCHITECTURES={}", cc.replace('.', ""))),
                "{h}"
            );
        }
    }

    #[test]
    fn cuda_that_cannot_start_names_the_toolkit_or_the_driver() {
        // Format string ggml-cuda.cu:226, then arg.cpp:2803; messages are cudaGetErrorString's.
        let log = |why: &str| {
            format!(
                "0.00.003.901 E ggml_cuda_init: failed to initialize CUDA: {why}\n\
                 warning: no usable GPU found, --gpu-layers option will be ignored\n"
            )
        };
        let ev = parse(&log("no CUDA-capable device is detected"));
        assert!(ev.no_usable_gpu);
        let e = decide(&ev, &expect("i"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the server found no CUDA device (CUDA: no CUDA-capable device is detected)"
        );
        assert!(e.hint("img", None).starts_with(
            "the container sees no GPU: check the NVIDIA container toolkit: `docker run --rm \
             --gpus all img nvidia-smi`"
        ));
        let ev = parse(&log(
            "CUDA driver version is insufficient for CUDA runtime version",
        ));
        let e = decide(&ev, &expect("i"), None).unwrap_err();
        assert!(
            e.hint("img", None).contains("driver is older"),
            "{}",
            e.hint("img", None)
        );
        // No device in the log, but nvidia-smi says 12.1 and the image is not cuda13.
        let e = decide(&parse(CPU_LV3), &expect("i"), None).unwrap_err();
        assert!(
            e.hint("ghcr.io/ggml-org/llama.cpp:server-cuda", Some("12.1"))
                .starts_with(
                    "the image has no kernels for compute capability 12.1: use server-cuda13"
                )
        );
    }

    #[test]
    fn a_device_without_an_offload_line_is_not_proof() {
        let ev = parse(
            &H100
                .lines()
                .filter(|l| !l.contains("offload"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let e = decide(&ev, &expect("i"), Some(914)).unwrap_err();
        assert_eq!(e, Shortfall::NoOffloadLine);
        assert!(e.hint("i", None).contains("LLAMA_ARG_LOG_VERBOSITY=4"));
    }
}
