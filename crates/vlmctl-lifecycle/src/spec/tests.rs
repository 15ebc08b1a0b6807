//! The spec's tests: parsing, the rules, the rendering.

use std::path::Path;

use super::*;
use crate::LifecycleError;

/// The `docker run` line of `spec` with [`mount`] (the image's health check not inspected).
fn run_line(spec: &Spec) -> String {
    crate::containers::ContainerPlan::of(spec, &mount(), None).docker_run_line()
}

pub(crate) const PANDA: &str = r#"
name = "panda-llamacpp"
image = "ghcr.io/ggml-org/llama.cpp:server-cuda"
model = "gemma-4-e2b-it-q4km"
gpus = "all"
restart = "unless-stopped"
network = "host"
[server]
host = "127.0.0.1"
port = 11435
ctx_size = 4096
n_gpu_layers = 999
jinja = true
[health]
timeout_s = 120
[memory]
need_free_mib = 4000
max_process_mib = 8192
[[conflict]]
name = "vllm-nemotron-super"
"#;

fn mount() -> ModelMount {
    ModelMount {
        dir: "/home/u/gguf-gemma4-e2b".into(),
        model_file: "gemma-4-E2B-it-Q4_K_M.gguf".into(),
        mmproj_file: Some("mmproj-F16.gguf".into()),
        lock_sha256: "ab".repeat(32),
    }
}

fn err(text: &str) -> String {
    Spec::parse(text, Path::new("docker/x.toml"))
        .unwrap_err()
        .to_string()
}

/// The name a tune parks the deployment under is reserved: a spec named so would replace
/// a parked original (issue #21).
#[test]
fn a_name_ending_in_the_tune_suffix_is_refused_with_its_line() {
    let got = err(&PANDA.replace(
        "name = \"panda-llamacpp\"",
        "\nname = \"adv-tune-vlmctl-tune\"",
    ));
    assert!(
        got.contains("docker/x.toml:3: name:") && got.contains("reserved"),
        "{got}"
    );
    // The suffix alone inside a name is fine.
    Spec::parse(
        &PANDA.replace("panda-llamacpp", "panda-vlmctl-tune-2"),
        Path::new("p"),
    )
    .unwrap();
}

#[test]
fn runbook_spec_gives_the_runbook_command_but_on_loopback() {
    let spec = Spec::parse(PANDA, Path::new("p.toml")).unwrap();
    assert_eq!(spec.conflicts, ["vllm-nemotron-super"]);
    let args = spec.server_args(&mount()).join(" ");
    assert_eq!(
        args,
        "--model /models/gemma-4-E2B-it-Q4_K_M.gguf --mmproj /models/mmproj-F16.gguf \
         --host 127.0.0.1 --port 11435 --ctx-size 4096 -ngl 999 --jinja \
         --alias gemma-4-E2B-it-Q4_K_M.gguf"
    );
    let line = run_line(&spec);
    assert!(line.contains("--gpus all"), "{line}");
    assert!(
        line.contains("--mount type=bind,source=/home/u/gguf-gemma4-e2b,target=/models,readonly"),
        "{line}"
    );
    assert!(line.contains("--cap-drop ALL"), "{line}");
}

#[test]
fn spec_hash_ignores_comments_and_changes_with_content() {
    let a = Spec::parse(PANDA, Path::new("p")).unwrap();
    let b = Spec::parse(&format!("# a comment\n{PANDA}"), Path::new("p")).unwrap();
    let c = Spec::parse(&PANDA.replace("4096", "8192"), Path::new("p")).unwrap();
    assert_eq!(a.sha256(), b.sha256());
    assert_ne!(a.sha256(), c.sha256());
}

#[test]
fn min_process_mib_is_optional_zero_disables_it_and_it_may_not_exceed_the_ceiling() {
    let a = Spec::parse(PANDA, Path::new("p")).unwrap();
    assert_eq!(a.memory.min_process_mib, None);
    // Unset, it is not in the canonical form: the hash of a spec written before it exists
    // is unchanged.
    assert!(
        !serde_json::to_string(&a)
            .unwrap()
            .contains("min_process_mib")
    );
    let with = |v: &str| {
        PANDA.replace(
            "max_process_mib = 8192",
            &format!("max_process_mib = 8192\nmin_process_mib = {v}"),
        )
    };
    let b = Spec::parse(&with("0"), Path::new("p")).unwrap();
    assert_eq!(b.memory.min_process_mib, Some(0));
    assert_ne!(a.sha256(), b.sha256());
    assert_eq!(
        Spec::parse(&with("8192"), Path::new("p"))
            .unwrap()
            .memory
            .min_process_mib,
        Some(8192),
        "the bounds are inclusive"
    );
    assert_eq!(
        err(&with("8193")),
        "docker/x.toml:19: memory.min_process_mib: 8193 is above max_process_mib = 8192: \
         no server could pass both; lower it, or leave it out for 80 % of the model's size"
    );
}

#[test]
fn bad_specs_name_file_line_and_field() {
    let cases = [
        (
            PANDA.replace("127.0.0.1", "0.0.0.0"),
            "docker/x.toml:9: server.host: binding 0.0.0.0 exposes the server",
        ),
        (
            PANDA.replace("port = 11435", "port = 0"),
            "server.port: port 0",
        ),
        (
            PANDA.replace("port = 11435", "port = 70000"),
            "docker/x.toml:10: invalid value: integer `70000`",
        ),
        (
            PANDA.replace("gpus = \"all\"", "gpus = \"some\""),
            "docker/x.toml:5: gpus:",
        ),
        (
            PANDA.replace("unless-stopped", "sometimes"),
            "restart: \"sometimes\"",
        ),
        (
            PANDA.replace("name = \"panda-llamacpp\"", "name = \"panda llamacpp\""),
            "name: \"panda llamacpp\" is not a valid container name",
        ),
        (
            PANDA.replace("jinja = true", "jinja = true\ncolour = 1"),
            "unknown field `colour`",
        ),
        (
            format!("platform = \"linux\"\n{PANDA}"),
            "docker/x.toml:1: platform:",
        ),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.contains(want), "want {want:?} in {got}");
    }
}

#[test]
fn exposing_needs_expose_and_an_api_key_variable() {
    let exposed = PANDA
        .replace("127.0.0.1", "0.0.0.0")
        .replace("network = \"host\"", "network = \"host\"\nexpose = true");
    assert!(err(&exposed).contains("server.api_key_env"));
    let ok = exposed.replace("jinja = true", "jinja = true\napi_key_env = \"PANDA_KEY\"");
    let spec = Spec::parse(&ok, Path::new("p")).unwrap();
    let line = run_line(&spec);
    // The value in the docker CLI's environment, never in its arguments (`ps`).
    assert!(
        line.starts_with("LLAMA_API_KEY=\"$PANDA_KEY\" docker run "),
        "{line}"
    );
    assert!(line.contains("-e LLAMA_API_KEY \\\n"), "{line}");
    assert!(!spec.server_args(&mount()).iter().any(|a| a.contains("api")));
    let smuggled = PANDA.replace(
        "jinja = true",
        "jinja = true\nextra_args = [\"--api-key\", \"x\"]",
    );
    assert!(err(&smuggled).contains("never as an argument"));
}

/// Clients send the model file's own name (the runbook's robot sends
/// `gemma-4-E2B-it-Q4_K_M.gguf`): it is passed as `--alias`, so `/v1/models` lists it and
/// answers carry it; an alias in `extra_args` wins and is what clients are told.
#[test]
fn the_served_model_is_the_file_name_or_the_spec_own_alias() {
    let spec = Spec::parse(PANDA, Path::new("p")).unwrap();
    assert_eq!(spec.served_model(&mount()), "gemma-4-E2B-it-Q4_K_M.gguf");
    let own = Spec::parse(
        &PANDA.replace(
            "jinja = true",
            "jinja = true\nextra_args = [\"--alias\", \"nav, other\"]",
        ),
        Path::new("p"),
    )
    .unwrap();
    assert_eq!(own.served_model(&mount()), "nav");
    let args = own.server_args(&mount());
    assert_eq!(
        args.iter().filter(|a| *a == "--alias").count(),
        1,
        "the spec's alias only: {args:?}"
    );
}

/// `server.host` may name a network interface (resolved to its address when vlmctl runs):
/// only with `expose = true` and a key, since an interface's address is never loopback.
#[test]
fn an_interface_name_as_host_needs_expose_and_a_key() {
    let named = PANDA.replace("\"127.0.0.1\"", "\"eth0\"");
    let got = err(&named);
    assert!(
        got.contains("server.host: binding the address of interface eth0 exposes the server"),
        "{got}"
    );
    let ok = named
        .replace("network = \"host\"", "network = \"host\"\nexpose = true")
        .replace("jinja = true", "jinja = true\napi_key_env = \"K\"");
    let spec = Spec::parse(&ok, Path::new("p")).unwrap();
    assert_eq!(spec.server.interface(), Some("eth0"));
    assert_eq!(
        Spec::parse(PANDA, Path::new("p"))
            .unwrap()
            .server
            .interface(),
        None
    );
    for bad in ["-eth0", "eth0:1", "a-very-long-interface", "eth 0", ""] {
        let got = err(&ok.replace("\"eth0\"", &format!("{bad:?}")));
        assert!(
            got.contains("is not an IP address or a network interface"),
            "{bad}: {got}"
        );
    }
}

/// The key comes from a variable or a file, never both; a file is named by an absolute path
/// (or `~/`), and either one satisfies `expose = true` and a bridge network.
#[test]
fn an_api_key_file_is_absolute_and_excludes_api_key_env() {
    let exposed = PANDA
        .replace("127.0.0.1", "192.0.2.10")
        .replace("network = \"host\"", "network = \"host\"\nexpose = true");
    let with = |line: &str| exposed.replace("jinja = true", &format!("jinja = true\n{line}"));
    let spec = Spec::parse(
        &with("api_key_file = \"/etc/vlmctl/robot.key\""),
        Path::new("p"),
    )
    .unwrap();
    assert_eq!(
        spec.server.api_key_source(),
        Some(ApiKeySource::File("/etc/vlmctl/robot.key".into()))
    );
    let line = run_line(&spec);
    assert!(
        line.starts_with("LLAMA_API_KEY=\"$(cat /etc/vlmctl/robot.key)\" docker run ")
            && line.contains("-e LLAMA_API_KEY \\\n"),
        "{line}"
    );
    assert!(
        err(&with("api_key_file = \"robot.key\""))
            .contains("server.api_key_file: \"robot.key\" is not an absolute path"),
        "{}",
        err(&with("api_key_file = \"robot.key\""))
    );
    assert!(err(&with("api_key_file = \"/k\"\napi_key_env = \"K\"")).contains("not both"));
    // A spec without the new field keeps its hash (the canonical form leaves it out).
    let plain = Spec::parse(PANDA, Path::new("p")).unwrap();
    assert!(
        !serde_json::to_string(&plain)
            .unwrap()
            .contains("api_key_file")
    );
}

#[test]
fn extra_args_cannot_rebind_authenticate_or_load_unverified_weights_in_any_spelling() {
    let with = |args: &str| {
        PANDA.replace(
            "jinja = true",
            &format!("jinja = true\nextra_args = [{args}]"),
        )
    };
    for (args, want) in [
        (
            r#""--host", "127.0.0.2""#,
            "server.extra_args[0]: \"--host\": vlmctl owns the bind address",
        ),
        (
            r#""-fa", "on", "--host=0.0.0.0""#,
            "server.extra_args[2]: \"--host=…\": vlmctl owns",
        ),
        (r#""--api_key", "x""#, "never as an argument"),
        (r#""--api-key=x""#, "never as an argument"),
        (r#""--api_key_file", "/k""#, "never as an argument"),
        (r#""--port", "1""#, "vlmctl owns the port"),
        (r#""-m", "/models/other.gguf""#, "verified model"),
        (r#""--model=/x.gguf""#, "verified model"),
        (r#""-mm", "/x""#, "verified model"),
        (r#""-hf", "org/repo""#, "not verified against weights.lock"),
        (
            r#""--hf_repo=org/repo""#,
            "not verified against weights.lock",
        ),
        (
            r#""--model-draft", "/x""#,
            "not verified against weights.lock",
        ),
        (r#""--lora", "/x""#, "not verified against weights.lock"),
        (r#""-ngl", "1""#, "server.n_gpu_layers"),
        (r#""--path", "/""#, "how or where the server listens"),
        (r#"" --reuse-port""#, "how or where the server listens"),
        (
            r#""-lv", "4""#,
            "server.extra_args[0]: \"-lv\": vlmctl owns the server's log verbosity (3): above \
             it llama-server logs tens of lines per request (4), then every prompt token",
        ),
        (r#""--log_verbosity", "5""#, "log verbosity"),
        (r#""--verbosity=4""#, "log verbosity"),
        (
            r#""-fa", "on", "-v""#,
            "server.extra_args[2]: \"-v\": vlmctl owns the server's log",
        ),
        (
            r#""--verbose""#,
            "each request and response body with its camera frame",
        ),
        (r#""--log-verbose""#, "log verbosity"),
        (r#""--log-disable""#, "hides the GPU failures"),
        (r#""--embd-gemma-default""#, "a llama.cpp preset"),
        (r#""--vision_gemma_4b_default""#, "a llama.cpp preset"),
        (r#""--fim-qwen-7b-spec""#, "a llama.cpp preset"),
        (r#""--spec-default""#, "a llama.cpp preset"),
    ] {
        let got = err(&with(args));
        assert!(got.contains(want), "{args}: want {want:?} in {got}");
        assert!(
            got.starts_with("docker/x.toml:14: "),
            "{args}: the extra_args line: {got}"
        );
    }
    // Tuning options pass, in llama.cpp's `_` spelling too, with negative numbers as values.
    let ok = with(
        r#""-fa", "on", "--cache_reuse", "256", "-mmdev", "none", "--seed", "-1", "--no-warmup", "-ot", "exps=CPU""#,
    );
    Spec::parse(&ok, Path::new("p")).unwrap();
    // The short `-m` is not `--m`: llama.cpp maps `_` only in `--long` options, so `-m_` is
    // no option llama.cpp knows, and not one that passes.
    assert!(refused_extra_arg("-m_").is_some());
    assert!(refused_extra_arg("-fa_").is_some());
    assert!(refused_extra_arg("--n_gpu_layers=3").is_some());
    assert!(refused_extra_arg("-1.5e3").is_none());
}

/// F2 of the adversarial pass: llama.cpp's agent tools (`POST /tools` reads and writes files
/// and runs commands, no key), MCP, the CORS proxy, RPC and every option that reads or writes
/// a path in the container are refused, at the `extra_args` line, in every spelling of
/// `common/arg.cpp` (aliases, `_`, `=VALUE`), and so is any option that is not a known
/// tuning option.
#[test]
fn extra_args_refuse_tools_agents_mcp_rpc_cors_and_file_options_at_their_line() {
    let with = |args: &str| {
        PANDA.replace(
            "jinja = true",
            &format!("jinja = true\nextra_args = [\"-fa\", \"on\", {args}]"),
        )
    };
    let tools = "agent tools";
    let files = "reads or writes files";
    for (arg, want) in [
        ("--tools", tools),
        ("--tools=all", tools),
        ("--tools-runtime", tools),
        ("--tools_runtime", tools),
        ("-ag", tools),
        ("--agent", tools),
        ("--mcp-servers-json", tools),
        ("--mcp-servers-config", tools),
        ("--ui-mcp-proxy", tools),
        ("--webui_mcp_proxy", tools),
        ("--rpc", "RPC servers"),
        ("--rpc=127.0.0.1:50052", "RPC servers"),
        ("--media-path", files),
        ("--slot-save-path", files),
        ("--slot_save_path=/tmp", files),
        ("--log-file", files),
        ("--log-prompts-dir", files),
        ("-lcs", files),
        ("--lookup-cache-dynamic", files),
        ("--grammar-file", files),
        ("-jf", files),
        ("--chat-template-file", files),
        ("--ui-config-file", files),
        ("--video-ffmpeg-dir", files),
        ("--props", "POST /props"),
        ("--cors-origins", "browser"),
        ("--cors-methods", "browser"),
        ("--cors-headers", "browser"),
        ("--cors-credentials", "browser"),
        ("--help", "prints and exits"),
        ("--list-devices", "prints and exits"),
        // Not a known tuning option: refused without a reason of its own.
        ("--ui-config", "not an option extra_args may carry"),
        ("--models-max", "not an option extra_args may carry"),
        ("--no-such-option", "not an option extra_args may carry"),
        ("-", "not an option extra_args may carry"),
        ("--flash-attn=on", "from the next argument"),
    ] {
        let got = err(&with(&format!("{arg:?}, \"x\"")));
        assert!(
            got.starts_with("docker/x.toml:14: server.extra_args[2]: "),
            "{arg}: the extra_args line and element: {got}"
        );
        assert!(got.contains(want), "{arg}: want {want:?} in {got}");
    }
    // Even where llama.cpp would read it as a value, an option name is refused.
    let got = err(&with(r#""--alias", "--tools""#));
    assert!(got.contains("server.extra_args[3]"), "{got}");
    // Turning the dangerous ones off is fine.
    Spec::parse(
        &with(r#""--no-agent", "-no-ag", "--no-ui-mcp-proxy""#),
        Path::new("p"),
    )
    .unwrap();
}

/// The nit of the adversarial pass: a refused `--api-key=VALUE` never shows the value.
#[test]
fn a_refused_option_never_echoes_its_value() {
    let got = err(&PANDA.replace(
        "jinja = true",
        "jinja = true\nextra_args = [\"--api-key=sk-SECRET\"]",
    ));
    assert!(got.contains("\"--api-key=…\": pass the API key"), "{got}");
    assert!(!got.contains("SECRET"), "{got}");
    assert_eq!(shown_extra_arg("--api_key=sk"), "\"--api_key=…\"");
    assert_eq!(shown_extra_arg("a=b"), "\"a=b\"");
}

#[test]
fn image_must_be_a_reference_not_an_option() {
    for bad in [
        "--help",
        "-x",
        "a b",
        "img\n--privileged",
        "",
        "x//y",
        "x:",
        "reg/$(id)",
    ] {
        let got = err(&PANDA.replace(
            "ghcr.io/ggml-org/llama.cpp:server-cuda",
            &bad.replace('\n', "\\n"),
        ));
        assert!(got.contains("docker/x.toml:3: image:"), "{bad:?}: {got}");
    }
    for good in [
        "ghcr.io/ggml-org/llama.cpp:server-cuda",
        "127.0.0.1:5000/x/y:tag",
        "vlmctl-test/llama-server:cpu",
        "img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        Spec::parse(
            &PANDA.replace("ghcr.io/ggml-org/llama.cpp:server-cuda", good),
            Path::new("p"),
        )
        .unwrap();
    }
}

#[test]
fn health_timeout_is_between_one_second_and_an_hour() {
    for bad in ["0", "3601", "18446744073709551615"] {
        let got = err(&PANDA.replace("timeout_s = 120", &format!("timeout_s = {bad}")));
        assert!(got.contains("health.timeout_s"), "{bad}: {got}");
        assert!(
            got.starts_with("docker/x.toml:15: "),
            "{bad}: its own line: {got}"
        );
    }
    assert!(err(&PANDA.replace("timeout_s = 120", "timeout_s = -1")).contains(":15:"));
    let s = Spec::parse(
        &PANDA.replace("timeout_s = 120", "timeout_s = 3600"),
        Path::new("p"),
    )
    .unwrap();
    assert_eq!(s.health.timeout_s, 3600);
    assert!(
        err(&PANDA.replace("jinja = true", "jinja = true\nthreads = 0")).contains("server.threads")
    );
}

#[test]
fn ipv6_loopback_gets_brackets_in_urls_and_port_bindings() {
    assert_eq!(http_base("::1", 11435), "http://[::1]:11435");
    assert_eq!(http_base("127.0.0.1", 11435), "http://127.0.0.1:11435");
    let bridge = PANDA
        .replace("127.0.0.1", "::1")
        .replace("network = \"host\"", "network = \"bridge\"");
    assert!(
        err(&bridge).contains("docker/x.toml:7: network: on a bridge network"),
        "a bridge network is reachable from every other container: a key is needed"
    );
    let spec = Spec::parse(
        &bridge.replace("jinja = true", "jinja = true\napi_key_env = \"K\""),
        Path::new("p"),
    )
    .unwrap();
    let line = run_line(&spec);
    assert!(line.contains("-p [::1]:11435:11435"), "{line}");
    // Inside its own network namespace the server listens on every address; the published
    // binding above is what keeps it on loopback.
    assert!(line.contains("--host 0.0.0.0"), "{line}");
    let host_net = Spec::parse(&PANDA.replace("127.0.0.1", "::1"), Path::new("p")).unwrap();
    assert!(
        host_net
            .server_args(&mount())
            .join(" ")
            .contains("--host ::1")
    );
    // Any other IPv6 address is not loopback.
    assert!(err(&PANDA.replace("127.0.0.1", "::")).contains("exposes the server"));
}

#[test]
fn a_spec_that_is_not_utf8_is_bad_input_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("latin1.toml");
    let mut bytes = PANDA.as_bytes().to_vec();
    let at = PANDA.find("[server]").unwrap();
    bytes.splice(at..at, b"# caf\xe9\n".iter().copied());
    std::fs::write(&p, bytes).unwrap();
    let e = Spec::load(&p).unwrap_err();
    assert!(
        matches!(e, LifecycleError::SpecInvalid { line: 8, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("not UTF-8"), "{e}");
}

#[test]
fn device_ids_are_ids_and_the_run_line_quotes_them() {
    let with = |v: &str| PANDA.replace("gpus = \"all\"", &format!("gpus = {v}"));
    for bad in [
        r#"["0'$(touch /tmp/x)'"]"#,
        r#"["0 1"]"#,
        r#"[""]"#,
        "[true]",
    ] {
        assert!(err(&with(bad)).contains("docker/x.toml:5: gpus:"), "{bad}");
    }
    let s = Spec::parse(&with(r#"["0", "GPU-8e2f:1.a_b"]"#), Path::new("p")).unwrap();
    let line = run_line(&s);
    assert!(
        line.contains(r#"--gpus '"device=0,GPU-8e2f:1.a_b"'"#),
        "{line}"
    );
}

#[test]
fn gpus_forms() {
    for (v, want) in [
        ("\"none\"", Gpus::None),
        ("2", Gpus::Count(2)),
        ("[\"0\", 1]", Gpus::Devices(vec!["0".into(), "1".into()])),
    ] {
        let s = Spec::parse(
            &PANDA.replace("gpus = \"all\"", &format!("gpus = {v}")),
            Path::new("p"),
        )
        .unwrap();
        assert_eq!(s.gpus, want);
    }
}
