//! The `vlmctl` command line: parses arguments, runs one command, renders its result or its
//! error (`error: ...`, causes, a blank line, `hint: ...`) and returns an exit code from
//! [`exit_codes`]. It wires the libraries together and is the only crate that prints (always
//! through [`redact`], so that no secret reaches a terminal or a log). The jobs are
//! `vlmctl-deploy`'s; this crate renders their events and results: [`commands`] (one module per
//! command family), [`render`] (tables, sizes, bars), [`output::Output`], [`Failure`] (error to
//! exit code, in one place).

mod cli;
pub mod commands;
/// Every environment variable vlmctl reads, declared once (in `vlmctl-base`).
pub use vlmctl_base::env as env_vars;
pub mod exit_codes;
mod failure;
mod history;
pub mod output;
pub mod redact;
pub mod render;
mod signals;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;
use cli::{Command, RunsCommand, WeightsCommand};
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
    let rt = runtime()?;
    // What this command holds open to other hosts (SSH forwards, helper containers), and what
    // happens to it: a forward that ended and was opened again is an event (`Event::Link`),
    // said on stderr as the command's other events are.
    let (sessions, mut notices) = vlmctl_lifecycle::hosts::Sessions::with_notices();
    let say = |notice| Output.event(&vlmctl_deploy::events::Event::Link { notice });
    let code = rt.block_on(async {
        let job = execute_async(cli, &sessions, out);
        tokio::pin!(job);
        loop {
            tokio::select! {
                code = &mut job => break code,
                Some(n) = notices.recv() => say(n),
            }
        }
    });
    // Helper containers a cancelled job left on another host, removed while its forward is
    // still open (bounded: a host that went away is not waited for); then the SSH forwards
    // end and their folders go.
    rt.block_on(sessions.close());
    while let Ok(n) = notices.try_recv() {
        say(n);
    }
    // A job cancelled while a blocking task runs (hashing a large file, waiting for a lock)
    // must not keep the process alive: those threads end with it.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

async fn execute_async(
    cli: &Cli,
    sessions: &vlmctl_lifecycle::hosts::Sessions,
    out: &mut Output,
) -> Result<u8, Failure> {
    use commands::{
        bench, client, export, gates, provision, restore, runs, serve, status, teardown, tune,
        weights,
    };
    // The engine every job of this command changes: `--host`, else `DOCKER_HOST`, else the
    // current Docker context, else this machine's.
    let engine = match cli.command.state_args() {
        Some(state) => commands::engine(state, sessions)?,
        None => vlmctl_lifecycle::Engine::new(
            vlmctl_lifecycle::hosts::Host::Local,
            &commands::default_state_dir(),
            sessions.clone(),
        ),
    };
    let engine = &engine;
    match &cli.command {
        Command::Provision(args) => provision::provision(args, false, engine, out).await,
        Command::Relaunch(args) => {
            provision::provision(
                &cli::ProvisionArgs {
                    deploy: args.deploy.clone(),
                    stop: Vec::new(),
                    yes: false,
                    dry_run: false,
                    record: args.record.clone(),
                },
                true,
                engine,
                out,
            )
            .await
        }
        Command::Gates(args) => gates::gates(args, engine, out).await,
        Command::Status(args) => status::status(args, engine, out).await,
        Command::Teardown(args) => teardown::teardown(args, engine, out).await,
        Command::Restore(args) => restore::restore(args, engine, out).await,
        Command::Export(args) => export::export(args, engine, out).await,
        Command::Client(args) => client::client(args, engine, out).await,
        Command::Key(cli::KeyCommand::New(args)) => client::key_new(args, out),
        Command::Weights(WeightsCommand::Verify(args)) => weights::verify(args, out),
        Command::Weights(WeightsCommand::Adopt(args)) => weights::adopt(args, out),
        Command::Weights(WeightsCommand::Lock(args)) => weights::lock(args, out).await,
        Command::Weights(WeightsCommand::Fetch(args)) => weights::fetch(args, out).await,
        Command::Weights(WeightsCommand::Update(args)) => weights::update(args, out).await,
        Command::Weights(WeightsCommand::Push(args)) => weights::push(args, engine, out).await,
        Command::Bench(args) => bench::bench(args, sessions, out).await,
        Command::Tune(args) => Box::pin(tune::tune(args, engine, out)).await,
        Command::Serve(args) => serve::serve(args, engine, out).await,
        Command::Runs(RunsCommand::Import(args)) => runs::import(args, out),
        Command::Runs(RunsCommand::List(args)) => runs::list(args, out),
        Command::Runs(RunsCommand::Show(args)) => runs::show(args, out),
    }
}

/// The one runtime. Current-thread on purpose: hf-hub's chunk tasks then complete in order (so
/// an interrupted download keeps its whole prefix), and request timing in `bench` is not
/// disturbed by work migrating between threads. So nothing that can take long may run on it:
/// hashing runs on blocking threads, and so does everything `vlmctl serve` draws or computes
/// for a page (`vlmctl_serve::App::cpu`), so that this thread always answers the other
/// requests and the signals. Blocking threads are not waited for at the end
/// (`shutdown_timeout` in [`execute`]): a page that never finishes drawing does not keep the
/// process alive after a SIGTERM.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(e, None, exit_codes::FAILURE))
}

pub use output::Output;

fn init_logging(verbose: u8) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = match verbose {
        0 => "warn",
        1 => {
            "vlmctl=debug,vlmctl_weights=debug,vlmctl_lifecycle=debug,vlmctl_bench=debug,vlmctl_deploy=debug"
        }
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_vars::VLMCTL_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // bollard logs whole request bodies at debug level (a container's config carries its
    // environment, so the API key). A directive cannot keep them out (a more specific one the
    // user writes, `bollard::docker=trace`, wins over it), so a second filter on the target
    // does, whatever VLMCTL_LOG says. The writer scrubs registered secrets as well.
    let no_bodies = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("bollard") && *meta.level() > tracing::Level::INFO)
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| redact::Stderr)
        .with_filter(filter)
        .with_filter(no_bodies);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
