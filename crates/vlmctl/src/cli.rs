//! The command line, as clap derive types. Validation into plans happens in the command modules
//! before any I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::env_vars;

/// Serve a vision-language model with llama.cpp on a GPU host: verified weights, safe launch
/// next to production services, honest benchmarks.
#[derive(Debug, Parser)]
#[command(name = "vlmctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Debug logs on stderr (`-vv` for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Weights: verify the files named in weights.lock.
    #[command(subcommand)]
    Weights(WeightsCommand),
}

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// Check every locked file: present, size, GGUF structure, sha256. Exit 4 if any fails.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The lock file.
    #[arg(long, env = env_vars::VLMCTL_LOCK, default_value = vlmctl_weights::LOCK_FILE)]
    pub lock: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Models to verify (names in the lock); all when none given.
    pub names: Vec<String>,
    /// Look for the files in DIR instead of the lock's `dir`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Root for models whose lock entry has no `dir`.
    #[arg(long, env = env_vars::VLMCTL_MODELS_DIR, value_name = "DIR", hide_env_values = true)]
    pub models_dir: Option<PathBuf>,
    /// Files hashed at once (default: number of cores).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub jobs: usize,
    /// Machine-readable output: one JSON object with a report per file.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}
