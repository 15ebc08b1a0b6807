//! `weights.lock`: which files each deployment's model consists of, pinned to a commit, with size
//! and sha256. Parsing validates everything and reports file, line and field for every problem.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::WeightsError;
pub use crate::digest::Sha256Digest;

/// The lock format version this vlmctl reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// A parsed, validated `weights.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsLock {
    /// Models, sorted by name.
    pub models: Vec<ModelEntry>,
}

/// One `[[model]]`: a set of files from one hub repository at one commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelEntry {
    /// What deployment specs refer to.
    pub name: String,
    /// Hugging Face repository, `org/name`.
    pub repo: String,
    /// The commit the files come from (40 hex digits, never a branch).
    pub revision: String,
    /// The branch or tag `revision` was resolved from, when it was one: what
    /// `vlmctl weights update` resolves again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracks: Option<String>,
    /// Default directory the files live in (and that is mounted into the container); `~/` is
    /// the user's home.
    pub dir: Option<String>,
    /// `Some("local")` when the sizes and sha256 were computed from files on a machine
    /// (`vlmctl weights lock --local DIR`, for a host without the hub), not read from the hub:
    /// the revision is as the user gave it (all zeros when unknown) and nothing was checked
    /// against the hub. Pinning it again from the hub (`weights lock` without `--local`, or
    /// `weights update` of the branch it tracks) replaces it with the hub's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_from: Option<String>,
    /// The files, sorted by path.
    pub files: Vec<LockedFile>,
}

/// The [`ModelEntry::pinned_from`] of an entry pinned from local files.
pub const PINNED_FROM_LOCAL: &str = "local";

/// The revision written for an entry pinned from local files whose commit is not known.
pub const UNKNOWN_REVISION: &str = "0000000000000000000000000000000000000000";

/// One `[[model.file]]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockedFile {
    /// Path inside the repository and the model directory: relative, no `..`.
    pub path: String,
    /// What llama-server does with it.
    pub role: Role,
    /// Exact size in bytes.
    pub size: u64,
    /// Expected content hash.
    pub sha256: Sha256Digest,
}

/// What a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The language model (`--model`).
    Model,
    /// The vision projector (`--mmproj`).
    Mmproj,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Model => "model",
            Self::Mmproj => "mmproj",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    version: Spanned<u32>,
    #[serde(default)]
    model: Vec<Spanned<RawModel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    repo: Spanned<String>,
    revision: Spanned<String>,
    tracks: Option<Spanned<String>>,
    dir: Option<Spanned<String>>,
    pinned_from: Option<Spanned<String>>,
    #[serde(default)]
    file: Vec<Spanned<RawFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Spanned<String>,
    role: Spanned<String>,
    size: Spanned<u64>,
    sha256: Spanned<String>,
}

impl WeightsLock {
    /// Reads and validates the lock file at `path`.
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let bytes =
            vlmctl_files::read_regular(path, vlmctl_files::MAX_TEXT_BYTES, "a weights.lock")
                .map_err(|source| WeightsError::LockRead {
                    path: path.to_owned(),
                    source,
                })?;
        // Bad bytes are bad input (exit 3), not an unreadable file.
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            WeightsError::LockInvalid {
                path: path.to_owned(),
                line: line_of(&String::from_utf8_lossy(&bytes[..at]), at),
                field: String::new(),
                message: format!(
                    "not UTF-8 text (byte 0x{:02x} at offset {at}): save the lock as UTF-8",
                    bytes.get(at).copied().unwrap_or_default()
                ),
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates lock text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, WeightsError> {
        let cx = Cx { text, path };
        let raw: RawLock = toml::from_str(text).map_err(|e| {
            cx.invalid(
                e.span().unwrap_or(0..0),
                String::new(),
                e.message().to_owned(),
            )
        })?;
        if *raw.version.get_ref() != LOCK_VERSION {
            return Err(cx.invalid(
                raw.version.span(),
                "version".into(),
                format!(
                    "lock format version {} is not supported (this vlmctl reads version {LOCK_VERSION})",
                    raw.version.get_ref()
                ),
            ));
        }
        let mut names = BTreeSet::new();
        let mut models = Vec::new();
        for (i, m) in raw.model.into_iter().enumerate() {
            let m = cx.model(i, m.into_inner())?;
            if !names.insert(m.name.clone()) {
                return Err(cx.invalid(
                    m.name_span,
                    format!("model[{i}].name"),
                    format!("duplicate model name {:?}", m.name),
                ));
            }
            models.push(m.entry);
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { models })
    }

    /// The entry called `name`.
    #[must_use]
    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Canonical text: sorted, one table per model and file, stable for diffs.
    #[must_use]
    pub fn to_toml(&self) -> String {
        // The header is part of each entry's sha256 (the `org.vlmctl.lock-sha256` label), so it
        // stays as it is: changing it would show every running deployment as drifted. The
        // format is now described in docs/weights.md, which the README links as "weights.lock".
        self.to_toml_with_header("# weights.lock: see README \"weights.lock\" for the format.\n")
    }

    /// Canonical text under `header` (comment lines, kept as they are: what a person wrote at
    /// the top of the file survives a rewrite).
    #[must_use]
    pub fn to_toml_with_header(&self, header: &str) -> String {
        let mut out = header.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = writeln!(out, "version = {LOCK_VERSION}");
        for m in &self.models {
            let _ = writeln!(out, "\n[[model]]");
            let _ = writeln!(out, "name = {}", quote(&m.name));
            let _ = writeln!(out, "repo = {}", quote(&m.repo));
            let _ = writeln!(out, "revision = {}", quote(&m.revision));
            if let Some(t) = &m.tracks {
                let _ = writeln!(out, "tracks = {}", quote(t));
            }
            if let Some(dir) = &m.dir {
                let _ = writeln!(out, "dir = {}", quote(dir));
            }
            if let Some(from) = &m.pinned_from {
                let _ = writeln!(out, "pinned_from = {}", quote(from));
            }
            for f in &m.files {
                let _ = writeln!(out, "\n[[model.file]]");
                let _ = writeln!(out, "path = {}", quote(&f.path));
                let _ = writeln!(out, "role = \"{}\"", f.role);
                let _ = writeln!(out, "size = {}", f.size);
                let _ = writeln!(out, "sha256 = \"{}\"", f.sha256);
            }
        }
        out
    }
}

/// Parsing context: the text (for line numbers) and the path (for messages).
struct Cx<'a> {
    text: &'a str,
    path: &'a Path,
}

struct ParsedModel {
    entry: ModelEntry,
    name: String,
    name_span: std::ops::Range<usize>,
}

impl Cx<'_> {
    fn invalid(
        &self,
        span: std::ops::Range<usize>,
        field: String,
        message: String,
    ) -> WeightsError {
        WeightsError::LockInvalid {
            path: self.path.to_owned(),
            line: line_of(self.text, span.start),
            field,
            message,
        }
    }

    fn model(&self, i: usize, m: RawModel) -> Result<ParsedModel, WeightsError> {
        let at = |f: &str| format!("model[{i}].{f}");
        let name = m.name.get_ref();
        if !valid_name(name) {
            return Err(self.invalid(
                m.name.span(),
                at("name"),
                format!("{name:?} is not a valid name (letters, digits, '.', '_', '-')"),
            ));
        }
        let repo = m.repo.get_ref();
        if repo.split('/').count() != 2 || repo.split('/').any(|p| !valid_name(p)) {
            return Err(self.invalid(
                m.repo.span(),
                at("repo"),
                format!("{repo:?} is not a hub repository id of the form \"org/name\""),
            ));
        }
        let rev = m.revision.get_ref();
        if rev.len() != 40
            || !rev
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(self.invalid(
                m.revision.span(),
                at("revision"),
                format!(
                    "{rev:?} is not a commit sha (40 lowercase hex digits); a lock pins commits, \
                     never branches or tags"
                ),
            ));
        }
        // `weights update` resolves the branch an entry tracks: it goes into the hub's URLs.
        if let Some(t) = &m.tracks
            && !valid_revision(t.get_ref())
        {
            return Err(self.invalid(
                t.span(),
                at("tracks"),
                format!("{:?} is not a branch or tag name", t.get_ref()),
            ));
        }
        if let Some(from) = &m.pinned_from
            && from.get_ref() != PINNED_FROM_LOCAL
        {
            return Err(self.invalid(
                from.span(),
                at("pinned_from"),
                format!(
                    "{:?} is not a pin source (the one there is: {PINNED_FROM_LOCAL:?}, for files \
                     hashed on a machine instead of read from the hub)",
                    from.get_ref()
                ),
            ));
        }
        let mut paths = BTreeSet::new();
        let mut files = Vec::new();
        for (j, f) in m.file.into_iter().enumerate() {
            let f = self.file(i, j, f.get_ref())?;
            if !paths.insert(f.path.clone()) {
                return Err(self.invalid(
                    m.name.span(),
                    format!("model[{i}].file[{j}].path"),
                    format!("duplicate file {:?}", f.path),
                ));
            }
            files.push(f);
        }
        if files.iter().filter(|f| f.role == Role::Model).count() != 1 {
            return Err(self.invalid(
                m.name.span(),
                at("file"),
                format!("model {name:?} must have exactly one file with role = \"model\""),
            ));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ParsedModel {
            name: name.clone(),
            name_span: m.name.span(),
            entry: ModelEntry {
                name: name.clone(),
                repo: repo.clone(),
                revision: rev.clone(),
                tracks: m.tracks.map(Spanned::into_inner),
                dir: m.dir.map(Spanned::into_inner),
                pinned_from: m.pinned_from.map(Spanned::into_inner),
                files,
            },
        })
    }

    fn file(&self, i: usize, j: usize, f: &RawFile) -> Result<LockedFile, WeightsError> {
        let at = |field: &str| format!("model[{i}].file[{j}].{field}");
        let p = f.path.get_ref();
        if let Err(why) = check_relative_path(p) {
            return Err(self.invalid(f.path.span(), at("path"), format!("{p:?}: {why}")));
        }
        let role = match f.role.get_ref().as_str() {
            "model" => Role::Model,
            "mmproj" => Role::Mmproj,
            other => {
                return Err(self.invalid(
                    f.role.span(),
                    at("role"),
                    format!("unknown role {other:?} (expected \"model\" or \"mmproj\")"),
                ));
            }
        };
        let sha256 = f
            .sha256
            .get_ref()
            .parse()
            .map_err(|why| self.invalid(f.sha256.span(), at("sha256"), why))?;
        Ok(LockedFile {
            path: p.clone(),
            role,
            size: *f.size.get_ref(),
            sha256,
        })
    }
}

impl ModelEntry {
    /// sha256 of this entry's canonical text: what a deployment's `org.vlmctl.lock-sha256`
    /// label records, so a changed pin shows as drift.
    #[must_use]
    pub fn sha256(&self) -> String {
        use sha2::Digest as _;
        let text = WeightsLock {
            models: vec![self.clone()],
        }
        .to_toml();
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    /// The directory holding this model's files: `override_dir`, else the lock's `dir` with `~`
    /// expanded, else `default_root/<name>`.
    #[must_use]
    pub fn resolve_dir(&self, override_dir: Option<&Path>, default_root: &Path) -> PathBuf {
        if let Some(d) = override_dir {
            return d.to_owned();
        }
        match &self.dir {
            Some(d) => expand_home(d),
            None => default_root.join(&self.name),
        }
    }
}

/// The comment lines (and blank lines) at the top of a lock's text, up to its first setting:
/// the header a rewrite keeps.
#[must_use]
pub fn leading_comments(text: &str) -> &str {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if !(t.is_empty() || t.starts_with('#')) {
            break;
        }
        end += line.len();
    }
    &text[..end]
}

/// `~` or `~/x` under `$HOME`; anything else unchanged.
#[must_use]
pub fn expand_home(p: &str) -> PathBuf {
    let home = std::env::var_os(vlmctl_base::env::HOME).map(PathBuf::from);
    match (p.strip_prefix('~'), home) {
        (Some(""), Some(h)) => h,
        (Some(rest), Some(h)) if rest.starts_with('/') => h.join(&rest[1..]),
        _ => PathBuf::from(p),
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !s.starts_with('.')
}

/// A file name inside a model directory: relative, normal components only, no `..`.
pub(crate) fn check_relative_path(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty path");
    }
    if p.contains('\\') || p.chars().any(char::is_control) {
        return Err("backslashes and control characters are not allowed");
    }
    // In a URL `%2e%2e` is `..`, `?` and `#` end the path: such a path could name another
    // repository's file (or another revision) while the lock says this one's.
    if p.contains(['%', '?', '#']) {
        return Err("'%', '?' and '#' are not allowed: they would change the hub URL of the file");
    }
    let path = Path::new(p);
    // `Path::components` drops a `.` inside a path and empty components (`a/./b`, `a//b`) and
    // the hub URL keeps them: each component between '/' is checked as written.
    if !path.is_absolute() && p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(
            "'..' and '.' components (and empty ones) are not allowed: a file must stay inside the model directory",
        );
    }
    if path.is_absolute() {
        return Err("absolute paths are not allowed: paths are relative to the model directory");
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(
            "'..' and '.' components are not allowed: a file must stay inside the model directory",
        );
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// Whether `revision` may go into a hub URL: a branch, tag or commit name as the spec's `[model]
/// revision` allows (`vlmctl_lifecycle::spec`, the same rule): letters, digits, '.', '_', '-',
/// '/', not starting with '-', '/' or '.', not ending with '/', no "..", at most 255 characters.
/// The hub client refuses anything else before a request (its `check_revision`).
#[must_use]
pub fn valid_revision(revision: &str) -> bool {
    !revision.is_empty()
        && revision.len() <= 255
        && !revision.starts_with(['-', '/', '.'])
        && !revision.ends_with('/')
        && !revision.contains("..")
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_that_is_not_utf8_is_invalid_input_with_its_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("weights.lock");
        std::fs::write(&p, b"version = 1\n# caf\xe9\n").unwrap();
        let e = WeightsLock::load(&p).unwrap_err();
        assert!(
            matches!(e, WeightsError::LockInvalid { line: 2, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    const GOOD: &str = r#"version = 1

[[model]]
name = "gemma-3-270m-q4km"
repo = "vlmctl-test/gemma-3-270m-GGUF"
revision = "0123456789abcdef0123456789abcdef01234567"
dir = "~/models/g3"

[[model.file]]
path = "gemma-3-270m-q4_k_m.gguf"
role = "model"
size = 253113024
sha256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
"#;

    fn err(text: &str) -> String {
        WeightsLock::parse(text, Path::new("weights.lock"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_lock_round_trips_through_canonical_text() {
        let lock = WeightsLock::parse(GOOD, Path::new("weights.lock")).unwrap();
        assert_eq!(lock.models[0].files[0].size, 253_113_024);
        let again = WeightsLock::parse(&lock.to_toml(), Path::new("x")).unwrap();
        assert_eq!(lock, again);
    }

    #[test]
    fn malformed_inputs_name_file_line_and_field() {
        let cases = [
            (
                GOOD.replace("size = 253113024", "size = "),
                "weights.lock:12",
            ),
            (
                GOOD.replace("a5fd3b", "a5fd3"),
                "weights.lock:13: model[0].file[0].sha256: expected 64 hex digits, found 63",
            ),
            (
                GOOD.replace("a5fd3b", "zzfd3b"),
                "model[0].file[0].sha256: not hexadecimal (found 'z')",
            ),
            (
                GOOD.replace("gemma-3-270m-q4_k_m.gguf", "/etc/passwd"),
                "weights.lock:10: model[0].file[0].path: \"/etc/passwd\": absolute paths",
            ),
            (
                GOOD.replace("gemma-3-270m-q4_k_m.gguf", "../../x.gguf"),
                "model[0].file[0].path: \"../../x.gguf\": '..'",
            ),
            (
                GOOD.replace("role = \"model\"", "role = \"vision\""),
                "weights.lock:11: model[0].file[0].role: unknown role",
            ),
            (
                GOOD.replace("0123456789abcdef0123456789abcdef01234567", "main"),
                "weights.lock:6: model[0].revision: \"main\" is not a commit sha",
            ),
            (
                GOOD.replace("dir =", "tracks = \"%2e%2e\"\ndir ="),
                "weights.lock:7: model[0].tracks: \"%2e%2e\" is not a branch or tag name",
            ),
            (
                GOOD.replace("dir =", "colour = \"red\"\ndir ="),
                "weights.lock:7",
            ),
            (format!("{GOOD}\n{}", &GOOD[12..]), "duplicate model name"),
            (
                GOOD.replace("version = 1", "version = 2"),
                "weights.lock:1: version: lock format version 2",
            ),
        ];
        for (text, want) in cases {
            let got = err(&text);
            assert!(got.contains(want), "want {want:?} in:\n{got}");
        }
        assert!(
            err("version = 1\n[[model]\n").starts_with("weights.lock:2"),
            "{}",
            err("version = 1\n[[model]\n")
        );
        let unknown = err(&GOOD.replace("dir =", "colour = \"red\"\ndir ="));
        assert!(unknown.contains("colour"), "{unknown}");
    }

    #[test]
    fn a_rewrite_keeps_the_header_and_the_tracked_branch() {
        let text = format!(
            "# pinned for panda\n#   by hand\n\n{}",
            GOOD.replace("dir =", "tracks = \"main\"\ndir =")
        );
        let lock = WeightsLock::parse(&text, Path::new("weights.lock")).unwrap();
        assert_eq!(lock.models[0].tracks.as_deref(), Some("main"));
        let again = lock.to_toml_with_header(leading_comments(&text));
        assert!(
            again.starts_with("# pinned for panda\n#   by hand\n\nversion = 1\n"),
            "{again}"
        );
        assert_eq!(
            again, text,
            "canonical text of a canonical lock is the same bytes"
        );
        assert_eq!(leading_comments("version = 1\n# x\n"), "");
    }

    #[test]
    fn relative_path_rules() {
        assert!(check_relative_path("a/b.gguf").is_ok());
        for bad in [
            "",
            "/a",
            "../a",
            "a/../b",
            "./a",
            "a\\b",
            "%2e%2e/%2e%2e/evil/repo/resolve/main/m.gguf",
            "a.gguf?x=1",
            "a#b.gguf",
            "a\nb",
            // `Path::components` drops these; the hub URL keeps them (issue #21).
            "a/./b.gguf",
            "a//b.gguf",
            "a/.",
        ] {
            assert!(check_relative_path(bad).is_err(), "{bad}");
        }
    }
}
