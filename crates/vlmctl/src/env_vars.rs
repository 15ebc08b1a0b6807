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
