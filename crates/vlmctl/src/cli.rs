//! The command line, as clap derive types. Validation into plans happens in the command modules
//! before any I/O.
#![expect(
    clippy::doc_markdown,
    reason = "doc comments here are --help text, where backticks would show literally"
)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use vlmctl_base::env as env_vars;

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
    /// Provision a deployment: gates, weights, conflicts (confirmed, journalled), launch,
    /// readiness, smoke request, memory check, record, client settings.
    Provision(ProvisionArgs),
    /// Relaunch a deployment reproducibly: a no-op when the same spec is running and healthy,
    /// else recreate it. Never stops other containers.
    Relaunch(RelaunchArgs),
    /// Run every read-only gate and show one table. Changes nothing; exit 7 if any fails.
    Gates(DeployArgs),
    /// Managed containers: state, uptime, health, spec/lock drift (against --spec and the
    /// lock), and open restore journals.
    Status(StatusArgs),
    /// Stop and remove a deployment's container, then restore what was stopped for it.
    Teardown(TeardownArgs),
    /// Restore every container recorded in the restore journals (after a crash or Ctrl-C).
    Restore(RestoreArgs),
    /// Print the `docker run` line or a compose file equivalent to a spec.
    Export(ExportArgs),
    /// Print a running deployment's client settings again (NAV_VLLM_URL, NAV_VLLM_MODEL as the
    /// server lists it, the API key's variable and how it is sent), as provision printed them.
    Client(ClientArgs),
    /// API keys: `key new --file PATH` writes a new random key to a file only you can read.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Benchmark servers with a plan (latency percentiles, TTFT, tokens/s, schema pass rate);
    /// `bench compare BASE NEW` applies the runbook's rule to two runs.
    Bench(BenchArgs),
    /// Sweep the deployment's server settings: relaunch it with each variant of a tune file,
    /// benchmark it with a plan, record its memory, then put the original back exactly as it
    /// was (also on error, Ctrl-C, or `vlmctl restore` after a kill). Prints a table sorted by
    /// p50, the fastest variant that meets the plan's [slo] and the memory gate, and the spec
    /// change that adopts it.
    Tune(TuneArgs),
    /// Weights: pin, fetch, verify and adopt the files named in weights.lock.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// The benchmark service: a web UI and JSON API on 127.0.0.1 over the history (every bench
    /// run and job): deployments, runs, reports, comparisons, trends; start a bench run, a
    /// relaunch or a teardown from the browser. Stops cleanly on SIGINT, SIGTERM or SIGHUP.
    Serve(ServeArgs),
    /// The history: bench runs recorded by `vlmctl bench` (or imported from results.json
    /// files), listed, filtered and shown.
    #[command(subcommand)]
    Runs(RunsCommand),
}

/// Where the history database is.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The history database (default: <state dir>/history.sqlite).
    #[arg(long, env = env_vars::VLMCTL_STORE.name, value_name = "FILE")]
    pub store: Option<PathBuf>,
}

/// Whether and where a command records itself in the history.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Record nothing in the history (the database is not opened, nor created).
    #[arg(long, env = env_vars::VLMCTL_NO_RECORD.name, value_parser = clap::builder::FalseyValueParser::new())]
    pub no_record: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The state directory alone, for commands that take no deployment lock.
#[derive(Debug, Clone, Args)]
pub struct StateDirArgs {
    /// State directory (default: $XDG_STATE_HOME/vlmctl, else ~/.local/state/vlmctl).
    #[arg(long, env = env_vars::VLMCTL_STATE_DIR.name, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Load results.json files written by `vlmctl bench` (a directory is searched for them);
    /// a file already there (same content) is not stored twice.
    Import(RunsImportArgs),
    /// Runs, newest first: id, start (UTC), state, host, deployment, plan and each config's p50.
    List(RunsListArgs),
    /// One run: where and what it measured, and its results table.
    Show(RunsShowArgs),
}

#[derive(Debug, Args)]
pub struct RunsImportArgs {
    /// results.json files, or directories searched (recursively) for them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The host the runs measured (default: this machine's host name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Machine-readable output: one outcome per file.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub state: StateDirArgs,
}

#[derive(Debug, Args)]
pub struct RunsListArgs {
    /// Only runs that measured this deployment (container name).
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,
    /// Only runs recorded on this host, or with a target on it (a plan's `host`); with
    /// --deployment, that deployment on this host.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Only runs with this config (letter, or its description).
    #[arg(long, value_name = "CONFIG")]
    pub config: Option<String>,
    /// At most this many runs (newest first; 1 or more).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Machine-readable output: the rows as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub state: StateDirArgs,
}

#[derive(Debug, Args)]
pub struct RunsShowArgs {
    /// The run's id (`vlmctl runs list` shows them).
    pub id: i64,
    /// Machine-readable output: the run with its plan and results.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub state: StateDirArgs,
}

impl Command {
    /// The state arguments (and with them `--host`) of the commands that act on a Docker
    /// engine.
    pub fn state_args(&self) -> Option<&StateArgs> {
        match self {
            Self::Provision(a) => Some(&a.deploy.state),
            Self::Relaunch(a) => Some(&a.deploy.state),
            Self::Gates(a) => Some(&a.state),
            Self::Status(a) => Some(&a.state),
            Self::Teardown(a) => Some(&a.state),
            Self::Restore(a) => Some(&a.state),
            Self::Tune(a) => Some(&a.deploy.state),
            Self::Serve(a) => Some(&a.state),
            Self::Weights(WeightsCommand::Push(a)) => Some(&a.state),
            Self::Client(a) => Some(&a.state),
            Self::Export(_) | Self::Bench(_) | Self::Weights(_) | Self::Runs(_) | Self::Key(_) => {
                None
            }
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub compare: Option<BenchCommand>,
    /// The bench plan (see examples/nav-bench.toml).
    #[arg(long, value_name = "FILE", required = false)]
    pub plan: Option<PathBuf>,
    /// Directory for results.json, report.md and report.html (default:
    /// bench-results/<unix time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// An earlier results.json to draw in the report's p50 chart.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Find the highest open-loop rate (requests per second) at which the plan's [slo] holds,
    /// between LO and HI: steps from LO, then bisection (the plan's [sweep] table sets the
    /// rest; this overrides its range).
    #[arg(long, value_name = "LO:HI")]
    pub sweep_rate: Option<vlmctl_bench::sweep::RateRange>,
    /// The default host of the plan's targets that name none (`ssh://user@host[:port]`, a
    /// Docker context, or `local`; without it, this machine): their loopback URLs and
    /// deployments are that host's, reached through SSH forwards vlmctl opens and closes.
    #[arg(long, value_name = "NAME|ssh://user@host[:port]")]
    pub host: Option<String>,
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub state: StateDirArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Compare two results files: per-config p50 change with a bootstrap 95 % interval, schema
    /// pass rate, "investigate" (p50 change > 20 % or schema pass < 95 %) or "within noise",
    /// and the 36 Hz target band. Exit 9 if any config needs investigating.
    Compare {
        /// Baseline results.json.
        base: PathBuf,
        /// New results.json.
        new: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// The bench plan run against each variant (its first target is pointed at the
    /// deployment).
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// The tune file: [[variant]] tables (see examples/tune.toml).
    #[arg(long, value_name = "FILE")]
    pub variants: PathBuf,
    /// Memory gate in MiB (default: the tune file's max_memory_mib, else the spec's
    /// memory.max_process_mib): GPU memory on a GPU deployment, the container's memory on CPU.
    #[arg(long, value_name = "MIB")]
    pub max_memory_mib: Option<u64>,
    /// Directory for tune.json, tune.html and each variant's results.json (default: none
    /// written). Written also when a signal stops the tune, for the variants measured by then.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Requests per config for each variant, instead of the plan's `runs` (a shorter tune).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
    /// Only these variants, by name (`baseline` for the spec as it is), in the tune file's
    /// order.
    #[arg(long, value_name = "VARIANT,...", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only these of the plan's configs (the table shows the first one's p50).
    #[arg(long, value_name = "CONFIG,...", value_delimiter = ',')]
    pub configs: Vec<String>,
    #[command(flatten)]
    pub record: RecordArgs,
}

/// The deployment to act on.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Deployment spec (default: the embedded docker/panda-llamacpp.toml).
    #[arg(long, env = env_vars::VLMCTL_SPEC.name, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dirs: DirArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub pin: PinArgs,
}

/// Whether a command may write the lock.
#[derive(Debug, Clone, Args)]
pub struct PinArgs {
    /// Refuse to change weights.lock: a spec whose [model] is not pinned there (or no longer
    /// matches its entry) fails with exit 3 and the change it would have made, as `cargo
    /// --locked` does. For CI and for hosts that must serve exactly what was committed.
    #[arg(long, env = env_vars::VLMCTL_LOCKED.name, value_parser = clap::builder::FalseyValueParser::new())]
    pub locked: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A deployment spec to report on (repeatable): drift is judged against each, and one
    /// whose deployment has no container gets a "not running" row (default: the embedded
    /// docker/panda-llamacpp.toml, for drift only).
    #[arg(long = "spec", env = env_vars::VLMCTL_SPEC.name, value_name = "FILE")]
    pub specs: Vec<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dirs: DirArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Every host at once: this machine and every Docker context that is an SSH host, one
    /// table with a HOST column (a host that does not answer is a row saying why).
    #[arg(long, conflicts_with = "host")]
    pub all_hosts: bool,
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// Stop this conflicting container (repeatable). Needed for containers the spec does not
    /// list as conflicts.
    #[arg(long = "stop", value_name = "NAME")]
    pub stop: Vec<String>,
    /// Stop the conflicts the spec lists without asking (not others: those need --stop).
    #[arg(long)]
    pub yes: bool,
    /// Print the equivalent `docker run` line and change nothing (no network, no lock entry
    /// needed: an unpinned [model] is shown from the spec).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub record: RecordArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RelaunchArgs {
    #[command(flatten)]
    pub deploy: DeployArgs,
    #[command(flatten)]
    pub record: RecordArgs,
}

/// Where journals and records live.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// State directory (default: $XDG_STATE_HOME/vlmctl, else ~/.local/state/vlmctl).
    #[arg(long, env = env_vars::VLMCTL_STATE_DIR.name, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// When another vlmctl command holds the deployment (provision, relaunch, teardown,
    /// restore), wait for it to finish instead of failing at once (exit 10).
    #[arg(long)]
    pub wait: bool,
    /// The Docker engine to act on: `local`, `ssh://[user@]host[:port]`, or a Docker context's
    /// name (default: DOCKER_HOST, else the current Docker context, else this machine). A
    /// remote host is reached with your `ssh` (keys, agent, ~/.ssh/config; VLMCTL_SSH_CONFIG
    /// for another file); its journals and locks are kept under <state dir>/hosts/<address>-<hash>.
    #[arg(long, value_name = "NAME|ssh://user@host[:port]")]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Also start this container, which a teardown left stopped (`--keep-stopped`, or the
    /// spec's `restore = "never"`/"ask"); repeatable. Without it, those stay stopped.
    #[arg(long = "start", value_name = "NAME")]
    pub start: Vec<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub record: RecordArgs,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// Container name (default: the spec's name).
    pub name: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Deployment spec (default: the embedded docker/panda-llamacpp.toml).
    #[arg(long, env = env_vars::VLMCTL_SPEC.name, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Leave this stopped conflict stopped (repeatable): recorded in the journal, shown by
    /// `status`; `vlmctl restore --start NAME` brings it back later.
    #[arg(long = "keep-stopped", value_name = "NAME")]
    pub keep_stopped: Vec<String>,
    /// Restart the conflicts whose spec says `restore = "ask"` without asking.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub record: RecordArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Deployment spec (default: the embedded docker/panda-llamacpp.toml).
    #[arg(long, env = env_vars::VLMCTL_SPEC.name, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "docker-run")]
    pub format: ExportFormat,
    #[command(flatten)]
    pub dirs: DirArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `export` formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// One `docker run` command line.
    DockerRun,
    /// A docker compose file.
    Compose,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Deployment spec (default: the embedded docker/panda-llamacpp.toml).
    #[arg(long, env = env_vars::VLMCTL_SPEC.name, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dirs: DirArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new API key (32 random bytes as 64 hex digits) to FILE, created with mode 0600
    /// (never replacing a file), for a spec's `server.api_key_file`. The key is not printed.
    New(KeyNewArgs),
}

#[derive(Debug, Args)]
pub struct KeyNewArgs {
    /// The key file to create (its folder must exist).
    #[arg(long, value_name = "PATH")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// Pin files of a hub repository: resolve the revision to a commit and read each file's size
    /// and sha256 from the hub's metadata (no download); add or update the lock entry.
    Lock(LockCmdArgs),
    /// Download locked files into the model directory (resumable, with progress); a file appears
    /// under its final name only after its size, sha256 and GGUF structure matched.
    Fetch(FetchArgs),
    /// Check every locked file: present, size, GGUF structure, sha256. Exit 4 if any fails.
    Verify(VerifyArgs),
    /// Take files copied from another host (scp, USB): verify them against the lock and place
    /// them in the model directory (hard link when possible). Nothing is downloaded.
    Adopt(AdoptArgs),
    /// Resolve the branch or tag each entry tracks again (like `cargo update`) and rewrite the
    /// entries whose commit or files changed. Nothing is downloaded.
    Update(UpdateArgs),
    /// Put locked files on another host (--host) through its Docker engine, no scp: verified
    /// here, uploaded in pieces to a helper container with the host's models directory mounted
    /// (a cut-off push resumes), joined and checked there (size, sha256), named last.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Models to push (names in the lock); all when none given.
    pub names: Vec<String>,
    #[command(flatten)]
    pub dirs: DirArgs,
    /// The models directory on the host (default: the same path as here).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// An image the host has (or can pull) with a shell and sha256sum, for the helper
    /// container (default: the embedded spec's llama.cpp image).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Entries to update (names in the lock); all when none given.
    pub names: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// With --locked (VLMCTL_LOCKED): only check; exit 3 if an entry would change.
    #[command(flatten)]
    pub pin: PinArgs,
}

/// Where the hub is. The token comes only from the environment (HF_TOKEN, else the official
/// client's token file), never from the command line, so it stays out of shell history.
#[derive(Debug, Clone, Args)]
pub struct HubArgs {
    /// Hugging Face hub endpoint.
    #[arg(long, env = env_vars::HF_ENDPOINT.name, default_value = vlmctl_weights::DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Hub cache directory (default: $HF_HOME/hub, else ~/.cache/huggingface/hub).
    #[arg(long, env = env_vars::HF_HUB_CACHE.name, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LockCmdArgs {
    /// Hub repository, `org/name`.
    pub repo: String,
    /// Files in the repository to pin (a name containing "mmproj" gets role mmproj).
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Branch, tag or commit to pin (resolved to a commit).
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Entry name deployment specs use (default: the model file's stem, lowercased).
    #[arg(long)]
    pub name: Option<String>,
    /// Directory the files live in on the host (written as the entry's `dir`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<String>,
    /// Pin from the files already in DIR on this machine, without the hub (a host that has the
    /// runbook's files but no network): each file's size and sha256 are computed here and its
    /// GGUF structure checked. The entry says `pinned_from = "local"`: its revision is
    /// --revision when that is a commit (recorded as given, not checked), else unknown (all
    /// zeros, tracking --revision); nothing ties the files to the hub's. `weights lock` without
    /// --local (or `weights update`) pins it from the hub later. `dir` defaults to DIR.
    #[arg(long, value_name = "DIR")]
    pub local: Option<PathBuf>,
    /// Machine-readable output: the entry as written.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub pin: PinArgs,
}

/// Where model files live.
#[derive(Debug, Clone, Args)]
pub struct DirArgs {
    /// Use DIR instead of the lock's `dir` for the model's files.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Root for models whose lock entry has no `dir`.
    #[arg(long, env = env_vars::VLMCTL_MODELS_DIR.name, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Models to fetch (names in the lock); all when none given.
    #[arg(conflicts_with = "spec")]
    pub names: Vec<String>,
    /// Fetch the model of this deployment spec, pinning its [model] into the lock first when
    /// it is not pinned there yet.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub dirs: DirArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// Copies of locked files, matched to the lock by file name.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Only match files of this model.
    #[arg(long)]
    pub name: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dirs: DirArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// The lock file.
    #[arg(long, env = env_vars::VLMCTL_LOCK.name, default_value = vlmctl_weights::LOCK_FILE)]
    pub lock: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Models to verify (names in the lock); all when none given.
    pub names: Vec<String>,
    #[command(flatten)]
    pub dirs: DirArgs,
    /// Files hashed at once (default: number of cores).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub jobs: usize,
    /// Machine-readable output: one JSON object with a report per file.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Address to listen on. Anything but loopback needs VLMCTL_SERVE_API_KEY (at least 16
    /// characters), sent by clients as `Authorization: Bearer KEY` (a browser asks for it as
    /// the password).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: std::net::IpAddr,
    /// A deployment spec the service may relaunch and judges drift against (repeatable).
    #[arg(long = "spec", value_name = "FILE")]
    pub specs: Vec<PathBuf>,
    /// A bench plan offered for runs started from the browser (repeatable; the first is the
    /// default). Its first target is pointed at the deployment being measured.
    #[arg(long = "plan", value_name = "FILE")]
    pub plans: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub dirs: DirArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub hub: HubArgs,
}
