//! `vlmctl status`: the managed containers (endpoint, model, health, drift), a "not running"
//! row for each `--spec` whose deployment has no container, every restore journal and every
//! tune journal.

use std::fmt::Write as _;

use vlmctl_deploy::DeploymentPlan;
use vlmctl_deploy::status::{self, JournalState, TuneState};

use crate::cli::StatusArgs;
use crate::failure::Failure;
use crate::{Output, exit_codes, render};

/// The table's columns, one row per managed container.
const COLUMNS: [&str; 8] = [
    "NAME",
    "STATE",
    "STATUS",
    "URL",
    "MODEL",
    "HEALTH",
    "DOCKER HEALTH",
    "DRIFT",
];

fn row(r: &status::StatusRow) -> [String; 8] {
    let m = &r.container;
    [
        m.name.clone(),
        m.state.clone(),
        m.status.clone(),
        r.url.clone().unwrap_or_else(|| "-".to_owned()),
        m.model.clone().unwrap_or_else(|| "-".to_owned()),
        r.health.clone(),
        m.docker_health.clone().unwrap_or_else(|| "-".to_owned()),
        r.drift.to_string(),
    ]
}

/// The row of a deployment asked about (`--spec`) that has no container.
fn missing_row(name: &str) -> [String; 8] {
    [
        name.to_owned(),
        "absent".to_owned(),
        "not running (no container)".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
    ]
}

/// The plans of the specs given (each must load: one asked about by name is not skipped in
/// silence), else the embedded default's, for drift only (when it loads).
fn plans(args: &StatusArgs) -> Result<(Vec<DeploymentPlan>, bool), Failure> {
    if args.specs.is_empty() {
        let default = super::plan(None, &args.lock.lock, &args.dirs).ok();
        return Ok((default.into_iter().collect(), false));
    }
    let plans = args
        .specs
        .iter()
        .map(|s| super::plan(Some(s), &args.lock.lock, &args.dirs))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plans, true))
}

/// The lines under the table: open and unreadable restore journals, unfinished launches, tune
/// journals (running, interrupted, unreadable), each with what to do. `host`: `--host NAME`
/// for the commands shown, when not this machine.
fn notes(s: &status::Status, host: Option<&str>) -> String {
    let on = host
        .map(|h| format!(" --host {}", vlmctl_lifecycle::remote::sh_word(h)))
        .unwrap_or_default();
    let at = host.map(|h| format!("{h}: ")).unwrap_or_default();
    let mut text = String::new();
    for j in &s.journals {
        match j {
            JournalState::Unreadable { path, error } => {
                let _ = write!(
                    text,
                    "\n{at}UNREADABLE restore journal {}: {error} (it may name stopped containers: check `docker ps -a`, start them, then move the file aside)",
                    path.display()
                );
            }
            JournalState::Open { path, journal } => {
                let names: Vec<&str> = journal
                    .entries
                    .iter()
                    .filter(|e| !e.left_stopped)
                    .map(|e| e.name.as_str())
                    .collect();
                for e in journal.entries.iter().filter(|e| e.left_stopped) {
                    let _ = write!(
                        text,
                        "\n{at}left stopped at teardown: {} (journal {}; `vlmctl restore{on} --start {}` brings it back)",
                        e.name,
                        path.display(),
                        e.name
                    );
                }
                for f in &journal.failed_checks {
                    let _ = write!(
                        text,
                        "\n{at}NOT ALIVE after restore: {}: {} (journal {}; fix it, then `vlmctl restore{on}` checks it again)",
                        f.target.name,
                        f.why,
                        path.display()
                    );
                }
                if !names.is_empty() {
                    let _ = write!(
                        text,
                        "\n{at}open restore journal {}: stopped {} (`vlmctl teardown{on}` or `vlmctl restore{on}` brings them back)",
                        path.display(),
                        names.join(", ")
                    );
                }
                if let Some(l) = journal.launch.as_ref().filter(|l| !l.completed) {
                    let _ = write!(
                        text,
                        "\n{at}unfinished launch of {} in {} (a run died before it finished: `vlmctl restore{on}` removes it)",
                        l.container,
                        path.display()
                    );
                }
            }
        }
    }
    for t in &s.tunes {
        let hint = t
            .hint()
            .replace("`vlmctl restore`", &format!("`vlmctl restore{on}`"));
        let _ = match t {
            TuneState::Running {
                deployment,
                path,
                holder,
                ..
            } => write!(
                text,
                "\n{at}tune of {deployment} running ({holder}), journal {}: {hint}",
                path.display()
            ),
            TuneState::Interrupted {
                deployment, path, ..
            } => write!(
                text,
                "\n{at}INTERRUPTED tune of {deployment}, journal {}: {hint}",
                path.display()
            ),
            TuneState::Unreadable { path, error, .. } => write!(
                text,
                "\n{at}UNREADABLE tune journal {}: {error}: {hint}",
                path.display()
            ),
        };
    }
    text
}

/// `vlmctl status --all-hosts`: this machine and every SSH context, one table.
async fn all_hosts(
    args: &StatusArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    use vlmctl_lifecycle::hosts::{self, Host};
    let (plans, _) = plans(args)?;
    let mut all = vec![Host::Local];
    for c in hosts::contexts(&hosts::docker_config_dir()) {
        if let Ok(h @ Host::Ssh { .. }) = hosts::resolve(Some(&c.name), &hosts::docker_config_dir())
        {
            all.push(h);
        }
    }
    let mut rows: Vec<[String; 9]> = Vec::new();
    let mut doc = Vec::new();
    let mut notes = String::new();
    let mut unreachable = 0;
    // All at once (a host that does not answer costs its own ssh timeout, not the others'),
    // shown in the order above.
    let answers = status::status_all(engine, &all, &plans).await;
    for (h, answer) in all.iter().zip(answers) {
        match answer {
            Ok(s) => {
                for r in &s.containers {
                    let cells = row(r);
                    rows.push(std::array::from_fn(|i| {
                        if i == 0 {
                            h.name().to_owned()
                        } else {
                            cells[i - 1].clone()
                        }
                    }));
                }
                for name in &s.missing {
                    let cells = missing_row(name);
                    rows.push(std::array::from_fn(|i| {
                        if i == 0 {
                            h.name().to_owned()
                        } else {
                            cells[i - 1].clone()
                        }
                    }));
                }
                if s.containers.is_empty() && s.missing.is_empty() {
                    rows.push(std::array::from_fn(|i| match i {
                        0 => h.name().to_owned(),
                        1 => "-".to_owned(),
                        2 => "no containers created by vlmctl".to_owned(),
                        _ => String::new(),
                    }));
                }
                notes.push_str(&self::notes(&s, Some(h.name())));
                doc.push(serde_json::json!({ "host": h.name(), "status": s }));
            }
            Err(e) => {
                unreachable += 1;
                let why = vlmctl_base::chain::one_line(&e);
                rows.push(std::array::from_fn(|i| match i {
                    0 => h.name().to_owned(),
                    1 => "-".to_owned(),
                    2 => format!("unreachable: {why}"),
                    _ => String::new(),
                }));
                doc.push(serde_json::json!({ "host": h.name(), "error": why }));
            }
        }
    }
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        let header: [&str; 9] =
            std::array::from_fn(|i| if i == 0 { "HOST" } else { COLUMNS[i - 1] });
        out.stdout(&format!("{}{notes}", render::table(&header, &rows)));
    }
    // Every host that answered is shown; one that did not makes the whole answer incomplete.
    Ok(if unreachable > 0 {
        exit_codes::ENVIRONMENT
    } else {
        exit_codes::SUCCESS
    })
}

/// `vlmctl status`.
pub async fn status(
    args: &StatusArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    if args.all_hosts {
        return all_hosts(args, engine, out).await;
    }
    // Drift is judged against the specs and lock given (or the defaults, when they load).
    let (plans, _) = plans(args)?;
    let s = status::status_of(engine, &plans).await?;
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(exit_codes::SUCCESS);
    }
    let mut rows: Vec<[String; 8]> = s.containers.iter().map(row).collect();
    rows.extend(s.missing.iter().map(|n| missing_row(n)));
    let mut text = if rows.is_empty() {
        "no containers created by vlmctl".to_owned()
    } else {
        render::table(&COLUMNS, &rows)
    };
    let host = match engine.host() {
        vlmctl_lifecycle::hosts::Host::Local => None,
        h @ vlmctl_lifecycle::hosts::Host::Ssh { .. } => Some(h.name()),
    };
    text.push_str(&notes(&s, host));
    out.stdout(&text);
    Ok(exit_codes::SUCCESS)
}
