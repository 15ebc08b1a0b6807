//! `[model]` as intent: `model = "entry"` naming a lock entry, or a table saying where the
//! weights come from (a hub repository and its files), parsed into a [`ModelIntent`].

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::LifecycleError;

#[allow(clippy::wildcard_imports)]
use super::*;

/// `model = "name"` (an entry in the lock) or a `[model]` table (intent): the entry name and
/// the intent, if any.
pub(super) fn parse_model(
    text: &str,
    raw: &Spanned<toml::Value>,
    invalid: &dyn Fn(std::ops::Range<usize>, &str, String) -> LifecycleError,
) -> Result<(String, Option<ModelIntent>), LifecycleError> {
    let (model, model_intent) = match raw.get_ref() {
        toml::Value::String(name) => (name.clone(), None),
        toml::Value::Table(t) => {
            let span = raw.span();
            let (name, intent) = parse_intent(t).map_err(|(key, m)| {
                invalid(key_span(text, &span, &key), &format!("model.{key}"), m)
            })?;
            (name, Some(intent))
        }
        other => {
            return Err(invalid(
                raw.span(),
                "model",
                format!(
                    "{other}: expected the name of a weights.lock entry (model = \"name\") or \
                     a [model] table with repo, files, revision and name"
                ),
            ));
        }
    };
    if !is_entry_name(&model) {
        return Err(invalid(
            raw.span(),
            "model",
            format!("{model:?} is not a valid lock entry name (letters, digits, '.', '_', '-')"),
        ));
    }
    Ok((model, model_intent))
}

/// A lock entry name, as the lock accepts them.
pub(super) fn is_entry_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `[model]` as intent: the entry name (stated, else from the model file's name) and the
/// source. Errors name the key (for its line) and say what is wrong.
pub(super) fn parse_intent(t: &toml::Table) -> Result<(String, ModelIntent), (String, String)> {
    const KEYS: [&str; 5] = ["name", "repo", "revision", "files", "dir"];
    if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err((
            k.clone(),
            format!(
                "unknown key `{k}` in [model] (expected one of: {})",
                KEYS.join(", ")
            ),
        ));
    }
    parse_intent_known(t).map_err(|(k, m)| (k.to_owned(), m))
}

pub(super) fn parse_intent_known(
    t: &toml::Table,
) -> Result<(String, ModelIntent), (&'static str, String)> {
    let string = |key: &'static str| match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err((key, format!("{v}: expected a string"))),
    };
    let repo = string("repo")?.ok_or((
        "repo",
        "the hub repository is required, e.g. repo = \"unsloth/gemma-4-E2B-it-GGUF\"".to_owned(),
    ))?;
    if repo.len() > 200 {
        return Err((
            "repo",
            format!(
                "{} characters: too long for a hub repository id",
                repo.len()
            ),
        ));
    }
    if repo.split('/').count() != 2 || repo.split('/').any(|p| !is_entry_name(p)) {
        return Err((
            "repo",
            format!("{repo:?} is not a hub repository id of the form \"org/name\""),
        ));
    }
    let mut revision = string("revision")?.unwrap_or_else(|| "main".to_owned());
    // A commit is a commit in either case; the lock writes it in lowercase.
    if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        revision.make_ascii_lowercase();
    }
    // Goes into the hub's URLs: a branch or tag name as git allows them, nothing else.
    if revision.is_empty()
        || revision.len() > 255
        || revision.starts_with(['-', '/', '.'])
        || revision.ends_with('/')
        || revision.contains("..")
        || !revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return Err((
            "revision",
            format!("{revision:?} is not a branch, tag or commit name"),
        ));
    }
    let files = parse_intent_files(t.get("files"))?;
    let dir = string("dir")?;
    if let Some(d) = dir
        .as_deref()
        .filter(|d| !(d.starts_with('/') || *d == "~" || d.starts_with("~/")))
    {
        return Err((
            "dir",
            format!(
                "{d:?}: give an absolute path or one under your home (`~/...`), or leave `dir` \
                 out for the default models directory (a relative one would depend on where \
                 vlmctl runs)"
            ),
        ));
    }
    let name = match string("name")? {
        Some(n) => n,
        None => files
            .iter()
            .find(|f| f.role == FileRole::Model)
            .map(|f| default_entry_name(&f.path))
            .unwrap_or_default(),
    };
    if !is_entry_name(&name) {
        let from = if t.contains_key("name") {
            ""
        } else {
            " (made from the model file's name: set `name`)"
        };
        return Err((
            "name",
            format!(
                "{name:?} is not a valid lock entry name (letters, digits, '.', '_', '-'){from}"
            ),
        ));
    }
    Ok((
        name,
        ModelIntent {
            repo,
            revision,
            files,
            dir,
        },
    ))
}

/// `files = ["model.gguf", "mmproj-F16.gguf"]`, or tables `{ path = "...", role = "mmproj" }`:
/// relative paths, exactly one model and at most one projector.
pub(super) fn parse_intent_files(
    v: Option<&toml::Value>,
) -> Result<Vec<IntentFile>, (&'static str, String)> {
    let bad = |m: String| ("files", m);
    let Some(toml::Value::Array(items)) = v else {
        return Err(bad(
            "a list of file names is required, e.g. files = [\"gemma-4-E2B-it-Q4_K_M.gguf\", \"mmproj-F16.gguf\"]"
                .to_owned(),
        ));
    };
    let mut files: Vec<IntentFile> = Vec::new();
    for item in items {
        let (path, role) = match item {
            toml::Value::String(p) => (p.clone(), None),
            toml::Value::Table(t) => {
                if let Some(k) = t.keys().find(|k| !matches!(k.as_str(), "path" | "role")) {
                    return Err(bad(format!(
                        "unknown key `{k}` in a file (expected path, role)"
                    )));
                }
                let Some(toml::Value::String(p)) = t.get("path") else {
                    return Err(bad("a file table needs `path`".to_owned()));
                };
                let role =
                    match t.get("role") {
                        None => None,
                        Some(r) => Some(FileRole::deserialize(r.clone()).map_err(|_| {
                            bad(format!("role {r}: expected \"model\" or \"mmproj\""))
                        })?),
                    };
                (p.clone(), role)
            }
            other => {
                return Err(bad(format!(
                    "{other}: expected a file name or {{ path, role }}"
                )));
            }
        };
        if let Err(why) = check_model_path(&path) {
            return Err(bad(format!("{path:?}: {why}")));
        }
        if files.iter().any(|f| f.path == path) {
            return Err(bad(format!("{path:?} is listed twice")));
        }
        let role = role.unwrap_or_else(|| FileRole::infer(&path));
        files.push(IntentFile { path, role });
    }
    let count = |r: FileRole| files.iter().filter(|f| f.role == r).count();
    if count(FileRole::Model) != 1 || count(FileRole::Mmproj) > 1 {
        return Err(bad(format!(
            "{} model file(s) and {} projector(s): list exactly one model file and at most one \
             projector (a name containing \"mmproj\" is the projector; state `role` to say otherwise)",
            count(FileRole::Model),
            count(FileRole::Mmproj)
        )));
    }
    Ok(files)
}

/// A file inside the model directory: relative, plain components only (no `..`), as the lock
/// requires of its paths.
pub(super) fn check_model_path(p: &str) -> Result<(), &'static str> {
    let path = Path::new(p);
    if p.is_empty() || p.ends_with('/') || p.contains('\\') || p.chars().any(char::is_control) {
        return Err(
            "not a file name (empty, ending in '/', or with a backslash or a control character)",
        );
    }
    if path.is_absolute()
        || !path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err("must be a relative path without '.' or '..' (it is a path in the repository)");
    }
    // It goes into the hub's URL: `%2e%2e` is `..` to a URL parser, `?` and `#` end the path.
    if p.contains(['%', '?', '#']) {
        return Err("'%', '?' and '#' are not allowed: they would change the hub URL of the file");
    }
    Ok(())
}

/// The entry name a model file implies: its stem, lowercased, `_` as `-`.
pub(super) fn default_entry_name(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    stem.replace('_', "-")
}
