//! The pure decisions of a provision (which conflicts it may stop, which failed gates stop
//! it), its run id, and what a run's journal still lists for a message: no Docker, no I/O but
//! reading the journal, so the rules are unit-tested here.

use std::path::Path;

use vlmctl_lifecycle::containers::ConflictInfo;
use vlmctl_lifecycle::gates::{GateReport, GateResult, GateStatus};
use vlmctl_lifecycle::journal;

use crate::DeployError;
use crate::events::Cancel;

/// Pure: which conflicts may be stopped. Named in the spec: with `yes` or when `confirm` says
/// so. Not named (found holding GPU memory): only when the user named it (`--stop NAME`).
pub fn choose_conflicts<'a>(
    conflicts: &'a [ConflictInfo],
    stop: &[String],
    yes: bool,
    confirm: &mut dyn FnMut(&ConflictInfo) -> bool,
) -> Vec<&'a ConflictInfo> {
    conflicts
        .iter()
        .filter(|c| stop.contains(&c.name) || (c.named_in_spec && (yes || confirm(c))))
        .collect()
}

/// Pure: the gates that stop a provision. A GPU memory gate does not, when stopping a confirmed
/// conflict may be what frees the memory (it is checked after launch).
#[must_use]
pub fn blocking_gates(report: &GateReport, relaunch: bool) -> Vec<&GateResult> {
    report
        .results
        .iter()
        .filter(|r| r.status == GateStatus::Fail)
        .filter(|r| !(r.name == "gpu" && !report.conflicts.is_empty() && !relaunch))
        .collect()
}

/// Pure: the journal entries of the conflicts a run stops, with what proves each alive once
/// back and whether a teardown restarts it (the spec's `[[conflict]]`, recorded now so that a
/// restore needs no spec).
pub(crate) fn journal_entries(
    spec: &vlmctl_lifecycle::spec::Spec,
    to_stop: &[ConflictInfo],
    run_id: &str,
) -> Vec<journal::JournalEntry> {
    to_stop
        .iter()
        .map(|c| {
            let rule = spec.conflict_rule(&c.name);
            journal::JournalEntry {
                id: c.id.clone(),
                name: c.name.clone(),
                prior_state: journal::PriorState::Running,
                restart_policy: c.restart_policy.clone(),
                run_id: run_id.to_owned(),
                stop_timeout_s: c.stop_timeout_s,
                stop_issued_unix: None,
                check: rule.check,
                check_timeout_s: rule.check_timeout_s,
                restore: rule.restore,
                left_stopped: false,
            }
        })
        .collect()
}

/// An id for this run: on the container it creates (label) and on the journal entries it
/// writes, so that undoing a failed run touches only what that run did.
pub(crate) fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

/// The job's error when `cancel` was set (Ctrl-C, SIGTERM), else nothing.
pub(crate) fn cancelled(cancel: &Cancel) -> Result<(), DeployError> {
    match cancel.reason() {
        Some(why) => Err(DeployError::Interrupted { why }),
        None => Ok(()),
    }
}

/// A run that failed once a stop was asked for (Ctrl-C, SIGTERM) ends as interrupted (exit
/// 130), with what failed meanwhile in the reason: the signal may have reached what the run was
/// waiting on first (a Ctrl-C goes to the terminal's whole process group; an `ssh` being
/// started is in it until it moves to a group of its own), so its failure is the signal's
/// doing, not a broken host.
pub(crate) fn interrupted_if_cancelled(e: DeployError, cancel: &Cancel) -> DeployError {
    match (cancel.reason(), e) {
        (Some(_), e @ DeployError::Interrupted { .. }) | (None, e) => e,
        (Some(why), e) => DeployError::Interrupted {
            why: format!("{why}; meanwhile: {e}"),
        },
    }
}

/// What this run's journal still lists: the containers still stopped and a container still to
/// remove, for a message.
pub(crate) fn still_to_undo(jpath: &Path, run_id: &str) -> Vec<String> {
    let Ok(Some(j)) = journal::read(jpath) else {
        return Vec::new();
    };
    let mut left: Vec<String> = j
        .entries
        .iter()
        .filter(|e| e.run_id == run_id)
        .map(|e| format!("{} (stopped)", e.name))
        .collect();
    if let Some(l) = j.launch.filter(|l| l.run_id == run_id && !l.completed) {
        left.push(format!("{} (half-started, to remove)", l.container));
    }
    left
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_failure_after_a_signal_is_the_interruption_saying_what_failed() {
        let failed = || DeployError::SmokeFailed {
            url: "http://127.0.0.1:1".into(),
            why: "ssh ended (signal: 2 (SIGINT))".into(),
        };
        let cancel = Cancel::new();
        assert!(matches!(
            interrupted_if_cancelled(failed(), &cancel),
            DeployError::SmokeFailed { .. }
        ));
        cancel.cancel("Ctrl-C (SIGINT)");
        match interrupted_if_cancelled(failed(), &cancel) {
            DeployError::Interrupted { why } => {
                assert!(why.starts_with("Ctrl-C (SIGINT); meanwhile: "), "{why}");
                assert!(why.contains("ssh ended (signal: 2 (SIGINT))"), "{why}");
            }
            other => panic!("not interrupted: {other:?}"),
        }
        let already = DeployError::Interrupted {
            why: "SIGTERM".into(),
        };
        assert!(matches!(
            interrupted_if_cancelled(already, &cancel),
            DeployError::Interrupted { why } if why == "SIGTERM"
        ));
    }

    fn info(name: &str, named: bool) -> ConflictInfo {
        ConflictInfo {
            id: format!("id-{name}"),
            name: name.into(),
            state: "running".into(),
            status: "Up".into(),
            image: "i".into(),
            command: "c".into(),
            restart_policy: "always".into(),
            stop_timeout_s: 30,
            labels: HashMap::new(),
            gpu_mib: Some(100),
            named_in_spec: named,
            logs: String::new(),
        }
    }

    #[test]
    fn yes_alone_never_stops_a_container_the_spec_does_not_name() {
        let c = [info("nemotron", true), info("chatterbox", false)];
        let names = |v: Vec<&ConflictInfo>| v.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(choose_conflicts(&c, &[], true, &mut |_| false)),
            ["nemotron"]
        );
        assert_eq!(
            names(choose_conflicts(&c, &[], false, &mut |_| false)),
            Vec::<String>::new()
        );
        assert_eq!(
            names(choose_conflicts(&c, &[], false, &mut |c| c.name == "nemotron")),
            ["nemotron"]
        );
        assert_eq!(
            names(choose_conflicts(
                &c,
                &["chatterbox".into()],
                false,
                &mut |_| false
            )),
            ["chatterbox"]
        );
        // The question is asked once per conflict the spec names, never for the others.
        let mut asked = Vec::new();
        choose_conflicts(&c, &[], false, &mut |c| {
            asked.push(c.name.clone());
            false
        });
        assert_eq!(asked, ["nemotron"]);
    }

    #[test]
    fn a_stop_journals_the_spec_rule_of_its_conflict_and_the_plain_one_of_others() {
        let spec = vlmctl_lifecycle::spec::Spec::parse(
            "name = \"d\"\nimage = \"i:1\"\nmodel = \"m\"\n[server]\nhost = \"127.0.0.1\"\n\
             port = 1\n[[conflict]]\nname = \"tts\"\nrestore = \"ask\"\n\
             check_http = \"http://127.0.0.1:8772/health\"\ncheck_timeout_s = 9\n",
            Path::new("s.toml"),
        )
        .unwrap();
        let entries = journal_entries(&spec, &[info("tts", true), info("other", false)], "r1");
        let tts = &entries[0];
        assert_eq!(
            (tts.check_timeout_s, tts.restore, tts.run_id.as_str()),
            (9, vlmctl_lifecycle::spec::RestoreWhen::Ask, "r1")
        );
        assert!(tts.check.is_some() && !tts.left_stopped);
        let other = &entries[1];
        assert_eq!(
            (other.check.clone(), other.restore),
            (None, vlmctl_lifecycle::spec::RestoreWhen::Always)
        );
    }

    #[test]
    fn a_gpu_gate_failure_waits_for_the_conflicts_to_be_stopped() {
        let gate = |name: &str, status| GateResult::new(name, status, "", None);
        let report = |conflicts: Vec<ConflictInfo>| GateReport {
            results: vec![
                gate("daemon", GateStatus::Pass),
                gate("gpu", GateStatus::Fail),
                gate("port", GateStatus::Warn),
            ],
            gpu: None,
            conflicts,
        };
        let names = |v: Vec<&GateResult>| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(blocking_gates(&report(vec![]), false)), ["gpu"]);
        assert!(blocking_gates(&report(vec![info("x", true)]), false).is_empty());
        assert_eq!(
            names(blocking_gates(&report(vec![info("x", true)]), true)),
            ["gpu"],
            "a relaunch stops nothing, so nothing frees the memory"
        );
    }
}
