//! Bench plans (`examples/nav-bench.toml` is the commented template), validated before any I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::BenchError;
use crate::schema::NavSchema;

/// A bench plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Format version (1).
    pub version: u32,
    /// Measured runs per config.
    #[serde(default = "d_runs")]
    pub runs: usize,
    /// Warm-up runs per config, reported apart and excluded from statistics.
    #[serde(default = "d_warmup")]
    pub warmup: usize,
    /// `max_tokens` / `num_predict`.
    #[serde(default = "d_max_tokens")]
    pub max_tokens: u32,
    /// Per-request timeout.
    #[serde(default = "d_timeout")]
    pub timeout_s: f64,
    /// Camera image (relative to the plan file). Without one, every config is sent text-only
    /// (for servers without a vision projector).
    #[serde(default)]
    pub image: Option<PathBuf>,
    /// When set, a different image is refused (apples-to-apples across runs).
    #[serde(default)]
    pub image_sha256: Option<String>,
    /// Configs to run, in order: A full prompt, B repeat (cache warm), C streaming, D short,
    /// E short + streaming, T text-only nav (no image).
    #[serde(default = "d_configs")]
    pub configs: Vec<String>,
    /// Send one `describe` request per target and keep the answer for a human to read.
    #[serde(default = "yes")]
    pub describe: bool,
    /// Prompt files (relative to the plan file).
    #[serde(default)]
    pub prompts: Prompts,
    /// Nav answer schema.
    #[serde(default)]
    pub schema: NavSchema,
    /// Closed loop (default) or open loop at a rate.
    #[serde(default)]
    pub load: Load,
    /// Servers to measure, in order.
    #[serde(rename = "target")]
    pub targets: Vec<Target>,
}

/// Prompt files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompts {
    /// ~550-token production-style nav prompt.
    #[serde(default = "p_nav")]
    pub nav: PathBuf,
    /// ~310-token short nav prompt.
    #[serde(default = "p_short")]
    pub nav_short: PathBuf,
    /// Free-text description prompt.
    #[serde(default = "p_describe")]
    pub describe: PathBuf,
}

impl Default for Prompts {
    fn default() -> Self {
        Self {
            nav: p_nav(),
            nav_short: p_short(),
            describe: p_describe(),
        }
    }
}

/// Load model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Open loop at this rate (requests per second); closed loop when absent.
    #[serde(default)]
    pub rate_hz: Option<f64>,
}

/// One server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Label in reports.
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:11435`.
    pub url: String,
    /// `openai` (llama-server, vLLM) or `ollama`.
    #[serde(default = "b_openai")]
    pub backend: Backend,
    /// Model name to send (Ollama needs one; llama-server ignores it).
    #[serde(default)]
    pub model: Option<String>,
    /// Environment variable holding an API key (sent as a bearer token, never recorded).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Ollama `keep_alive`.
    #[serde(default)]
    pub keep_alive: Option<String>,
}

/// Protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `/v1/chat/completions`.
    Openai,
    /// `/api/chat`.
    Ollama,
}

fn d_runs() -> usize {
    20
}
fn d_warmup() -> usize {
    1
}
fn d_max_tokens() -> u32 {
    64
}
fn d_timeout() -> f64 {
    30.0
}
fn yes() -> bool {
    true
}
fn d_configs() -> Vec<String> {
    ["A", "B", "C", "D", "E"].map(str::to_owned).to_vec()
}
fn p_nav() -> PathBuf {
    "prompts/nav.txt".into()
}
fn p_short() -> PathBuf {
    "prompts/nav-short.txt".into()
}
fn p_describe() -> PathBuf {
    "prompts/describe.txt".into()
}
fn b_openai() -> Backend {
    Backend::Openai
}

/// What a config sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDef {
    /// Letter.
    pub name: &'static str,
    /// Human description (the runbook's rows).
    pub description: &'static str,
    /// Short prompt instead of the full one.
    pub short: bool,
    /// Streaming (TTFT measured).
    pub stream: bool,
    /// Image attached.
    pub image: bool,
}

/// The runbooks' configs.
pub const CONFIGS: [ConfigDef; 6] = [
    ConfigDef {
        name: "A",
        description: "full nav prompt + image",
        short: false,
        stream: false,
        image: true,
    },
    ConfigDef {
        name: "B",
        description: "full prompt repeat (cache warm)",
        short: false,
        stream: false,
        image: true,
    },
    ConfigDef {
        name: "C",
        description: "full prompt streaming (TTFT)",
        short: false,
        stream: true,
        image: true,
    },
    ConfigDef {
        name: "D",
        description: "short nav prompt + image",
        short: true,
        stream: false,
        image: true,
    },
    ConfigDef {
        name: "E",
        description: "short prompt streaming",
        short: true,
        stream: true,
        image: true,
    },
    ConfigDef {
        name: "T",
        description: "text-only nav (no image)",
        short: false,
        stream: false,
        image: false,
    },
];

/// Everything a run needs, loaded and checked: plan, prompt texts, image bytes, hashes.
#[derive(Debug, Clone)]
pub struct LoadedPlan {
    /// The plan.
    pub plan: Plan,
    /// sha256 of the plan file's bytes.
    pub plan_sha256: String,
    /// Prompt texts by role (`nav`, `nav_short`, `describe`).
    pub prompts: BTreeMap<String, String>,
    /// sha256 of each prompt.
    pub prompt_sha256: BTreeMap<String, String>,
    /// Image bytes (`None`: text-only run).
    pub image: Option<Vec<u8>>,
    /// sha256 of the image (empty for a text-only run).
    pub image_sha256: String,
    /// The configs to run.
    pub configs: Vec<ConfigDef>,
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

impl LoadedPlan {
    /// Reads the plan at `path`, its prompts and image, and checks them.
    pub fn load(path: &Path) -> Result<Self, BenchError> {
        let bytes = std::fs::read(path).map_err(|source| BenchError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let invalid = |message: String, line: usize| BenchError::PlanInvalid {
            path: path.to_owned(),
            line,
            message,
        };
        let plan: Plan = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map_or(1, |s| text[..s.start].matches('\n').count() + 1);
            invalid(e.message().to_owned(), line)
        })?;
        if plan.version != 1 {
            return Err(invalid(
                format!(
                    "plan version {} is not supported (expected 1)",
                    plan.version
                ),
                1,
            ));
        }
        if plan.runs == 0 || plan.targets.is_empty() {
            return Err(invalid(
                "a plan needs runs >= 1 and at least one [[target]]".into(),
                1,
            ));
        }
        if plan.load.rate_hz.is_some_and(|r| !(r > 0.0 && r <= 1000.0)) {
            return Err(invalid("load.rate_hz must be in (0, 1000]".into(), 1));
        }
        let mut configs = Vec::new();
        for c in &plan.configs {
            let def = CONFIGS.iter().find(|d| d.name == c).ok_or_else(|| {
                invalid(format!("unknown config {c:?} (known: A, B, C, D, E, T)"), 1)
            })?;
            configs.push(*def);
        }
        for t in &plan.targets {
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err(invalid(
                    format!(
                        "target {}: url {:?} must start with http:// or https://",
                        t.name, t.url
                    ),
                    1,
                ));
            }
            if t.backend == Backend::Ollama && t.model.is_none() {
                return Err(invalid(
                    format!("target {}: the ollama backend needs `model`", t.name),
                    1,
                ));
            }
        }
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let read = |p: &Path| {
            let full = base.join(p);
            std::fs::read(&full).map_err(|source| BenchError::Read { path: full, source })
        };
        let mut prompts = BTreeMap::new();
        let mut prompt_sha256 = BTreeMap::new();
        for (k, p) in [
            ("nav", &plan.prompts.nav),
            ("nav_short", &plan.prompts.nav_short),
            ("describe", &plan.prompts.describe),
        ] {
            let b = read(p)?;
            prompt_sha256.insert(k.to_owned(), sha(&b));
            prompts.insert(k.to_owned(), String::from_utf8_lossy(&b).into_owned());
        }
        let image = plan.image.as_deref().map(read).transpose()?;
        let image_sha256 = image.as_deref().map(sha).unwrap_or_default();
        if let Some(want) = &plan.image_sha256
            && !want.eq_ignore_ascii_case(&image_sha256)
        {
            return Err(BenchError::ImageMismatch {
                path: base.join(plan.image.as_deref().unwrap_or(Path::new("(no image)"))),
                expected: want.clone(),
                actual: image_sha256,
            });
        }
        Ok(Self {
            plan_sha256: sha(&bytes),
            plan,
            prompts,
            prompt_sha256,
            image,
            image_sha256,
            configs,
        })
    }
}
