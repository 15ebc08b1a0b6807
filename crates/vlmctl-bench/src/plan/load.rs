//! [`LoadedPlan`]: a plan with the files it names read (prompts, camera frame) and hashed, and
//! the API keys it names read from the environment: the plan's I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ConfigDef, Plan, TargetLines, config_def};
use crate::BenchError;

/// Everything a run needs, loaded and checked: plan, prompt texts, image bytes, hashes.
#[derive(Debug, Clone)]
pub struct LoadedPlan {
    /// The plan.
    pub plan: Plan,
    /// [`Plan::sha256`] of [`Self::plan`] as loaded, or as changed by [`Self::set_runs`]
    /// (never by where its targets are aimed).
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
    /// The plan file, as given (for messages).
    pub path: PathBuf,
    /// Per target, where its keys are in the file.
    pub target_lines: Vec<TargetLines>,
}

pub(super) fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

impl Plan {
    /// The plan's hash, one rule for every front-end: the sha256 of the plan as JSON (its
    /// fields in their declared order, defaults filled in). What the plan measures decides it,
    /// not how the file is written (a comment, the order of keys): a plan edited to `runs = 50`
    /// and the same file run by the service with `runs` 50 compare as one plan. Target URLs
    /// are part of it as written (not as a front-end aims them at a deployment or a forward).
    #[must_use]
    pub fn sha256(&self) -> String {
        sha(&serde_json::to_vec(self).unwrap_or_default())
    }
}

impl LoadedPlan {
    /// `runs` measured requests per config instead of the file's (`vlmctl serve`'s `runs`):
    /// the hash follows, so that it equals the hash of a file that says so.
    pub fn set_runs(&mut self, runs: usize) {
        self.plan.runs = runs;
        self.plan_sha256 = self.plan.sha256();
    }

    /// Is this run a rate sweep: the plan has `[sweep]`, or the caller asks for one over
    /// `range` (`--sweep-rate`). A sweep needs an `[slo]` to decide its steps: a `[sweep]`
    /// without one is refused when the plan is parsed, a range asked for here.
    pub fn is_sweep(&self, range: Option<crate::sweep::RateRange>) -> Result<bool, BenchError> {
        let sweep = self.plan.sweep.is_some() || range.is_some();
        if sweep && self.plan.slo.is_none() {
            return Err(BenchError::SweepNeedsSlo {
                path: self.path.clone(),
            });
        }
        Ok(sweep)
    }

    /// The API key of each target that names one (`api_key_env`), read from the environment
    /// before the first request. Never recorded anywhere: the caller registers them as secrets.
    pub fn api_keys(&self) -> Result<BTreeMap<String, String>, BenchError> {
        let mut keys = BTreeMap::new();
        for t in &self.plan.targets {
            if let Some(var) = &t.api_key_env {
                let k = std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| BenchError::ApiKeyMissing {
                        target: t.name.clone(),
                        var: var.clone(),
                    })?;
                keys.insert(t.name.clone(), k);
            }
        }
        Ok(keys)
    }

    /// Reads the plan at `path`, its prompts and image, and checks them.
    pub fn load(path: &Path) -> Result<Self, BenchError> {
        let bytes = vlmctl_files::read_regular(path, vlmctl_files::MAX_TEXT_BYTES, "a bench plan")
            .map_err(|source| BenchError::Read {
                path: path.to_owned(),
                source,
            })?;
        let (plan, target_lines) = Plan::parse_with_lines(&String::from_utf8_lossy(&bytes), path)?;
        let configs = plan.configs.iter().filter_map(|c| config_def(c)).collect();
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        // A file the plan names is part of the plan: a missing one is the plan's error (which
        // field, which path it resolved to), not an unusable environment.
        // Regular files only, bounded: a prompt is text, the image a camera frame.
        let read = |field: &'static str, p: &Path| {
            let full = base.join(p);
            let (max, what) = if field == "image" {
                (vlmctl_files::MAX_IMAGE_BYTES, "a plan's image")
            } else {
                (vlmctl_files::MAX_TEXT_BYTES, "a prompt file")
            };
            vlmctl_files::read_regular(&full, max, what).map_err(|source| BenchError::PlanFile {
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
            plan_sha256: plan.sha256(),
            plan,
            prompts,
            prompt_sha256,
            image,
            image_sha256,
            configs,
            path: path.to_owned(),
            target_lines,
        })
    }

    /// A plan error at `line` of this plan's file, in [`Plan::parse`]'s words (`file:line:
    /// field: ...`), for a check made after loading.
    #[must_use]
    pub fn invalid(&self, line: usize, message: String) -> BenchError {
        BenchError::PlanInvalid {
            path: self.path.clone(),
            line,
            message,
        }
    }

    /// Where target `i`'s keys are (line 1 for a target added after loading).
    #[must_use]
    pub fn lines_of(&self, i: usize) -> TargetLines {
        self.target_lines.get(i).copied().unwrap_or(TargetLines {
            table: 1,
            host: 1,
            deployment: 1,
        })
    }
}
