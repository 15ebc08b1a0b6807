//! Every environment variable vlmctl reads, declared once. clap reads them through `env =`, so
//! the precedence is always: command-line flag, then environment, then file/default.

/// Path of `weights.lock` (default: `weights.lock` in the current directory).
pub const VLMCTL_LOCK: &str = "VLMCTL_LOCK";
/// Root under which models without a `dir` in the lock are stored
/// (default: `$XDG_DATA_HOME/vlmctl/models`, else `~/.local/share/vlmctl/models`).
pub const VLMCTL_MODELS_DIR: &str = "VLMCTL_MODELS_DIR";
/// Log filter for `-v` style debug output (`tracing` syntax, e.g. `vlmctl=debug`).
pub const VLMCTL_LOG: &str = "VLMCTL_LOG";
/// XDG data directory, for the default models root.
pub const XDG_DATA_HOME: &str = "XDG_DATA_HOME";
/// Hugging Face hub endpoint (default `https://huggingface.co`), as the official client reads it.
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
/// Hugging Face access token, as the official client reads it. Never printed or logged.
pub const HF_TOKEN: &str = "HF_TOKEN";
/// Hugging Face home: the token file `$HF_HOME/token` and the cache `$HF_HOME/hub`.
pub const HF_HOME: &str = "HF_HOME";
/// Hugging Face hub cache directory (wins over `$HF_HOME/hub`).
pub const HF_HUB_CACHE: &str = "HF_HUB_CACHE";
/// Deployment spec path (default: the embedded `docker/panda-llamacpp.toml`).
pub const VLMCTL_SPEC: &str = "VLMCTL_SPEC";
/// State directory: restore journals and provision records (default:
/// `$XDG_STATE_HOME/vlmctl`, else `~/.local/state/vlmctl`).
pub const VLMCTL_STATE_DIR: &str = "VLMCTL_STATE_DIR";
/// XDG state directory, for the default state dir.
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
/// Set (to anything but `0`/`false`) like `--locked`: refuse to change `weights.lock`.
pub const VLMCTL_LOCKED: &str = "VLMCTL_LOCKED";
/// The history database (default: `<state dir>/history.sqlite`).
pub const VLMCTL_STORE: &str = "VLMCTL_STORE";
/// `vlmctl serve`'s API key, needed to listen on anything but loopback. Never printed.
pub const VLMCTL_SERVE_API_KEY: &str = "VLMCTL_SERVE_API_KEY";
/// An `ssh` config file for the SSH hosts (`ssh -F`; read by vlmctl-lifecycle), instead of
/// `~/.ssh/config`.
pub const VLMCTL_SSH_CONFIG: &str = "VLMCTL_SSH_CONFIG";
/// Set (to anything but `0`/`false`) like `--no-record`: record nothing in the history.
pub const VLMCTL_NO_RECORD: &str = "VLMCTL_NO_RECORD";

/// Every variable above, for whoever must clear or list them all: the CLI tests start the binary
/// with none of them set, so a developer's `VLMCTL_SPEC` or `HF_TOKEN` cannot leak into a test.
/// A unit test below reads this file and fails if a `pub const` is missing here.
pub const ALL: &[&str] = &[
    VLMCTL_LOCK,
    VLMCTL_MODELS_DIR,
    VLMCTL_LOG,
    XDG_DATA_HOME,
    HF_ENDPOINT,
    HF_TOKEN,
    HF_HOME,
    HF_HUB_CACHE,
    VLMCTL_SPEC,
    VLMCTL_STATE_DIR,
    XDG_STATE_HOME,
    VLMCTL_LOCKED,
    VLMCTL_STORE,
    VLMCTL_SERVE_API_KEY,
    VLMCTL_NO_RECORD,
    VLMCTL_SSH_CONFIG,
];

#[cfg(test)]
mod tests {
    use super::ALL;

    /// Reads this file's own source, so that a variable declared above but left out of [`ALL`]
    /// fails here rather than leaking into the CLI tests unnoticed.
    #[test]
    fn all_lists_every_declared_variable_once() {
        let declared: Vec<&str> = include_str!("env_vars.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub const "))
            .filter(|l| !l.starts_with("ALL:"))
            .map(|l| {
                // A declaration in another shape would otherwise be skipped unchecked.
                let (name, value) = l
                    .strip_suffix("\";")
                    .and_then(|l| l.split_once(": &str = \""))
                    .unwrap_or_else(|| panic!("`pub const {l}` is not `NAME: &str = \"NAME\";`"));
                assert_eq!(name, value, "each constant is named after its variable");
                value
            })
            .collect();
        for name in &declared {
            assert!(
                ALL.contains(name),
                "{name} is declared but missing from ALL"
            );
        }
        let mut sorted = ALL.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            ALL.len(),
            "ALL lists a variable twice: {ALL:?}"
        );
        assert_eq!(
            ALL.len(),
            declared.len(),
            "ALL lists only declared variables"
        );
    }
}
