//! `vlmctl export` and `provision --dry-run`: the deployment's [`ContainerPlan`] (the one
//! `launch` creates from), and its compose rendering, built as typed values and written by a
//! YAML serializer, so that no value from the spec (an `extra_args` entry with a quote and a
//! newline, a JSON argument) can add keys to the service or break the document. The `docker
//! run` rendering is [`ContainerPlan::docker_run_line`]; every setting comes from the plan.

use std::collections::BTreeMap;

use serde::Serialize;
use vlmctl_lifecycle::containers::{ContainerPlan, EnvValue, HealthCheck};
use vlmctl_lifecycle::spec::{Gpus, LLAMA_CPP_HEALTHCHECK, ModelMount, Spec, host_port};

/// How long `export` and `--dry-run` wait for the Docker daemon to show the image's health check.
const INSPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The plan `launch` would create from, for an export or a dry run: the image's own health
/// check aimed at the spec's port. When the image cannot be inspected here (no daemon, image
/// not pulled yet), llama.cpp's published check ([`LLAMA_CPP_HEALTHCHECK`]) is assumed, and the
/// second value says so (a line for stderr).
pub async fn container_plan(
    engine: &vlmctl_lifecycle::Engine,
    spec: &Spec,
    mount: &ModelMount,
) -> (ContainerPlan, Option<String>) {
    let inspected = tokio::time::timeout(INSPECT_TIMEOUT, async {
        let docker = engine.connect().await.ok()?;
        docker
            .inspect_image(&spec.image)
            .await
            .ok()
            .map(|i| i.config.and_then(|c| c.healthcheck).and_then(|h| h.test))
    })
    .await
    .ok()
    .flatten();
    if let Some(test) = inspected {
        return (ContainerPlan::of(spec, mount, test.as_deref()), None);
    }
    let assumed: Vec<String> = LLAMA_CPP_HEALTHCHECK
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    (
        ContainerPlan::of(spec, mount, Some(&assumed)),
        Some(format!(
            "the image {} could not be inspected here: its health check is assumed to be \
             llama.cpp's ({}), aimed at the server's port",
            spec.image,
            LLAMA_CPP_HEALTHCHECK[1..].join(" ")
        )),
    )
}

/// For `provision --dry-run` of a spec that asks for GPUs: a line saying that `provision` runs
/// the one-shot GPU probe before the container printed, and at which verbosities the two run;
/// `None` for a CPU spec (no probe).
#[must_use]
pub fn probe_note(spec: &Spec) -> Option<String> {
    use vlmctl_lifecycle::containers::{
        LOG_VERBOSITY_ENV, PROBE_LOG_VERBOSITY, SERVER_LOG_VERBOSITY, probe_name,
    };
    (spec.gpus != Gpus::None).then(|| {
        format!(
            "before it, provision loads the model once in {}: the same image, GPUs, mount and \
             arguments, at {LOG_VERBOSITY_ENV}={PROBE_LOG_VERBOSITY} (where llama-server logs its \
             CUDA devices and offloaded layers) with no network, removed after the load; the \
             server below runs at {SERVER_LOG_VERBOSITY}, which logs a few lines per request",
            probe_name(&spec.name)
        )
    })
}

/// The compose file for `plan`: the container `vlmctl provision` creates (same arguments,
/// labels, read-only bind mount, dropped capabilities, GPU request, health check), the API key
/// as a compose variable reference (`${VAR}`, never its value).
///
/// # Panics
/// Never: the document holds only strings, integers, booleans, lists and maps, which the
/// serializer always writes.
#[must_use]
pub fn compose(plan: &ContainerPlan) -> String {
    let service = Service {
        image: literal(&plan.image),
        container_name: literal(&plan.name),
        // A string, so the serializer quotes `no` (a YAML 1.1 reader takes a bare `no` as false).
        restart: literal(plan.restart.as_str()),
        network_mode: plan.port.is_none().then(|| "host".to_owned()),
        ports: plan
            .port
            .iter()
            .map(|p| literal(&format!("{}:{}", host_port(&p.host_ip, p.port), p.port)))
            .collect(),
        // The long form: a relative short-form source (`models:/models`) is a named volume.
        volumes: vec![Volume {
            kind: "bind",
            source: literal(&plan.models.source),
            target: plan.models.target,
            read_only: plan.models.read_only,
        }],
        cap_drop: plan.cap_drop.clone(),
        security_opt: plan.security_opt.clone(),
        environment: {
            // Compose substitutes a reference when it runs; the key itself is never written.
            let env: BTreeMap<&'static str, String> = plan
                .env
                .iter()
                .map(|e| match &e.value {
                    EnvValue::Literal(v) => (e.name, literal(v)),
                    EnvValue::FromEnv(var) => (e.name, format!("${{{var}}}")),
                    // Compose cannot read a file into a variable: the key is asked for in the
                    // container's own variable name, and compose stops without it.
                    EnvValue::FromFile(_) => (
                        e.name,
                        format!(
                            "${{{}:?set it to the content of the key file the spec names}}",
                            e.name
                        ),
                    ),
                })
                .collect();
            (!env.is_empty()).then_some(env)
        },
        deploy: gpu_request(&plan.gpus).map(|device| Deploy {
            resources: Resources {
                reservations: Reservations {
                    devices: vec![device],
                },
            },
        }),
        logging: Logging {
            driver: plan.log.driver,
            options: plan.log.options.iter().copied().collect(),
        },
        healthcheck: plan.health.as_ref().map(|h| match h {
            HealthCheck::Probe {
                test,
                interval_s,
                timeout_s,
                retries,
                start_period_s,
            } => Healthcheck {
                test: Some(test.iter().map(|t| literal(t)).collect()),
                interval: Some(format!("{interval_s}s")),
                timeout: Some(format!("{timeout_s}s")),
                retries: Some(*retries),
                start_period: Some(format!("{start_period_s}s")),
                disable: None,
            },
            HealthCheck::Disabled => Healthcheck {
                disable: Some(true),
                ..Healthcheck::default()
            },
        }),
        labels: plan
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), literal(v)))
            .collect(),
        command: plan.cmd.iter().map(|a| literal(a)).collect(),
    };
    let document = Document {
        services: BTreeMap::from([(plan.name.as_str(), service)]),
    };
    // Block scalars off: an argument with a newline is written as one double-quoted line with
    // escapes, and a long one is never folded.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    let yaml = serde_saphyr::to_string_with_options(&document, options)
        .expect("strings, integers, booleans, lists and maps always serialise");
    // The name is a validated container name; filtering keeps the comment one line regardless.
    let name: String = plan
        .name
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}'))
        .collect();
    format!("# generated by `vlmctl export --format compose` from spec {name}\n{yaml}")
}

/// `s` as compose reads it back: compose substitutes `$VAR` and `${VAR}` in every value and
/// reads `$$` as one `$`.
fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

fn gpu_request(gpus: &Gpus) -> Option<GpuReservation> {
    let (count, device_ids) = match gpus {
        Gpus::None => return None,
        Gpus::All => (Some(Count::All), None),
        Gpus::Count(n) => (Some(Count::N(*n)), None),
        Gpus::Devices(ids) => (None, Some(ids.iter().map(|i| literal(i)).collect())),
    };
    Some(GpuReservation {
        driver: "nvidia",
        count,
        device_ids,
        capabilities: vec!["gpu"],
    })
}

#[derive(Serialize)]
struct Document<'a> {
    services: BTreeMap<&'a str, Service>,
}

/// The keys in the order the file is read: what runs, how it is reached, what it may touch.
#[derive(Serialize)]
struct Service {
    image: String,
    container_name: String,
    restart: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_mode: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    volumes: Vec<Volume>,
    cap_drop: Vec<&'static str>,
    security_opt: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<BTreeMap<&'static str, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<Deploy>,
    logging: Logging,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
    labels: BTreeMap<String, String>,
    command: Vec<String>,
}

#[derive(Serialize)]
struct Logging {
    driver: &'static str,
    options: BTreeMap<&'static str, &'static str>,
}

/// Compose's `healthcheck`: durations as `5s`; `disable: true` switches the image's off.
#[derive(Serialize, Default)]
struct Healthcheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable: Option<bool>,
}

#[derive(Serialize)]
struct Volume {
    #[serde(rename = "type")]
    kind: &'static str,
    source: String,
    target: &'static str,
    read_only: bool,
}

#[derive(Serialize)]
struct Deploy {
    resources: Resources,
}

#[derive(Serialize)]
struct Resources {
    reservations: Reservations,
}

#[derive(Serialize)]
struct Reservations {
    devices: Vec<GpuReservation>,
}

#[derive(Serialize)]
struct GpuReservation {
    driver: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<Count>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_ids: Option<Vec<String>>,
    capabilities: Vec<&'static str>,
}

/// `count: all` or `count: 2`.
enum Count {
    All,
    N(u32),
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => s.serialize_str("all"),
            Self::N(n) => s.serialize_u32(*n),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;

    const SPEC: &str = r#"
name = "panda-llamacpp"
image = "ghcr.io/ggml-org/llama.cpp:server-cuda"
model = "gemma-4-e2b-it-q4km"
gpus = "all"
restart = "no"
network = "host"
[server]
host = "127.0.0.1"
port = 11435
ctx_size = 4096
n_gpu_layers = 999
jinja = true
[health]
timeout_s = 120
"#;

    /// The compose file of `s` with `m`, the image's health check not inspected.
    fn compose_of(s: &Spec, m: &ModelMount) -> String {
        compose(&ContainerPlan::of(s, m, None))
    }

    fn spec(text: &str) -> Spec {
        Spec::parse(text, Path::new("x.toml")).unwrap()
    }

    fn mount() -> ModelMount {
        ModelMount {
            dir: "/home/u/gguf-gemma4-e2b".into(),
            model_file: "gemma-4-E2B-it-Q4_K_M.gguf".into(),
            mmproj_file: Some("mmproj-F16.gguf".into()),
            lock_sha256: "ab".repeat(32),
        }
    }

    /// The one service of `yaml`, read back by the same library.
    fn service(yaml: &str, name: &str) -> Value {
        let doc: Value = serde_saphyr::from_str(yaml).unwrap();
        let services = doc["services"].as_object().unwrap();
        assert_eq!(services.len(), 1, "{yaml}");
        services[name].clone()
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_compose_file_reads_back_as_the_container_provision_creates() {
        let s = spec(SPEC);
        let yaml = compose_of(&s, &mount());
        assert!(
            yaml.starts_with(
                "# generated by `vlmctl export --format compose` from spec panda-llamacpp\n"
            ),
            "{yaml}"
        );
        // Quoted in the text itself: a YAML 1.1 reader (docker-compose v1, PyYAML) takes a bare
        // `no` as false.
        assert!(
            yaml.lines()
                .any(|l| ["restart: 'no'", "restart: \"no\""].contains(&l.trim())),
            "{yaml}"
        );
        let svc = service(&yaml, "panda-llamacpp");
        assert_eq!(svc["image"], "ghcr.io/ggml-org/llama.cpp:server-cuda");
        assert_eq!(svc["container_name"], "panda-llamacpp");
        assert_eq!(svc["restart"], json!("no"));
        assert_eq!(svc["network_mode"], "host");
        assert!(svc.get("ports").is_none(), "{yaml}");
        assert_eq!(strings(&svc["command"]), s.server_args(&mount()));
        assert_eq!(
            svc["volumes"],
            json!([{
                "type": "bind",
                "source": "/home/u/gguf-gemma4-e2b",
                "target": "/models",
                "read_only": true,
            }])
        );
        assert_eq!(svc["cap_drop"], json!(["ALL"]));
        // The one security option, as the plan has it (the three renderings agree: below).
        assert_eq!(
            svc["security_opt"],
            json!(ContainerPlan::of(&s, &mount(), None).security_opt)
        );
        assert_eq!(
            svc["environment"],
            json!({"LLAMA_ARG_LOG_VERBOSITY": "3"}),
            "the server runs at the quiet verbosity, and says so: {yaml}"
        );
        assert_eq!(
            svc["deploy"]["resources"]["reservations"]["devices"],
            json!([{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}])
        );
        let labels: BTreeMap<String, String> =
            serde_json::from_value(svc["labels"].clone()).unwrap();
        assert_eq!(labels, s.labels(&mount()));
    }

    /// One spec, one plan, three renderings (the create body `launch` sends, the `docker run`
    /// line, the compose file), compared field by field, the health check aimed at the spec's
    /// port included. A setting the plan gains and a renderer leaves out fails here.
    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one block per field, the three renderings side by side"
    )]
    fn one_plan_three_renderings_agree_field_by_field() {
        let text = SPEC
            .replace("network = \"host\"", "network = \"bridge\"")
            .replace("restart = \"no\"", "restart = \"unless-stopped\"")
            .replace("jinja = true", "jinja = true\napi_key_env = \"PANDA_KEY\"");
        let s = spec(&text);
        let m = mount();
        let image_test: Vec<String> = LLAMA_CPP_HEALTHCHECK
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        let plan = ContainerPlan::of(&s, &m, Some(&image_test));
        let aimed = ["CMD", "curl", "-f", "http://127.0.0.1:11435/health"];
        assert_eq!(
            plan.health,
            Some(HealthCheck::Probe {
                test: aimed.iter().map(|t| (*t).to_owned()).collect(),
                interval_s: 5,
                timeout_s: 5,
                retries: 3,
                start_period_s: 120,
            })
        );

        let body = plan.to_bollard(Some("the-key"));
        let host = body.host_config.clone().unwrap();
        let line = plan.docker_run_line();
        let words = shlex::split(&line.replace("\\\n", " ")).unwrap();
        let svc = service(&compose(&plan), "panda-llamacpp");
        // `--flag value` pairs of the docker run line, in order; the image and the command are
        // what follows the last of them.
        let (flags, rest) = {
            let mut flags: Vec<(String, String)> = Vec::new();
            // `docker run`, after the environment assignments that may come first
            let mut i = words.iter().position(|w| w == "docker").unwrap() + 2;
            while words[i].starts_with('-') {
                if words[i] == "-d" || words[i] == "--no-healthcheck" {
                    flags.push((words[i].clone(), String::new()));
                    i += 1;
                } else {
                    flags.push((words[i].clone(), words[i + 1].clone()));
                    i += 2;
                }
            }
            (flags, words[i..].to_vec())
        };
        let flag = |name: &str| -> Vec<String> {
            flags
                .iter()
                .filter(|(f, _)| f == name)
                .map(|(_, v)| v.clone())
                .collect()
        };

        // image, name, command
        assert_eq!(
            body.image.as_deref(),
            Some("ghcr.io/ggml-org/llama.cpp:server-cuda")
        );
        assert_eq!(rest[0], "ghcr.io/ggml-org/llama.cpp:server-cuda");
        assert_eq!(svc["image"], "ghcr.io/ggml-org/llama.cpp:server-cuda");
        assert_eq!(flag("--name"), ["panda-llamacpp"]);
        assert_eq!(svc["container_name"], "panda-llamacpp");
        assert_eq!(body.cmd.as_ref(), Some(&s.server_args(&m)));
        assert_eq!(rest[1..], s.server_args(&m));
        assert_eq!(strings(&svc["command"]), s.server_args(&m));

        // restart
        assert_eq!(
            host.restart_policy.unwrap().name.unwrap().to_string(),
            "unless-stopped"
        );
        assert_eq!(flag("--restart"), ["unless-stopped"]);
        assert_eq!(svc["restart"], "unless-stopped");

        // network and the published port (on server.host only)
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert!(flag("--network").is_empty(), "{line}");
        assert!(svc.get("network_mode").is_none());
        let binding = &host.port_bindings.unwrap()["11435/tcp"];
        let binding = &binding.as_ref().unwrap()[0];
        assert_eq!(
            (binding.host_ip.as_deref(), binding.host_port.as_deref()),
            (Some("127.0.0.1"), Some("11435"))
        );
        assert_eq!(body.exposed_ports, Some(vec!["11435/tcp".to_owned()]));
        assert_eq!(flag("-p"), ["127.0.0.1:11435:11435"]);
        assert_eq!(svc["ports"], json!(["127.0.0.1:11435:11435"]));

        // the read-only model mount
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].source.as_deref(), Some("/home/u/gguf-gemma4-e2b"));
        assert_eq!(mounts[0].target.as_deref(), Some("/models"));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(
            flag("--mount"),
            ["type=bind,source=/home/u/gguf-gemma4-e2b,target=/models,readonly"]
        );
        assert_eq!(
            svc["volumes"],
            json!([{"type": "bind", "source": "/home/u/gguf-gemma4-e2b", "target": "/models", "read_only": true}])
        );

        // capabilities and security options
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(flag("--cap-drop"), ["ALL"]);
        assert_eq!(svc["cap_drop"], json!(["ALL"]));
        let security: Vec<String> = plan.security_opt.iter().map(|o| (*o).to_owned()).collect();
        assert_eq!(security.len(), 1);
        assert_eq!(host.security_opt.as_ref(), Some(&security));
        assert_eq!(flag("--security-opt"), security);
        assert_eq!(strings(&svc["security_opt"]), security);

        // environment: the key's value only in the body launch sends, a reference elsewhere
        assert_eq!(
            body.env,
            Some(vec![
                "LLAMA_API_KEY=the-key".to_owned(),
                "LLAMA_ARG_LOG_VERBOSITY=3".to_owned()
            ])
        );
        assert_eq!(flag("-e"), ["LLAMA_API_KEY", "LLAMA_ARG_LOG_VERBOSITY=3"]);
        // The value in the docker CLI's environment, never in its arguments (`ps`).
        assert!(
            line.starts_with("LLAMA_API_KEY=\"$PANDA_KEY\" docker run "),
            "{line}"
        );
        assert_eq!(
            svc["environment"],
            json!({"LLAMA_API_KEY": "${PANDA_KEY}", "LLAMA_ARG_LOG_VERBOSITY": "3"})
        );
        assert!(!line.contains("the-key") && !compose(&plan).contains("the-key"));

        // labels
        let labels = s.labels(&m);
        assert_eq!(
            body.labels
                .clone()
                .unwrap()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            labels
        );
        let run_labels: BTreeMap<String, String> = flag("--label")
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        assert_eq!(run_labels, labels);
        let compose_labels: BTreeMap<String, String> =
            serde_json::from_value(svc["labels"].clone()).unwrap();
        assert_eq!(compose_labels, labels);

        // logging
        let log = host.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let opts = BTreeMap::from([
            ("max-file".to_owned(), "3".to_owned()),
            ("max-size".to_owned(), "10m".to_owned()),
        ]);
        assert_eq!(
            log.config.unwrap().into_iter().collect::<BTreeMap<_, _>>(),
            opts
        );
        assert_eq!(flag("--log-driver"), ["json-file"]);
        assert_eq!(flag("--log-opt"), ["max-size=10m", "max-file=3"]);
        assert_eq!(
            svc["logging"],
            json!({"driver": "json-file", "options": opts})
        );

        // the GPU request
        let gpu = &host.device_requests.unwrap()[0];
        assert_eq!(gpu.count, Some(-1));
        assert_eq!(gpu.capabilities, Some(vec![vec!["gpu".to_owned()]]));
        assert_eq!(flag("--gpus"), ["all"]);
        assert_eq!(
            svc["deploy"]["resources"]["reservations"]["devices"],
            json!([{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}])
        );

        // the health check, aimed at the spec's port (the image's checks 8080)
        let hc = body.healthcheck.unwrap();
        assert_eq!(
            hc.test,
            Some(aimed.iter().map(|t| (*t).to_owned()).collect())
        );
        assert_eq!(
            (hc.interval, hc.timeout, hc.retries, hc.start_period),
            (
                Some(5_000_000_000),
                Some(5_000_000_000),
                Some(3),
                Some(120_000_000_000)
            )
        );
        let cmd = flag("--health-cmd");
        assert_eq!(cmd.len(), 1, "{line}");
        // `docker run --health-cmd` is one shell command (CMD-SHELL): its words are the CMD's.
        assert_eq!(shlex::split(&cmd[0]).unwrap(), aimed[1..]);
        assert_eq!(flag("--health-interval"), ["5s"]);
        assert_eq!(flag("--health-timeout"), ["5s"]);
        assert_eq!(flag("--health-retries"), ["3"]);
        assert_eq!(flag("--health-start-period"), ["120s"]);
        assert_eq!(
            svc["healthcheck"],
            json!({"test": aimed, "interval": "5s", "timeout": "5s", "retries": 3, "start_period": "120s"})
        );

        // and nothing else: every flag of the line was checked above
        let known = [
            "-d",
            "--name",
            "--restart",
            "--gpus",
            "-p",
            "--mount",
            "--cap-drop",
            "--security-opt",
            "--log-driver",
            "--log-opt",
            "--health-cmd",
            "--health-interval",
            "--health-timeout",
            "--health-retries",
            "--health-start-period",
            "-e",
            "--label",
        ];
        for (f, _) in &flags {
            assert!(known.contains(&f.as_str()), "unchecked flag {f} in {line}");
        }
    }

    #[test]
    fn a_health_check_without_a_url_is_switched_off_in_all_three() {
        let s = spec(SPEC);
        let pgrep: Vec<String> = ["CMD", "pgrep", "llama-server"]
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        let plan = ContainerPlan::of(&s, &mount(), Some(&pgrep));
        assert_eq!(plan.health, Some(HealthCheck::Disabled));
        assert_eq!(
            plan.to_bollard(None).healthcheck.unwrap().test,
            Some(vec!["NONE".to_owned()])
        );
        assert!(plan.docker_run_line().contains("--no-healthcheck"));
        let svc = service(&compose(&plan), "panda-llamacpp");
        assert_eq!(svc["healthcheck"], json!({"disable": true}));
        // No check in the image: none is added anywhere.
        let plan = ContainerPlan::of(&s, &mount(), None);
        assert!(plan.to_bollard(None).healthcheck.is_none());
        assert!(!plan.docker_run_line().contains("health"));
        assert!(
            service(&compose(&plan), "panda-llamacpp")
                .get("healthcheck")
                .is_none()
        );
    }

    #[test]
    fn extra_args_cannot_add_keys_to_the_service() {
        // Pasted into `- "{arg}"` lines, the first closes its own quotes and leaves valid YAML
        // with two more keys in the service; the second breaks the document.
        let balanced = "x\"\n    privileged: true\n    pid: \"host";
        let injection = "x\"\n    privileged: true\n    pid: \"host\"";
        let json_arg = "{\"a\": [1, 2]}";
        for extra in [vec![balanced], vec![injection, json_arg]] {
            let quoted: Vec<String> = extra.iter().map(|a| toml_string(a)).collect();
            let text = SPEC.replace(
                "jinja = true",
                &format!("jinja = true\nextra_args = [{}]", quoted.join(", ")),
            );
            let s = spec(&text);
            assert_eq!(s.server.extra_args, extra);
            let yaml = compose_of(&s, &mount());
            let svc = service(&yaml, "panda-llamacpp");
            for key in ["privileged", "pid"] {
                assert!(svc.get(key).is_none(), "{key} injected:\n{yaml}");
            }
            let command = strings(&svc["command"]);
            assert_eq!(command[command.len() - extra.len()..], extra);
            assert_eq!(command, s.server_args(&mount()));
        }
    }

    #[test]
    fn the_api_key_is_a_compose_variable_reference_never_a_value() {
        // PATH is set wherever tests run: its value must not appear.
        let text = SPEC.replace("jinja = true", "jinja = true\napi_key_env = \"PATH\"");
        let yaml = compose_of(&spec(&text), &mount());
        assert!(yaml.contains("${PATH}"), "{yaml}");
        if let Ok(value) = std::env::var("PATH") {
            assert!(!yaml.contains(&value), "{yaml}");
        }
        let svc = service(&yaml, "panda-llamacpp");
        assert_eq!(
            svc["environment"],
            json!({"LLAMA_API_KEY": "${PATH}", "LLAMA_ARG_LOG_VERBOSITY": "3"})
        );
    }

    #[test]
    fn dollars_in_values_reach_the_container_literally() {
        // Compose would substitute `$HOME` from the environment of whoever runs it.
        let text = SPEC.replace(
            "jinja = true",
            "jinja = true\nextra_args = [\"--alias\", \"$HOME-${USER}$$\"]",
        );
        let mut m = mount();
        m.dir = "/data/$models".into();
        let svc = service(&compose_of(&spec(&text), &m), "panda-llamacpp");
        let command = strings(&svc["command"]);
        assert_eq!(command.last().unwrap(), "$$HOME-$${USER}$$$$");
        assert_eq!(svc["volumes"][0]["source"], "/data/$$models");
    }

    #[test]
    fn ports_gpus_and_relative_dirs_follow_the_spec() {
        let bridge = |host: &str, gpus: &str| {
            SPEC.replace("network = \"host\"", "network = \"bridge\"")
                .replace("jinja = true", "jinja = true\napi_key_env = \"PANDA_KEY\"")
                .replace("127.0.0.1", host)
                .replace("gpus = \"all\"", &format!("gpus = {gpus}"))
        };
        let mut m = mount();
        m.dir = "models/gemma".into();
        let svc = service(
            &compose_of(&spec(&bridge("::1", "2")), &m),
            "panda-llamacpp",
        );
        assert!(svc.get("network_mode").is_none());
        assert_eq!(svc["ports"], json!(["[::1]:11435:11435"]));
        assert_eq!(
            svc["deploy"]["resources"]["reservations"]["devices"][0]["count"],
            json!(2)
        );
        // Relative: still a bind mount, never a named volume.
        assert_eq!(svc["volumes"][0]["type"], "bind");
        assert_eq!(svc["volumes"][0]["source"], "models/gemma");

        let svc = service(
            &compose_of(&spec(&bridge("127.0.0.1", "[\"0\", 1]")), &m),
            "panda-llamacpp",
        );
        assert_eq!(svc["ports"], json!(["127.0.0.1:11435:11435"]));
        assert_eq!(
            svc["deploy"]["resources"]["reservations"]["devices"],
            json!([{"driver": "nvidia", "device_ids": ["0", "1"], "capabilities": ["gpu"]}])
        );

        let svc = service(
            &compose_of(&spec(&bridge("127.0.0.1", "\"none\"")), &m),
            "panda-llamacpp",
        );
        assert!(svc.get("deploy").is_none());
    }

    /// A TOML basic string holding `s` (JSON's escapes are TOML's for these characters).
    fn toml_string(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }
}
