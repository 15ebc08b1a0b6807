//! Every environment variable vlmctl reads, declared once: its name, what it means and which
//! crate reads it. Every crate reads a variable through its declaration here (`Var` is
//! `AsRef<OsStr>`, so `std::env::var_os(env::DOCKER_CONFIG)`; clap takes `env = X.name`), and
//! the reference page's table (`docs/reference.md`, "Environment variables") is
//! [`markdown_table`] of [`ALL`], checked by a test. A second test scans every crate's sources
//! and fails on a variable read by a literal name or not declared here.
//!
//! Precedence, wherever a flag exists: the command-line flag, then the variable, then the
//! file or default.
//!
//! Not declared here because vlmctl does not choose their names: the variable a spec's
//! `server.api_key_env` or a bench plan's `api_key_env` names (read by name from the file).

use std::ffi::OsStr;
use std::fmt::Write as _;

/// Who sets a variable, which says whether the CLI tests clear it: a developer's own vlmctl or
/// hub settings must not leak into a test, while the system's and Docker's are what the tests
/// run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// vlmctl's own settings (`VLMCTL_*`).
    Vlmctl,
    /// The Hugging Face client's conventions, read as the official client reads them.
    HuggingFace,
    /// The XDG base directories.
    Xdg,
    /// The docker CLI's conventions, read as the docker CLI reads them.
    Docker,
    /// The system's (`HOME`, `PATH`).
    System,
}

/// One environment variable vlmctl reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The variable's name.
    pub name: &'static str,
    /// Which crates read it (the reference table's "read by" column).
    pub read_by: &'static str,
    /// What it means, as the reference table says it (Markdown).
    pub meaning: &'static str,
    /// Who sets it.
    pub origin: Origin,
}

impl Var {
    /// Whether the CLI tests start the binary without it (every setting of vlmctl's own, the
    /// hub's and XDG's; not the system's or Docker's).
    #[must_use]
    pub fn cleared_in_tests(&self) -> bool {
        !matches!(self.origin, Origin::Docker | Origin::System)
    }
}

impl AsRef<OsStr> for Var {
    fn as_ref(&self) -> &OsStr {
        OsStr::new(self.name)
    }
}

impl AsRef<str> for Var {
    fn as_ref(&self) -> &str {
        self.name
    }
}

impl std::fmt::Display for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

const CLI: &str = "vlmctl";

/// Path of `weights.lock`.
pub const VLMCTL_LOCK: Var = Var {
    name: "VLMCTL_LOCK",
    read_by: CLI,
    meaning: "path of `weights.lock` (default `./weights.lock`); `--lock` wins",
    origin: Origin::Vlmctl,
};
/// Root under which models without a `dir` in the lock are stored.
pub const VLMCTL_MODELS_DIR: Var = Var {
    name: "VLMCTL_MODELS_DIR",
    read_by: CLI,
    meaning: "root for models whose lock entry has no `dir` (default `$XDG_DATA_HOME/vlmctl/models`, else `~/.local/share/vlmctl/models`); `--models-dir` wins",
    origin: Origin::Vlmctl,
};
/// Log filter for debug output.
pub const VLMCTL_LOG: Var = Var {
    name: "VLMCTL_LOG",
    read_by: CLI,
    meaning: "log filter (`tracing` syntax, e.g. `vlmctl=debug`), overrides `-v`",
    origin: Origin::Vlmctl,
};
/// XDG data directory, for the default models root.
pub const XDG_DATA_HOME: Var = Var {
    name: "XDG_DATA_HOME",
    read_by: CLI,
    meaning: "default models root `$XDG_DATA_HOME/vlmctl/models`",
    origin: Origin::Xdg,
};
/// Hugging Face hub endpoint.
pub const HF_ENDPOINT: Var = Var {
    name: "HF_ENDPOINT",
    read_by: CLI,
    meaning: "hub endpoint (default `https://huggingface.co`); `--endpoint` wins",
    origin: Origin::HuggingFace,
};
/// Hugging Face access token. Never printed or logged.
pub const HF_TOKEN: Var = Var {
    name: "HF_TOKEN",
    read_by: CLI,
    meaning: "hub token; else the official client's token file `$HF_HOME/token`. Never printed or logged, and there is deliberately no flag for it",
    origin: Origin::HuggingFace,
};
/// Hugging Face home: the token file and the cache.
pub const HF_HOME: Var = Var {
    name: "HF_HOME",
    read_by: CLI,
    meaning: "official client's home: token file, and cache `$HF_HOME/hub`",
    origin: Origin::HuggingFace,
};
/// Hugging Face hub cache directory.
pub const HF_HUB_CACHE: Var = Var {
    name: "HF_HUB_CACHE",
    read_by: CLI,
    meaning: "hub cache directory (wins over `$HF_HOME/hub`); `--cache-dir` wins",
    origin: Origin::HuggingFace,
};
/// Deployment spec path.
pub const VLMCTL_SPEC: Var = Var {
    name: "VLMCTL_SPEC",
    read_by: CLI,
    meaning: "deployment spec (default: the embedded `docker/panda-llamacpp.toml`); `--spec` wins",
    origin: Origin::Vlmctl,
};
/// Set like `--locked`: refuse to change `weights.lock`.
pub const VLMCTL_LOCKED: Var = Var {
    name: "VLMCTL_LOCKED",
    read_by: CLI,
    meaning: "like `--locked`: refuse to change `weights.lock` (`0`, `false`, `no`, `off` or empty mean off)",
    origin: Origin::Vlmctl,
};
/// State directory: journals, records, the history.
pub const VLMCTL_STATE_DIR: Var = Var {
    name: "VLMCTL_STATE_DIR",
    read_by: CLI,
    meaning: "journals, records and the history (default `$XDG_STATE_HOME/vlmctl`, else `~/.local/state/vlmctl`); `--state-dir` wins",
    origin: Origin::Vlmctl,
};
/// XDG state directory, for the default state dir.
pub const XDG_STATE_HOME: Var = Var {
    name: "XDG_STATE_HOME",
    read_by: CLI,
    meaning: "default state directory `$XDG_STATE_HOME/vlmctl`",
    origin: Origin::Xdg,
};
/// The history database.
pub const VLMCTL_STORE: Var = Var {
    name: "VLMCTL_STORE",
    read_by: CLI,
    meaning: "the history database (default `<state dir>/history.sqlite`); `--store` wins",
    origin: Origin::Vlmctl,
};
/// Set like `--no-record`: record nothing in the history.
pub const VLMCTL_NO_RECORD: Var = Var {
    name: "VLMCTL_NO_RECORD",
    read_by: CLI,
    meaning: "like `--no-record`: record nothing in the history (`0`, `false`, `no`, `off` or empty mean off)",
    origin: Origin::Vlmctl,
};
/// `vlmctl serve`'s API key. Never printed.
pub const VLMCTL_SERVE_API_KEY: Var = Var {
    name: "VLMCTL_SERVE_API_KEY",
    read_by: CLI,
    meaning: "`vlmctl serve`'s API key, required to `--bind` anything but loopback (16 characters or more); never printed",
    origin: Origin::Vlmctl,
};
/// An `ssh` config file for the SSH hosts.
pub const VLMCTL_SSH_CONFIG: Var = Var {
    name: "VLMCTL_SSH_CONFIG",
    read_by: "vlmctl-lifecycle",
    meaning: "an `ssh` config file for the SSH hosts (`ssh -F`), instead of `~/.ssh/config`",
    origin: Origin::Vlmctl,
};
/// The Docker daemon, as the docker CLI reads it.
pub const DOCKER_HOST: Var = Var {
    name: "DOCKER_HOST",
    read_by: "vlmctl-lifecycle",
    meaning: "the Docker daemon, as the docker CLI reads it (default the local socket); `--host` wins",
    origin: Origin::Docker,
};
/// The docker CLI's current context.
pub const DOCKER_CONTEXT: Var = Var {
    name: "DOCKER_CONTEXT",
    read_by: "vlmctl-lifecycle",
    meaning: "the docker CLI's current context, used when neither `--host` nor `DOCKER_HOST` is given (else `currentContext` in `config.json`)",
    origin: Origin::Docker,
};
/// The docker CLI's configuration folder.
pub const DOCKER_CONFIG: Var = Var {
    name: "DOCKER_CONFIG",
    read_by: "vlmctl-lifecycle",
    meaning: "the docker CLI's configuration folder, where contexts are looked up (default `~/.docker`)",
    origin: Origin::Docker,
};
/// The user's home, for `~` in paths.
pub const HOME: Var = Var {
    name: "HOME",
    read_by: "vlmctl-weights, vlmctl-lifecycle",
    meaning: "`~` in paths (lock `dir`, a spec's `server.api_key_file`, defaults), and the default `~/.docker`",
    origin: Origin::System,
};
/// The search path, for `nvidia-smi`.
pub const PATH: Var = Var {
    name: "PATH",
    read_by: "vlmctl-deploy",
    meaning: "where the GPU gate looks for `nvidia-smi` on this machine (under `--host` it runs in a container on that host)",
    origin: Origin::System,
};

/// Every variable above, in the reference table's order. A test fails if a declared variable
/// is missing here.
pub const ALL: &[Var] = &[
    VLMCTL_LOCK,
    VLMCTL_MODELS_DIR,
    VLMCTL_LOG,
    XDG_DATA_HOME,
    HF_ENDPOINT,
    HF_TOKEN,
    HF_HOME,
    HF_HUB_CACHE,
    VLMCTL_SPEC,
    VLMCTL_LOCKED,
    VLMCTL_STATE_DIR,
    XDG_STATE_HOME,
    VLMCTL_STORE,
    VLMCTL_NO_RECORD,
    VLMCTL_SERVE_API_KEY,
    VLMCTL_SSH_CONFIG,
    DOCKER_HOST,
    DOCKER_CONTEXT,
    DOCKER_CONFIG,
    HOME,
    PATH,
];

/// The variables the CLI tests start the binary without ([`Var::cleared_in_tests`]).
pub fn cleared_in_tests() -> impl Iterator<Item = &'static Var> {
    ALL.iter().filter(|v| v.cleared_in_tests())
}

/// The reference page's table of [`ALL`]: `| variable | read by | used for |`, one row each.
#[must_use]
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | read by | used for |\n|---|---|---|\n");
    for v in ALL {
        let _ = writeln!(out, "| `{}` | {} | {} |", v.name, v.read_by, v.meaning);
    }
    out
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
