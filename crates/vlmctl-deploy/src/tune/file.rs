//! The tune file: the variants of a deployment's server settings that `vlmctl tune` measures,
//! parsed and checked (each error names its line and field) before anything runs.
//!
//! ```toml
//! baseline = true          # also measure the spec as it is (default)
//! max_memory_mib = 2048    # memory gate (default: the spec's memory.max_process_mib)
//!
//! [[variant]]
//! name = "fa-on"
//! extra_args = ["--flash-attn", "on"]   # appended to the spec's server.extra_args
//!
//! [[variant]]
//! name = "ctx-2k"
//! ctx_size = 2048                       # the spec's own fields, overridden
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vlmctl_lifecycle::spec::Spec;

use crate::DeployError;

/// The name the spec as it is gets in the table.
pub const BASELINE: &str = "baseline";

/// A checked tune file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuneFile {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Whether the spec as it is is measured too (first, as [`BASELINE`]).
    pub baseline: bool,
    /// The memory gate in MiB, when the file sets one.
    pub max_memory_mib: Option<u64>,
    /// The variants, in the file's order.
    pub variants: Vec<Variant>,
}

/// One variant: what it changes in the spec's `[server]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Variant {
    /// Its name in the table.
    pub name: String,
    /// Appended to `server.extra_args`.
    pub extra_args: Vec<String>,
    /// Replaces `server.ctx_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx_size: Option<u32>,
    /// Replaces `server.threads`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Replaces `server.n_gpu_layers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_gpu_layers: Option<u32>,
}

impl Variant {
    /// What it changes, as `llama-server` arguments (`the spec as it is` for the baseline).
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.ctx_size {
            parts.push(format!("--ctx-size {c}"));
        }
        if let Some(t) = self.threads {
            parts.push(format!("--threads {t}"));
        }
        if let Some(n) = self.n_gpu_layers {
            parts.push(format!("--n-gpu-layers {n}"));
        }
        parts.extend(self.extra_args.iter().cloned());
        if parts.is_empty() {
            "the spec as it is".to_owned()
        } else {
            parts.join(" ")
        }
    }

    /// The spec as it is.
    #[must_use]
    pub fn baseline() -> Self {
        Self {
            name: BASELINE.to_owned(),
            ..Self::default()
        }
    }

    /// Whether it changes nothing.
    #[must_use]
    pub fn is_baseline(&self) -> bool {
        self.extra_args.is_empty()
            && self.ctx_size.is_none()
            && self.threads.is_none()
            && self.n_gpu_layers.is_none()
    }

    /// `spec` with this variant's changes. The memory ceiling is left out: tune measures every
    /// variant and applies its memory gate itself, so a variant above it shows in the table
    /// instead of failing its launch.
    #[must_use]
    pub fn apply(&self, spec: &Spec) -> Spec {
        let mut s = spec.clone();
        s.server.extra_args.extend(self.extra_args.iter().cloned());
        if let Some(c) = self.ctx_size {
            s.server.ctx_size = c;
        }
        if self.threads.is_some() {
            s.server.threads = self.threads;
        }
        if let Some(n) = self.n_gpu_layers {
            s.server.n_gpu_layers = n;
        }
        s.memory.max_process_mib = None;
        s
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default = "yes")]
    baseline: bool,
    #[serde(default)]
    max_memory_mib: Option<u64>,
    #[serde(default)]
    variant: Vec<toml::Spanned<RawVariant>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    #[serde(default)]
    extra_args: Vec<String>,
    #[serde(default)]
    ctx_size: Option<u32>,
    #[serde(default)]
    threads: Option<u32>,
    #[serde(default)]
    n_gpu_layers: Option<u32>,
}

impl TuneFile {
    /// Reads and checks the tune file at `path`.
    pub fn load(path: &Path) -> Result<Self, DeployError> {
        let text = vlmctl_files::read_regular_text(
            path,
            vlmctl_files::MAX_TEXT_BYTES,
            "a tune variants file",
        )
        .map_err(|source| DeployError::TuneFileRead {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks tune-file text; `path` is for messages.
    #[expect(
        clippy::too_many_lines,
        reason = "one check after another, each with its own message and line"
    )]
    pub fn parse(text: &str, path: &Path) -> Result<Self, DeployError> {
        let invalid = |at: usize, field: &str, message: String| DeployError::TuneFileInvalid {
            path: path.to_owned(),
            line: text.get(..at).map_or(1, |t| t.matches('\n').count() + 1),
            field: field.to_owned(),
            message,
        };
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| invalid(e.span().map_or(0, |s| s.start), "", e.message().to_owned()))?;
        if raw.max_memory_mib == Some(0) {
            let at = text.find("max_memory_mib").unwrap_or(0);
            return Err(invalid(
                at,
                "max_memory_mib",
                "0 MiB: give the ceiling, or leave it out for the spec's memory.max_process_mib"
                    .to_owned(),
            ));
        }
        if raw.variant.is_empty() {
            return Err(invalid(
                text.len(),
                "variant",
                "no [[variant]]: name at least one (e.g. name = \"fa-on\", extra_args = \
                 [\"--flash-attn\", \"on\"])"
                    .to_owned(),
            ));
        }
        let mut variants: Vec<Variant> = Vec::new();
        for (i, spanned) in raw.variant.into_iter().enumerate() {
            let at = spanned.span().start;
            let field = |f: &str| format!("variant[{i}].{f}");
            // The line of `key` inside this variant's table, else the table's own.
            let key_at = |key: &str| {
                let body = text.get(at..).unwrap_or("");
                let mut offset = 0;
                for (n, line) in body.split_inclusive('\n').enumerate() {
                    let t = line.trim_start();
                    if n > 0 && t.starts_with('[') {
                        break;
                    }
                    if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
                        return at + offset;
                    }
                    offset += line.len();
                }
                at
            };
            let v = spanned.into_inner();
            if !is_variant_name(&v.name) {
                return Err(invalid(
                    key_at("name"),
                    &field("name"),
                    format!(
                        "{:?} is not a variant name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 40)",
                        v.name
                    ),
                ));
            }
            if variants.iter().any(|o| o.name == v.name) || (raw.baseline && v.name == BASELINE) {
                return Err(invalid(
                    key_at("name"),
                    &field("name"),
                    format!(
                        "{:?} is taken: every variant needs a name of its own",
                        v.name
                    ),
                ));
            }
            for (key, value) in [
                ("ctx_size", v.ctx_size),
                ("threads", v.threads),
                ("n_gpu_layers", v.n_gpu_layers.map(|_| 1)),
            ] {
                if value == Some(0) {
                    return Err(invalid(
                        key_at(key),
                        &field(key),
                        format!("0: give a {key} or leave it out for the spec's"),
                    ));
                }
            }
            for (j, arg) in v.extra_args.iter().enumerate() {
                if let Some(why) = vlmctl_lifecycle::spec::refused_extra_arg(arg) {
                    // The spec fields a variant may set are named as the variant's own.
                    let why = ["ctx_size", "threads", "n_gpu_layers"]
                        .iter()
                        .find(|f| why == format!("set `server.{f}`"))
                        .map_or_else(|| why.to_owned(), |f| format!("set `{f}` in the variant"));
                    return Err(invalid(
                        key_at("extra_args"),
                        &format!("variant[{i}].extra_args[{j}]"),
                        format!("{}: {why}", vlmctl_lifecycle::spec::shown_extra_arg(arg)),
                    ));
                }
            }
            let variant = Variant {
                name: v.name,
                extra_args: v.extra_args,
                ctx_size: v.ctx_size,
                threads: v.threads,
                n_gpu_layers: v.n_gpu_layers,
            };
            if variant.is_baseline() {
                return Err(invalid(
                    at,
                    &field("name"),
                    format!(
                        "{:?} changes nothing: give extra_args or a field (ctx_size, threads, \
                         n_gpu_layers); the spec as it is is measured as \"baseline\"",
                        variant.name
                    ),
                ));
            }
            variants.push(variant);
        }
        Ok(Self {
            path: path.to_owned(),
            baseline: raw.baseline,
            max_memory_mib: raw.max_memory_mib,
            variants,
        })
    }

    /// What is measured, in order: the baseline first when asked for.
    #[must_use]
    pub fn all(&self) -> Vec<Variant> {
        let mut v = Vec::with_capacity(self.variants.len() + 1);
        if self.baseline {
            v.push(Variant::baseline());
        }
        v.extend(self.variants.iter().cloned());
        v
    }
}

fn is_variant_name(name: &str) -> bool {
    name.len() <= 40 && vlmctl_lifecycle::spec::is_container_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TuneFile, String> {
        TuneFile::parse(text, Path::new("tune.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn variants_parse_with_the_baseline_first() {
        let f = parse(
            "max_memory_mib = 900\n[[variant]]\nname = \"fa-on\"\nextra_args = [\"--flash-attn\", \"on\"]\n\
             [[variant]]\nname = \"ctx-2k\"\nctx_size = 2048\nthreads = 4\n",
        )
        .unwrap();
        assert_eq!(f.max_memory_mib, Some(900));
        let names: Vec<_> = f.all().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["baseline", "fa-on", "ctx-2k"]);
        assert_eq!(f.variants[1].ctx_size, Some(2048));
        let off = parse(
            "baseline = false\n[[variant]]\nname = \"p4\"\nextra_args = [\"--parallel\", \"4\"]\n",
        )
        .unwrap();
        assert_eq!(off.all().len(), 1);
    }

    #[test]
    fn the_shipped_template_passes_the_extra_args_allow_list() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tune.toml");
        let text = std::fs::read_to_string(&path).expect("examples/tune.toml");
        let f = TuneFile::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.variants.iter().any(|v| !v.extra_args.is_empty()));
    }

    #[test]
    fn variants_cannot_enable_tools_agents_mcp_rpc_or_files_and_never_echo_a_value() {
        for (args, want) in [
            (r#""--tools", "all""#, "agent tools"),
            (r#""-ag""#, "agent tools"),
            (r#""--mcp_servers_json", "{}""#, "agent tools"),
            (r#""--rpc", "127.0.0.1:50052""#, "RPC servers"),
            (r#""--slot-save-path", "/tmp""#, "reads or writes files"),
            (r#""--cors-origins", "*""#, "browser"),
            (
                r#""--no-such-option""#,
                "not an option extra_args may carry",
            ),
        ] {
            let got = parse(&format!(
                "[[variant]]\nname = \"v\"\n\nextra_args = [\"-fa\", \"on\", {args}]\n"
            ))
            .unwrap_err();
            assert!(
                got.starts_with("tune.toml:4: variant[0].extra_args[2]: "),
                "{args}: {got}"
            );
            assert!(got.contains(want), "{args}: want {want:?} in {got}");
        }
        let got = parse("[[variant]]\nname = \"k\"\nextra_args = [\"--api-key=sk-SECRET\"]\n")
            .unwrap_err();
        assert!(got.contains("\"--api-key=…\": pass the API key"), "{got}");
        assert!(!got.contains("SECRET"), "{got}");
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let cases = [
            (
                "[[variant]]\nname = \"a\"\nextra_args = [\"--no-warmup\"]\n[[variant]]\nname = \"a\"\nthreads = 2\n",
                "tune.toml:5: variant[1].name: \"a\" is taken",
            ),
            (
                "[[variant]]\nname = \"c\"\n\nextra_args = [\"--ctx-size\", \"8\"]\n",
                "tune.toml:4: variant[0].extra_args[0]: \"--ctx-size\": set `ctx_size` in the variant",
            ),
            (
                "[[variant]]\nname = \"h\"\nextra_args = [\"--host=0.0.0.0\"]\n",
                "tune.toml:3: variant[0].extra_args[0]: \"--host=…\": vlmctl owns the bind address",
            ),
            (
                "[[variant]]\nname = \"n\"\n",
                "tune.toml:1: variant[0].name: \"n\" changes nothing",
            ),
            (
                "[[variant]]\nname = \"t\"\nthreads = 0\n",
                "tune.toml:3: variant[0].threads: 0",
            ),
            (
                "[[variant]]\nname = \"bad name\"\nthreads = 1\n",
                "tune.toml:2: variant[0].name: \"bad name\" is not a variant name",
            ),
            (
                "[[variant]]\nname = \"baseline\"\nthreads = 1\n",
                "tune.toml:2: variant[0].name: \"baseline\" is taken",
            ),
            (
                "[[variant]]\nname = \"x\"\nflash = true\n",
                "tune.toml:3: unknown field `flash`",
            ),
            ("baseline = true\n", "tune.toml:2: variant: no [[variant]]"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err();
            assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn a_variant_changes_only_what_it_names_and_drops_the_ceiling() {
        let spec = Spec::parse(
            "name = \"d\"\nimage = \"i:1\"\nmodel = \"m\"\ngpus = \"none\"\n[server]\nhost = \"127.0.0.1\"\nport = 9\nextra_args = [\"--no-warmup\"]\n[memory]\nmax_process_mib = 100\n",
            Path::new("s.toml"),
        )
        .unwrap();
        let v = Variant {
            name: "v".into(),
            extra_args: vec!["--flash-attn".into(), "on".into()],
            ctx_size: Some(2048),
            ..Variant::default()
        };
        let s = v.apply(&spec);
        assert_eq!(s.server.extra_args, ["--no-warmup", "--flash-attn", "on"]);
        assert_eq!(s.server.ctx_size, 2048);
        assert_eq!(s.server.threads, spec.server.threads);
        assert_eq!(s.memory.max_process_mib, None);
        assert_eq!(s.name, spec.name);
    }
}
