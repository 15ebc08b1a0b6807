//! `nvidia-smi` on the engine's host when that host is another machine (`--host`): one
//! short-lived container there, from an image the host has (the deployment's), answers
//! everything the gates and the memory checks need in one run, so that the ceiling, the floor
//! and the free-memory gate judge that host exactly as they judge this one.
//!
//! What it relies on, from the real NVIDIA container toolkit: a container that asks for GPUs
//! (Docker's `DeviceRequests`, driver `nvidia`, capabilities `gpu` and `utility`) is set up by
//! the toolkit's prestart hook, which mounts the host driver's user-space tools, `nvidia-smi`
//! among them (`utility`), and the device nodes into it; nothing has to be installed in the
//! image. A host without the toolkit refuses such a container ("could not select device
//! driver"): no driver, as far as containers are concerned.
//!
//! The container runs in the host's PID namespace (`pid: host`), because `nvidia-smi`
//! reports the PIDs the driver knows, which are the host's: in a PID namespace of its own the
//! container could not read `/proc/PID/cgroup` of the server's processes (nor, on most drivers,
//! would `nvidia-smi` list them). A small shell script (the image needs `/bin/sh`, as llama.cpp's
//! images have; `/bin/busybox sh` is tried next) prints, between marker lines, the GPU query,
//! the compute-apps query, each listed PID's `/proc/PID/cgroup` (mapped to the container id by
//! the parent module, as locally) and `/proc/meminfo`, which in a container is the host's (the
//! kernel's figures; only an lxcfs mount would change that, and Docker does not add one).
//! Splitting that output into its [`Parts`] is pure ([`answer`]); this module knows nothing of
//! what they mean, so that `gpu` uses it and not the other way round.
//!
//! The container is as small as it can be: no network, read-only root, every capability
//! dropped, no new privileges, at most 64 processes, its log in `json-file` (read back whatever
//! the daemon's default driver is), labelled `org.vlmctl.helper=gpu` with its owner. It is removed
//! on every path: after its answer, on an error, and when the probe is dropped (a cancelled job);
//! one left by a vlmctl killed with SIGKILL is removed by the next probe from this machine (its
//! owner gone, the rule of the file helpers).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use futures::StreamExt as _;

/// The label value of the GPU probe's container (`org.vlmctl.helper=gpu`).
pub const KIND: &str = "gpu";

/// How long the probe may take: `nvidia-smi` answers in about a second; a hung driver must not
/// hang the job.
const DEADLINE: Duration = Duration::from_secs(60);

/// Marks the start of each part of the script's output.
const MARK: &str = "@@vlmctl-gpu";

/// The script the container runs, with the two queries (POSIX shell, builtins only besides
/// `nvidia-smi`, so that a minimal image with a busybox shell runs it too).
#[must_use]
pub fn script(gpu_query: &str, apps_query: &str) -> String {
    format!(
        r#"m={MARK}; f=--format=csv,noheader,nounits
command -v nvidia-smi >/dev/null 2>&1 || {{ echo "$m no-nvidia-smi"; exit 0; }}
echo "$m gpus"
nvidia-smi {gpu_query} "$f" || {{ echo "$m failed gpus $?"; exit 0; }}
apps=$(nvidia-smi {apps_query} "$f") || {{ echo "$m failed apps $?"; exit 0; }}
echo "$m apps"
printf '%s\n' "$apps"
printf '%s\n' "$apps" | while IFS=', ' read -r pid rest; do
  case $pid in ''|*[!0-9]*) continue ;; esac
  echo "$m cgroup $pid"
  [ -r "/proc/$pid/cgroup" ] && while IFS= read -r l; do printf '%s\n' "$l"; done <"/proc/$pid/cgroup"
done
echo "$m meminfo"
while IFS= read -r l; do printf '%s\n' "$l"; done </proc/meminfo
echo "$m end"
"#
    )
}

/// Everything the script printed, when it ran to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// `--query-gpu` output.
    pub gpus: String,
    /// `--query-compute-apps` output.
    pub apps: String,
    /// `/proc/PID/cgroup` of each listed PID (empty where the process was gone).
    pub cgroups: BTreeMap<u32, String>,
    /// The host's `/proc/meminfo`.
    pub meminfo: String,
}

/// What the script printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The container has no `nvidia-smi` (a toolkit that mounted none into it).
    NoNvidiaSmi,
    /// A query exited non-zero.
    Failed {
        /// `gpus` or `apps`.
        query: String,
        /// Its exit code.
        code: String,
    },
    /// Every part.
    Done(Parts),
}

/// Pure: the script's standard output in parts; an error when it is not the script's (cut off,
/// or another program's).
pub fn answer(stdout: &str) -> Result<Answer, String> {
    let mut parts: Vec<(Vec<&str>, String)> = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix(MARK) {
            parts.push((rest.split_whitespace().collect(), String::new()));
        } else if let Some((_, text)) = parts.last_mut() {
            text.push_str(line);
            text.push('\n');
        } else if !line.trim().is_empty() {
            return Err(format!("unexpected output before the first part: {line:?}"));
        }
    }
    let mut gpus = None;
    let mut apps = None;
    let mut cgroups = BTreeMap::new();
    let mut meminfo = None;
    let mut ended = false;
    for (words, text) in parts {
        match words.as_slice() {
            ["no-nvidia-smi"] => return Ok(Answer::NoNvidiaSmi),
            ["failed", query, code] => {
                return Ok(Answer::Failed {
                    query: (*query).to_owned(),
                    code: (*code).to_owned(),
                });
            }
            ["gpus"] => gpus = Some(text),
            ["apps"] => apps = Some(text),
            ["cgroup", pid] => {
                let pid = pid
                    .parse()
                    .map_err(|_| format!("bad pid {pid:?} in the output"))?;
                cgroups.insert(pid, text);
            }
            ["meminfo"] => meminfo = Some(text),
            ["end"] => ended = true,
            other => return Err(format!("unexpected part {other:?}")),
        }
    }
    match (gpus, apps, meminfo, ended) {
        (Some(gpus), Some(apps), Some(meminfo), true) => Ok(Answer::Done(Parts {
            gpus,
            apps,
            cgroups,
            meminfo,
        })),
        _ => Err("the output was cut off (no end mark)".to_owned()),
    }
}

/// Runs the probe on `docker`'s host from `image` with the two queries. `Ok(None)` when the
/// host cannot give a container a GPU (no driver, as far as containers are concerned); an
/// error, saying what to check, when the container has no `nvidia-smi`, a query fails, or the
/// container cannot run.
pub async fn probe(
    docker: &Docker,
    image: &str,
    gpu_query: &str,
    apps_query: &str,
) -> Result<Option<Parts>, String> {
    crate::remote::remove_stale(docker, KIND).await;
    let script = script(gpu_query, apps_query);
    let mut first_error = None;
    for shell in [vec!["/bin/sh"], vec!["/bin/busybox", "sh"]] {
        match run(docker, image, &shell, &script).await {
            Ok(Ran::NoDriver) => return Ok(None),
            Ok(Ran::Exited {
                code,
                stdout,
                stderr,
            }) => return judge(image, code, &stdout, &stderr).map(Some),
            // No such shell in the image: the next one.
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_default())
}

/// What one run of the container gave.
enum Ran {
    /// The host's engine has no GPU runtime.
    NoDriver,
    /// The script ran to its end.
    Exited {
        code: i64,
        stdout: String,
        stderr: String,
    },
}

/// Pure: the probe's verdict from its exit code and output.
fn judge(image: &str, code: i64, stdout: &str, stderr: &str) -> Result<Parts, String> {
    let what = format!("cannot run nvidia-smi in a container from {image} on the host");
    let said = || {
        let s = stderr.trim();
        if s.is_empty() {
            String::new()
        } else {
            format!(": {s}")
        }
    };
    if code != 0 {
        return Err(format!("{what}: the script exited {code}{}", said()));
    }
    match answer(stdout).map_err(|e| format!("{what}: {e}{}", said()))? {
        Answer::NoNvidiaSmi => Err(format!(
            "{what}: the container has no nvidia-smi (the NVIDIA container toolkit mounts the \
             driver's into a container that asks for GPUs: check it with `docker run --rm --gpus \
             all {image} nvidia-smi` there)"
        )),
        Answer::Failed { query, code } => Err(format!(
            "nvidia-smi's {query} query in a container from {image} on the host exited {code}{}",
            said()
        )),
        Answer::Done(parts) => Ok(parts),
    }
}

/// The container's settings: `shell -c script`, every GPU, the host's PID namespace, and
/// nothing else it does not need.
fn body(image: &str, shell: &[&str], script: &str) -> ContainerCreateBody {
    let mut entrypoint: Vec<String> = shell.iter().map(|s| (*s).to_owned()).collect();
    entrypoint.extend(["-c".to_owned(), script.to_owned()]);
    ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint: Some(entrypoint),
        cmd: Some(Vec::new()),
        labels: Some(crate::remote::helper_labels(KIND)),
        healthcheck: Some(bollard::models::HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            device_requests: Some(vec![DeviceRequest {
                driver: Some(String::new()),
                count: Some(-1),
                capabilities: Some(vec![vec!["gpu".to_owned(), "utility".to_owned()]]),
                ..Default::default()
            }]),
            // nvidia-smi lists the host's PIDs; their cgroups are read in /proc.
            pid_mode: Some("host".to_owned()),
            network_mode: Some("none".to_owned()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            pids_limit: Some(64),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::new()),
            }),
            auto_remove: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Removes the container when dropped (a job cancelled while it runs), unless [`Self::now`]
/// removed it already.
struct Removal {
    docker: Docker,
    id: String,
    done: bool,
}

impl Removal {
    async fn now(mut self) {
        remove(&self.docker, &self.id).await;
        self.done = true;
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (docker, id) = (self.docker.clone(), self.id.clone());
            rt.spawn(async move { remove(&docker, &id).await });
        }
    }
}

async fn remove(docker: &Docker, id: &str) {
    let _ = docker
        .remove_container(
            id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
}

/// One run with `shell`; `Err` when it could not start (or was cut off).
async fn run(docker: &Docker, image: &str, shell: &[&str], script: &str) -> Result<Ran, String> {
    let created = docker
        .create_container(None::<CreateContainerOptions>, body(image, shell, script))
        .await
        .map_err(|e| format!("cannot create an nvidia-smi container from {image}: {e}"))?;
    let removal = Removal {
        docker: docker.clone(),
        id: created.id.clone(),
        done: false,
    };
    let ran = async {
        match docker.start_container(&created.id, None).await {
            Err(e) if e.to_string().contains("could not select device driver") => {
                return Ok(Ran::NoDriver);
            }
            Err(e) => {
                return Err(format!(
                    "cannot run nvidia-smi in a container from {image} ({}): {e}",
                    shell.join(" ")
                ));
            }
            Ok(()) => {}
        }
        let mut waited = docker.wait_container(&created.id, None::<WaitContainerOptions>);
        let mut code = 0;
        while let Some(w) = waited.next().await {
            match w {
                Ok(r) => code = r.status_code,
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => return Err(format!("waiting for the nvidia-smi container: {e}")),
            }
        }
        let (stdout, stderr) = output(docker, &created.id).await;
        Ok(Ran::Exited {
            code,
            stdout,
            stderr,
        })
    };
    let result = match tokio::time::timeout(DEADLINE, ran).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "nvidia-smi in a container from {image} did not answer within {} s",
            DEADLINE.as_secs()
        )),
    };
    removal.now().await;
    result
}

/// The container's standard output and error, apart.
async fn output(docker: &Docker, id: &str) -> (String, String) {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let (mut out, mut err) = (String::new(), String::new());
    let mut logs = docker.logs(id, Some(opts));
    while let Some(Ok(chunk)) = logs.next().await {
        match chunk {
            LogOutput::StdOut { message } => out.push_str(&String::from_utf8_lossy(&message)),
            other => err.push_str(&other.to_string()),
        }
    }
    (out, err)
}

/// A complete answer as the script prints it on a GB10 host (unified memory, beast's runbook),
/// with two compute processes: the server in the container `id` (cgroup v2, systemd driver) and
/// one outside any container.
#[cfg(test)]
pub(crate) fn recorded(id: &str) -> String {
    format!(
        "{MARK} gpus\nNVIDIA GB10, [N/A], [Not Supported], [N/A], 12.1, 580.142\n\
         {MARK} apps\n4242, /app/llama-server, 9000\n77, /usr/bin/python3, 1200\n\
         {MARK} cgroup 4242\n0::/system.slice/docker-{id}.scope\n\
         {MARK} cgroup 77\n0::/user.slice/user-1000.slice/session-3.scope\n\
         {MARK} meminfo\nMemTotal:       127535272 kB\nMemFree:         1000000 kB\n\
         MemAvailable:   62914560 kB\n\
         {MARK} end\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete answer (a GB10 host, two compute processes): each part where it belongs.
    #[test]
    fn the_combined_output_splits_into_its_parts() {
        let id = "b".repeat(64);
        let Answer::Done(parts) = answer(&recorded(&id)).unwrap() else {
            panic!("a complete answer")
        };
        assert_eq!(
            parts.gpus,
            "NVIDIA GB10, [N/A], [Not Supported], [N/A], 12.1, 580.142\n"
        );
        assert_eq!(
            parts.apps,
            "4242, /app/llama-server, 9000\n77, /usr/bin/python3, 1200\n"
        );
        assert_eq!(
            parts.cgroups.get(&4242).map(String::as_str),
            Some(format!("0::/system.slice/docker-{id}.scope\n").as_str())
        );
        assert!(parts.meminfo.contains("MemAvailable:   62914560 kB\n"));
    }

    #[test]
    fn no_nvidia_smi_a_failed_query_and_cut_off_output_are_told_apart() {
        assert_eq!(
            answer(&format!("{MARK} no-nvidia-smi\n")).unwrap(),
            Answer::NoNvidiaSmi
        );
        assert_eq!(
            answer(&format!("{MARK} gpus\n{MARK} failed gpus 9\n")).unwrap(),
            Answer::Failed {
                query: "gpus".into(),
                code: "9".into()
            }
        );
        let cut = recorded(&"d".repeat(64)).replace(&format!("{MARK} end\n"), "");
        assert!(answer(&cut).unwrap_err().contains("cut off"));
        assert!(answer("sh: syntax error\n").is_err());

        let e = judge("img", 0, &format!("{MARK} no-nvidia-smi\n"), "").unwrap_err();
        assert!(
            e.contains("cannot run nvidia-smi in a container from img")
                && e.contains("docker run --rm --gpus all img nvidia-smi"),
            "{e}"
        );
        let e = judge(
            "img",
            0,
            &format!("{MARK} failed apps 15\n"),
            "NVML: lost\n",
        )
        .unwrap_err();
        assert!(
            e.contains("apps query") && e.contains("exited 15: NVML: lost"),
            "{e}"
        );
        let e = judge("img", 127, "", "exec: nvidia-smi: not found").unwrap_err();
        assert!(e.contains("exited 127: exec"), "{e}");
    }

    #[test]
    fn the_container_sees_the_hosts_pids_and_nothing_it_does_not_need() {
        let b = body("img", &["/bin/sh"], "true");
        let h = b.host_config.unwrap();
        assert_eq!(h.pid_mode.as_deref(), Some("host"));
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            b.labels
                .unwrap()
                .get(crate::remote::HELPER_LABEL)
                .map(String::as_str),
            Some(KIND)
        );
    }

    /// The script itself, run by this machine's shell against a stand-in nvidia-smi that lists
    /// this test's own process: its output parses, and the PID's cgroup is there.
    #[test]
    fn the_script_runs_in_a_posix_shell() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        let me = std::process::id();
        std::fs::write(
            &smi,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n --query-gpu=*) echo 'NVIDIA GB10, [N/A], [N/A], [N/A], 12.1, 580' ;;\n \
                 --query-compute-apps=*) echo '{me}, test, 5'; echo '4294967, gone, 1' ;;\n *) exit 64 ;;\nesac\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        // This machine's shell, and busybox's (the test image's /bin/sh) where there is one.
        let shells: Vec<Vec<&str>> = [vec!["/bin/sh"], vec!["/bin/busybox", "sh"]]
            .into_iter()
            .filter(|s| std::path::Path::new(s[0]).exists())
            .collect();
        for shell in shells {
            let out = std::process::Command::new(shell[0])
                .args(&shell[1..])
                .args(["-c", &script("--query-gpu=x", "--query-compute-apps=y")])
                .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let Answer::Done(Parts {
                cgroups, meminfo, ..
            }) = answer(&stdout).unwrap()
            else {
                panic!("{shell:?}: {stdout}")
            };
            assert_eq!(
                cgroups.get(&me).map(String::as_str),
                std::fs::read_to_string(format!("/proc/{me}/cgroup"))
                    .ok()
                    .as_deref(),
                "{shell:?}"
            );
            assert_eq!(cgroups.get(&4_294_967).map(String::as_str), Some(""));
            assert!(meminfo.contains("\nMemAvailable:"), "{shell:?}: {meminfo}");
        }
    }
}
