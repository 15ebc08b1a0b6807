//! The `vlmctl` command line: parses arguments, runs one command, renders its result or its
//! error (`error: ...`, causes, a blank line, `hint: ...`) and returns an exit code from
//! [`exit_codes`]. It wires the libraries together and is the only crate that prints (always
//! through [`redact`], so that no secret reaches a terminal or a log):
//! `vlmctl-weights` (lock, fetch, verify), `vlmctl-lifecycle` (Docker), `vlmctl-bench`.

mod cli;
pub mod commands;
pub mod env_vars;
pub mod exit_codes;
mod failure;
pub mod redact;
pub mod table;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;
use cli::{Command, WeightsCommand};
pub use failure::Failure;

/// Parses `args` (including the program name), runs the command and returns its exit code.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" to clap; print them where clap wants.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::SUCCESS
            });
        }
    };
    init_logging(cli.verbose);
    let mut out = Output;
    match execute(&cli, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            redact::write_line(true, &failure.render());
            ExitCode::from(failure.code)
        }
    }
}

fn execute(cli: &Cli, out: &mut Output) -> Result<u8, Failure> {
    use commands::{bench, deploy, weights};
    match &cli.command {
        Command::Provision(args) => deploy::provision(args, false, out),
        Command::Relaunch(args) => deploy::provision(
            &cli::ProvisionArgs {
                deploy: args.clone(),
                stop: Vec::new(),
                yes: false,
                dry_run: false,
            },
            true,
            out,
        ),
        Command::Gates(args) => deploy::gates_cmd(args, out),
        Command::Status(args) => deploy::status(args, out),
        Command::Teardown(args) => deploy::teardown(args, out),
        Command::Restore(args) => deploy::restore(args, out),
        Command::Export(args) => deploy::export(args, out),
        Command::Bench(args) => bench::bench(args, out),
        Command::Weights(WeightsCommand::Verify(args)) => weights::verify(args, out),
        Command::Weights(WeightsCommand::Adopt(args)) => weights::adopt(args, out),
        Command::Weights(WeightsCommand::Lock(args)) => {
            runtime()?.block_on(weights::lock(args, out))
        }
        Command::Weights(WeightsCommand::Fetch(args)) => {
            runtime()?.block_on(weights::fetch(args, out))
        }
    }
}

/// The one runtime. Current-thread on purpose: hf-hub's chunk tasks then complete in order (so
/// an interrupted download keeps its whole prefix), and request timing in `bench` is not
/// disturbed by work migrating between threads. Hashing runs on blocking threads.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(e, None, exit_codes::FAILURE))
}

/// Where command results go: results on stdout, progress on stderr.
pub struct Output;

impl Output {
    /// A result line (table, JSON).
    pub fn stdout(&mut self, text: &str) {
        redact::write_line(false, text);
    }

    /// A progress note for a person watching; never part of the result.
    pub fn progress(&mut self, text: &str) {
        redact::write_line(true, text);
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "vlmctl=debug,vlmctl_weights=debug,vlmctl_lifecycle=debug,vlmctl_bench=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_vars::VLMCTL_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // bollard logs whole request bodies at debug level (a container's config carries its
        // environment, so the API key): never below info, whatever the filter asks for. The
        // writer scrubs registered secrets as well.
        .add_directive(
            "bollard=info"
                .parse()
                .unwrap_or_else(|_| tracing_subscriber::filter::LevelFilter::INFO.into()),
        );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| redact::Stderr)
        .try_init();
}
