//! `vlmctl status`: the managed containers, their health and drift, and every restore journal.

use std::fmt::Write as _;

use vlmctl_deploy::status::{self, JournalState};

use crate::cli::StatusArgs;
use crate::failure::Failure;
use crate::{Output, exit_codes, render};

/// The table's columns, one row per managed container.
const COLUMNS: [&str; 6] = [
    "NAME",
    "STATE",
    "STATUS",
    "HEALTH",
    "DOCKER HEALTH",
    "DRIFT",
];

fn row(r: &status::StatusRow) -> [String; 6] {
    let m = &r.container;
    [
        m.name.clone(),
        m.state.clone(),
        m.status.clone(),
        r.health.clone(),
        m.docker_health.clone().unwrap_or_else(|| "-".to_owned()),
        r.drift.to_string(),
    ]
}

/// `vlmctl status --all-hosts`: this machine and every SSH context, one table.
async fn all_hosts(args: &StatusArgs, out: &mut Output) -> Result<u8, Failure> {
    use vlmctl_lifecycle::hosts::{self, Host};
    let args = &args.deploy;
    let plan = super::plan(args.spec.as_deref(), &args.lock.lock, &args.dirs).ok();
    let base = super::base_state_dir(&args.state);
    let mut all = vec![Host::Local];
    for c in hosts::contexts(&hosts::docker_config_dir()) {
        if let Ok(h @ Host::Ssh { .. }) = hosts::resolve(Some(&c.name), &hosts::docker_config_dir())
        {
            all.push(h);
        }
    }
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut doc = Vec::new();
    let mut notes = String::new();
    let mut unreachable = 0;
    // All at once (a host that does not answer costs its own ssh timeout, not the others'),
    // shown in the order above.
    let answers = status::status_all(&all, plan.as_ref(), &base).await;
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
                if s.containers.is_empty() {
                    rows.push([
                        h.name().to_owned(),
                        "-".to_owned(),
                        "no containers created by vlmctl".to_owned(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ]);
                }
                for j in &s.journals {
                    if let JournalState::Open { path, journal } = j
                        && !journal.entries.is_empty()
                    {
                        let names: Vec<&str> =
                            journal.entries.iter().map(|e| e.name.as_str()).collect();
                        let _ = write!(
                            notes,
                            "\n{}: open restore journal {}: stopped {} (`vlmctl restore --host {}`)",
                            h.name(),
                            path.display(),
                            names.join(", "),
                            vlmctl_lifecycle::remote::sh_word(h.name())
                        );
                    }
                }
                doc.push(serde_json::json!({ "host": h.name(), "status": s }));
            }
            Err(e) => {
                unreachable += 1;
                let why = vlmctl_lifecycle::error_chain(&e);
                rows.push([
                    h.name().to_owned(),
                    "-".to_owned(),
                    format!("unreachable: {why}"),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                doc.push(serde_json::json!({ "host": h.name(), "error": why }));
            }
        }
    }
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        let header: [&str; 7] =
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
pub async fn status(args: &StatusArgs, out: &mut Output) -> Result<u8, Failure> {
    if args.all_hosts {
        return all_hosts(args, out).await;
    }
    let args = &args.deploy;
    // Drift is judged against the spec and lock given (or the defaults), when they load.
    let plan = super::plan(args.spec.as_deref(), &args.lock.lock, &args.dirs).ok();
    let state = super::state_dir(&args.state);
    let s = status::status(plan.as_ref(), &state).await?;
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(exit_codes::SUCCESS);
    }
    let rows: Vec<[String; 6]> = s.containers.iter().map(row).collect();
    let mut text = if rows.is_empty() {
        "no containers created by vlmctl".to_owned()
    } else {
        render::table(&COLUMNS, &rows)
    };
    for j in &s.journals {
        match j {
            JournalState::Unreadable { path, error } => {
                let _ = write!(
                    text,
                    "\nUNREADABLE restore journal {}: {error} (it may name stopped containers: check `docker ps -a`, start them, then move the file aside)",
                    path.display()
                );
            }
            JournalState::Open { path, journal } => {
                let names: Vec<&str> = journal.entries.iter().map(|e| e.name.as_str()).collect();
                if !names.is_empty() {
                    let _ = write!(
                        text,
                        "\nopen restore journal {}: stopped {} (`vlmctl teardown` or `vlmctl restore` brings them back)",
                        path.display(),
                        names.join(", ")
                    );
                }
                if let Some(l) = journal.launch.as_ref().filter(|l| !l.completed) {
                    let _ = write!(
                        text,
                        "\nunfinished launch of {} in {} (a run died before it finished: `vlmctl restore` removes it)",
                        l.container,
                        path.display()
                    );
                }
            }
        }
    }
    out.stdout(&text);
    Ok(exit_codes::SUCCESS)
}
