//! Bench plans (`examples/nav-bench.toml` is the commented template), validated before any I/O.

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

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

impl std::fmt::Display for Backend {
    /// The protocol's own name, as reports print it (`OpenAI`, not the variant's `Openai`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Openai => "OpenAI",
            Self::Ollama => "Ollama",
        })
    }
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
const DEFAULT_TIMEOUT_S: u32 = 30;
fn d_timeout() -> f64 {
    f64::from(DEFAULT_TIMEOUT_S)
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

/// Allowed `runs`: at least one measured run; the cap keeps a typo from meaning "forever".
pub const RUNS: RangeInclusive<u64> = 1..=100_000;
/// Allowed `warmup`.
pub const WARMUP: RangeInclusive<u64> = 0..=1000;
/// Allowed `max_tokens`.
pub const MAX_TOKENS: RangeInclusive<u64> = 1..=1_000_000;
/// Largest `timeout_s` in seconds; it must also be above 0.
pub const TIMEOUT_MAX_S: f64 = 3600.0;
/// Allowed `load.rate_hz`: a period between 100 µs and 1000 s.
pub const RATE_HZ: RangeInclusive<f64> = 0.001..=10_000.0;

/// The config called `name`.
fn config_def(name: &str) -> Option<ConfigDef> {
    CONFIGS.iter().find(|d| d.name == name).copied()
}

impl Plan {
    /// Parses and checks plan text; `path` is used in messages only. Every error names the line
    /// of the offending key and, for numbers, the allowed range.
    pub fn parse(text: &str, path: &Path) -> Result<Self, BenchError> {
        let invalid = |span: Option<Range<usize>>, message: String| BenchError::PlanInvalid {
            path: path.to_owned(),
            line: span.map_or(1, |s| line_of(text, s.start)),
            message,
        };
        let toml_error = |e: toml::de::Error| invalid(e.span(), e.message().to_owned());
        // Numbers are checked on a lenient, spanned parse first, so that `runs = -5` or
        // `timeout_s = "x"` read like `runs = 0` (field, line, range) instead of serde's words.
        let raw: RawPlan = toml::from_str(text).map_err(toml_error)?;
        raw.check_numbers()
            .map_err(|(span, message)| invalid(Some(span), message))?;
        let plan: Self = toml::from_str(text).map_err(toml_error)?;
        let targets_span = raw.target.as_ref().map(Spanned::span);
        if plan.targets.is_empty() {
            return Err(invalid(
                targets_span,
                "target: a plan needs at least one [[target]]".to_owned(),
            ));
        }
        for (i, c) in plan.configs.iter().enumerate() {
            if config_def(c).is_none() {
                let span = raw
                    .configs
                    .as_ref()
                    .and_then(|v| v.get(i))
                    .map(Spanned::span);
                return Err(invalid(
                    span,
                    format!("configs: unknown config {c:?}, expected one of A, B, C, D, E, T"),
                ));
            }
        }
        let raw_targets = raw
            .target
            .as_ref()
            .map_or(&[][..], |t| t.get_ref().as_slice());
        for (i, t) in plan.targets.iter().enumerate() {
            let raw_t = raw_targets.get(i);
            let span_of = |key: fn(&RawTarget) -> &Option<Spanned<IgnoredAny>>| {
                raw_t
                    .and_then(|r| key(r.get_ref()).as_ref().map(Spanned::span))
                    .or_else(|| raw_t.map(Spanned::span))
                    .or_else(|| targets_span.clone())
            };
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err(invalid(
                    span_of(|r| &r.url),
                    format!(
                        "target.url: {:?} (target {:?}) must start with http:// or https://",
                        t.url, t.name
                    ),
                ));
            }
            if t.backend == Backend::Ollama && t.model.is_none() {
                return Err(invalid(
                    span_of(|r| &r.backend),
                    format!(
                        "target.model: target {:?} uses the ollama backend, which needs `model`",
                        t.name
                    ),
                ));
            }
        }
        Ok(plan)
    }

    /// The per-request timeout. Total over any `timeout_s` (a hand-built plan skips
    /// [`Plan::parse`]): clamped to 1 ms ..= [`TIMEOUT_MAX_S`], NaN gives the default.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.timeout_s.clamp(0.001, TIMEOUT_MAX_S))
            .unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_S.into()))
    }
}

impl Load {
    /// The open-loop period (`None`: closed loop). Total over any `rate_hz`: clamped to
    /// [`RATE_HZ`]; NaN means closed loop.
    #[must_use]
    pub fn period(&self) -> Option<Duration> {
        let rate = self.rate_hz?.clamp(*RATE_HZ.start(), *RATE_HZ.end());
        Duration::try_from_secs_f64(1.0 / rate).ok()
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// Where the checked keys are, with numbers as written: a lenient parse of the plan text (no
/// unknown-field or type checks beyond structure; [`Plan`] does those).
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPlan {
    version: Option<Spanned<Num>>,
    runs: Option<Spanned<Num>>,
    warmup: Option<Spanned<Num>>,
    max_tokens: Option<Spanned<Num>>,
    timeout_s: Option<Spanned<Num>>,
    configs: Option<Vec<Spanned<IgnoredAny>>>,
    load: Option<RawLoad>,
    target: Option<Spanned<Vec<Spanned<RawTarget>>>>,
}

#[derive(Deserialize, Default)]
#[serde(default, expecting = "struct Load")] // as `Plan`'s messages say
struct RawLoad {
    rate_hz: Option<Spanned<Num>>,
}

#[derive(Deserialize, Default)]
#[serde(default, expecting = "struct Target")]
struct RawTarget {
    url: Option<Spanned<IgnoredAny>>,
    backend: Option<Spanned<IgnoredAny>>,
}

type Problem = (Range<usize>, String);

impl RawPlan {
    fn check_numbers(&self) -> Result<(), Problem> {
        if let Some(v) = &self.version
            && !matches!(v.get_ref(), Num::Int(1))
        {
            return Err(problem(
                v,
                "version",
                "1 (the only plan format this vlmctl reads)",
            ));
        }
        whole(self.runs.as_ref(), "runs", &RUNS)?;
        whole(self.warmup.as_ref(), "warmup", &WARMUP)?;
        whole(self.max_tokens.as_ref(), "max_tokens", &MAX_TOKENS)?;
        if let Some(v) = &self.timeout_s
            && !v
                .get_ref()
                .as_f64()
                .is_some_and(|t| t > 0.0 && t <= TIMEOUT_MAX_S)
        {
            return Err(problem(
                v,
                "timeout_s",
                &format!("a finite number of seconds above 0 and at most {TIMEOUT_MAX_S}"),
            ));
        }
        if let Some(v) = self.load.as_ref().and_then(|l| l.rate_hz.as_ref())
            && !v.get_ref().as_f64().is_some_and(|r| RATE_HZ.contains(&r))
        {
            return Err(problem(
                v,
                "load.rate_hz",
                &format!(
                    "a finite rate from {} to {} requests per second (leave it out for closed loop)",
                    RATE_HZ.start(),
                    RATE_HZ.end()
                ),
            ));
        }
        Ok(())
    }
}

/// `v` must be a whole number in `range` (absent: the default, which is).
fn whole(
    v: Option<&Spanned<Num>>,
    field: &str,
    range: &RangeInclusive<u64>,
) -> Result<(), Problem> {
    match v {
        Some(v)
            if !matches!(v.get_ref(), Num::Int(i)
                if u64::try_from(*i).is_ok_and(|i| range.contains(&i))) =>
        {
            Err(problem(
                v,
                field,
                &format!("a whole number from {} to {}", range.start(), range.end()),
            ))
        }
        _ => Ok(()),
    }
}

fn problem(v: &Spanned<Num>, field: &str, expected: &str) -> Problem {
    (
        v.span(),
        format!("{field}: got {}, expected {expected}", v.get_ref()),
    )
}

/// A plan value where a number belongs, whatever was written, so that range checks can say what
/// they got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i128),
    Float(f64),
    /// Not a number: what it is ("a string").
    Other(&'static str),
}

impl Num {
    fn as_f64(self) -> Option<f64> {
        match self {
            // Only compared with small bounds: precision above 2^53 does not matter.
            Self::Int(i) => Some(i as f64),
            Self::Float(f) if f.is_finite() => Some(f),
            Self::Float(_) | Self::Other(_) => None,
        }
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            // Debug, not Display: `1e-300`, not three hundred zeros.
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Other(what) => f.write_str(what),
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Num, E> {
                Ok(Num::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Num, E> {
                Ok(Num::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num::Float(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Num, E> {
                Ok(Num::Other("a boolean"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Num, E> {
                Ok(Num::Other("a string"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Num, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Num::Other("an array"))
            }
            // toml hands date-times over as maps too.
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Num, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Num::Other("a table or date-time"))
            }
        }
        d.deserialize_any(V)
    }
}

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
        let plan = Plan::parse(&String::from_utf8_lossy(&bytes), path)?;
        let configs = plan.configs.iter().filter_map(|c| config_def(c)).collect();
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        // A file the plan names is part of the plan: a missing one is the plan's error (which
        // field, which path it resolved to), not an unusable environment.
        let read = |field: &'static str, p: &Path| {
            let full = base.join(p);
            std::fs::read(&full).map_err(|source| BenchError::PlanFile {
                plan: path.to_owned(),
                field,
                path: full,
                source,
            })
        };
        let mut prompts = BTreeMap::new();
        let mut prompt_sha256 = BTreeMap::new();
        for (k, field, p, needed) in [
            ("nav", "prompts.nav", &plan.prompts.nav, true),
            (
                "nav_short",
                "prompts.nav_short",
                &plan.prompts.nav_short,
                true,
            ),
            // Only the `describe` request reads it.
            (
                "describe",
                "prompts.describe",
                &plan.prompts.describe,
                plan.describe,
            ),
        ] {
            if !needed {
                continue;
            }
            let b = read(field, p)?;
            prompt_sha256.insert(k.to_owned(), sha(&b));
            prompts.insert(k.to_owned(), String::from_utf8_lossy(&b).into_owned());
        }
        let image = plan
            .image
            .as_deref()
            .map(|p| read("image", p))
            .transpose()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n";

    fn parse(text: &str) -> Result<Plan, BenchError> {
        Plan::parse(text, Path::new("dir/plan.toml"))
    }

    /// The message for a plan whose line 4 is `line` (lines 1-3: a comment, the version, blank).
    fn err_at_line_4(line: &str) -> String {
        let text = format!("# a plan\nversion = 1\n\n{line}\n{TARGET}");
        match parse(&text) {
            Ok(p) => panic!("{line:?} was accepted: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// `LoadedPlan::load` of a plan beside the repository's camera frame and prompts, with these
    /// extra lines.
    fn load_with(extra: &str) -> Result<LoadedPlan, BenchError> {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(examples.join("camera.png"), dir.path().join("camera.png")).unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(
            &path,
            format!(
                "version = 1\n{extra}\n[prompts]\nnav = \"{e}/prompts/nav.txt\"\n\
                 nav_short = \"{e}/prompts/nav-short.txt\"\ndescribe = \"{e}/prompts/describe.txt\"\n{TARGET}",
                e = examples.display()
            ),
        )
        .unwrap();
        LoadedPlan::load(&path)
    }

    #[test]
    fn a_missing_plan_file_names_the_field_and_resolved_path_and_describe_is_optional() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("prompts")).unwrap();
        for f in ["nav", "nav-short"] {
            std::fs::write(dir.path().join(format!("prompts/{f}.txt")), f).unwrap();
        }
        let path = dir.path().join("plan.toml");
        // No prompts/describe.txt: needed only for the `describe` request.
        std::fs::write(&path, format!("version = 1\ndescribe = false\n{TARGET}")).unwrap();
        let loaded = LoadedPlan::load(&path).unwrap();
        assert!(!loaded.prompts.contains_key("describe"));
        assert_eq!(loaded.prompts["nav"], "nav");
        std::fs::write(&path, format!("version = 1\n{TARGET}")).unwrap();
        let err = LoadedPlan::load(&path).unwrap_err();
        assert!(
            matches!(&err, BenchError::PlanFile { field: "prompts.describe", path: p, .. }
                if *p == dir.path().join("prompts/describe.txt")),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}: prompts.describe: cannot read {}",
                path.display(),
                dir.path().join("prompts/describe.txt").display()
            )
        );
        std::fs::write(
            &path,
            format!("version = 1\ndescribe = false\nimage = \"cam.png\"\n{TARGET}"),
        )
        .unwrap();
        let err = LoadedPlan::load(&path).unwrap_err();
        assert!(
            matches!(&err, BenchError::PlanFile { field: "image", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_pinned_camera_frame_is_enforced() {
        let frame =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/camera.png"))
                .unwrap();
        let real = sha(&frame);
        // The right hash loads (in either case), and is what the results record.
        for pin in [real.clone(), real.to_uppercase()] {
            let loaded =
                load_with(&format!("image = \"camera.png\"\nimage_sha256 = \"{pin}\"")).unwrap();
            assert_eq!(loaded.image_sha256, real);
            assert_eq!(loaded.image.as_deref(), Some(&frame[..]));
        }
        // Another frame's hash is refused, naming both.
        let other = "0".repeat(64);
        let err = load_with(&format!(
            "image = \"camera.png\"\nimage_sha256 = \"{other}\""
        ))
        .unwrap_err();
        assert!(
            matches!(&err, BenchError::ImageMismatch { expected, actual, .. } if *expected == other && *actual == real),
            "{err}"
        );
        // A pin with no frame at all (a text-only plan) is refused too, not silently ignored.
        let err = load_with(&format!("image_sha256 = \"{real}\"")).unwrap_err();
        assert!(
            matches!(&err, BenchError::ImageMismatch { expected, actual, .. } if *expected == real && actual.is_empty()),
            "{err}"
        );
        // No pin: any frame loads.
        assert_eq!(
            load_with("image = \"camera.png\"").unwrap().image_sha256,
            real
        );
    }

    #[test]
    fn the_template_and_a_minimal_plan_parse() {
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nav-bench.toml");
        let loaded = LoadedPlan::load(&template).unwrap();
        assert_eq!((loaded.plan.runs, loaded.plan.warmup), (20, 1));
        assert_eq!(loaded.configs.len(), 6, "A-E and T beside them");
        assert_eq!(loaded.plan.timeout(), Duration::from_secs(30));

        let minimal = parse(&format!("version = 1\n{TARGET}")).unwrap();
        assert_eq!(
            (minimal.runs, minimal.warmup, minimal.max_tokens),
            (20, 1, 64)
        );
        assert_eq!(minimal.load.period(), None);
    }

    #[test]
    fn the_bounds_themselves_are_allowed() {
        for (top, rate) in [
            (
                "runs = 1\nwarmup = 0\nmax_tokens = 1\ntimeout_s = 0.001",
                "0.001",
            ),
            (
                "runs = 100000\nwarmup = 1000\nmax_tokens = 1000000\ntimeout_s = 3600",
                "10000",
            ),
        ] {
            let text = format!("version = 1\n{top}\n[load]\nrate_hz = {rate}\n{TARGET}");
            let plan = parse(&text).unwrap_or_else(|e| panic!("{e}"));
            assert!(plan.load.period().is_some());
        }
    }

    #[test]
    fn bad_numbers_name_file_real_line_field_and_range() {
        const TIMEOUT: &str = "expected a finite number of seconds above 0 and at most 3600";
        const RUNS: &str = "expected a whole number from 1 to 100000";
        let cases = [
            ("timeout_s = inf", "timeout_s: got inf, ", TIMEOUT),
            ("timeout_s = -inf", "timeout_s: got -inf, ", TIMEOUT),
            ("timeout_s = 1e30", "timeout_s: got 1e30, ", TIMEOUT),
            ("timeout_s = -5", "timeout_s: got -5, ", TIMEOUT),
            ("timeout_s = nan", "timeout_s: got NaN, ", TIMEOUT),
            ("timeout_s = 0", "timeout_s: got 0, ", TIMEOUT),
            ("timeout_s = 3600.5", "timeout_s: got 3600.5, ", TIMEOUT),
            ("timeout_s = \"30\"", "timeout_s: got a string, ", TIMEOUT),
            (
                "runs = 18446744073709551615\nwarmup = 2",
                "runs: got 18446744073709551615, ",
                RUNS,
            ),
            ("runs = 0", "runs: got 0, ", RUNS),
            ("runs = -5", "runs: got -5, ", RUNS),
            ("runs = 100001", "runs: got 100001, ", RUNS),
            ("runs = 2.5", "runs: got 2.5, ", RUNS),
            ("runs = true", "runs: got a boolean, ", RUNS),
            (
                "runs = 99999999999999999999999999",
                "runs: got 99999999999999999999999999, ",
                RUNS,
            ),
            (
                "warmup = 18446744073709551615",
                "warmup: got 18446744073709551615, ",
                "expected a whole number from 0 to 1000",
            ),
            (
                "warmup = -1",
                "warmup: got -1, ",
                "expected a whole number from 0 to 1000",
            ),
            (
                "max_tokens = 0",
                "max_tokens: got 0, ",
                "expected a whole number from 1 to 1000000",
            ),
            (
                "max_tokens = 4294967296",
                "max_tokens: got 4294967296, ",
                "expected a whole number from 1 to 1000000",
            ),
        ];
        for (line, field, range) in cases {
            let got = err_at_line_4(line);
            let want = format!("dir/plan.toml:4: {field}{range}");
            assert!(got.contains(&want), "{line:?}: want {want:?} in {got:?}");
        }
    }

    #[test]
    fn bad_rates_name_file_real_line_field_and_range() {
        for (rate, shown) in [
            ("1e-300", "1e-300"),
            ("0", "0"),
            ("0.0", "0.0"),
            ("-36", "-36"),
            ("nan", "NaN"),
            ("inf", "inf"),
            ("1e30", "1e30"),
            ("10001", "10001"),
            ("0.0009", "0.0009"),
            ("[36]", "an array"),
        ] {
            // `[load]` on line 4, `rate_hz` on line 5.
            let got = err_at_line_4(&format!("[load]\nrate_hz = {rate}"));
            let want = format!(
                "dir/plan.toml:5: load.rate_hz: got {shown}, expected a finite rate from 0.001 to \
                 10000 requests per second"
            );
            assert!(got.contains(&want), "{rate}: want {want:?} in {got:?}");
        }
    }

    #[test]
    fn other_checks_name_their_real_line() {
        let cases = [
            (
                "version = 2\n".to_owned() + TARGET,
                "dir/plan.toml:1: version: got 2, expected 1",
            ),
            (
                "version = 1\nconfigs = [\"A\",\n  \"Q\"]\n".to_owned() + TARGET,
                "dir/plan.toml:3: configs: unknown config \"Q\"",
            ),
            (
                "version = 1\n\ntarget = []\n".to_owned(),
                "dir/plan.toml:3: target: a plan needs at least one [[target]]",
            ),
            (
                format!("version = 1\n{TARGET}[[target]]\nname = \"b\"\n\nurl = \"ftp://x\"\n"),
                "dir/plan.toml:8: target.url: \"ftp://x\" (target \"b\") must start with http://",
            ),
            (
                format!("version = 1\n{}\nbackend = \"ollama\"\n", TARGET.trim_end()),
                "dir/plan.toml:5: target.model: target \"a\" uses the ollama backend",
            ),
            (
                "version = 1\n[load]\nrate_hz = 36.0\nruns = 3\n".to_owned() + TARGET,
                "dir/plan.toml:4: unknown field `runs`",
            ),
            (
                "version = 1\nload = 5\n".to_owned() + TARGET,
                "dir/plan.toml:2: invalid type: integer `5`, expected struct Load",
            ),
        ];
        for (text, want) in cases {
            let got = parse(&text).unwrap_err().to_string();
            assert!(got.contains(want), "want {want:?} in {got:?}");
        }
    }

    #[test]
    fn durations_from_hand_built_plans_never_panic() {
        let mut plan = parse(&format!("version = 1\n{TARGET}")).unwrap();
        for t in [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e30,
            -5.0,
            0.0,
            1e-300,
        ] {
            plan.timeout_s = t;
            let d = plan.timeout();
            assert!(
                d >= Duration::from_millis(1) && d <= Duration::from_secs(3600),
                "{t}: {d:?}"
            );
        }
        for r in [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e30,
            -5.0,
            0.0,
            1e-300,
        ] {
            plan.load.rate_hz = Some(r);
            let p = plan.load.period();
            assert!(
                p.is_none_or(|p| p >= Duration::from_micros(100) && p <= Duration::from_secs(1000)),
                "{r}: {p:?}"
            );
        }
    }
}
