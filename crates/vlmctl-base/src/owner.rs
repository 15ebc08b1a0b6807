//! "Is the process that wrote this still alive": the one rule, used by the history store (a
//! `running` run whose owner died is marked `interrupted`) and by the push helpers (a helper
//! container whose owner died is removed).
//!
//! A pid alone is not an identity: pids are reused, so a dead owner's pid may name an unrelated
//! live process. An [`Owner`] is the pid plus the process's start time (clock ticks since boot,
//! field 22 of `/proc/PID/stat`) plus where pids mean something ([`this_machine`]: the boot id
//! and the pid namespace). Only an owner of this machine, boot and namespace can be judged
//! ([`Owner::is_dead`]); anyone else's is left alone, since its process cannot be seen from here.
//!
//! Linux `/proc` only; without it nothing is judged dead.

/// A process that owns something (a history row, a helper container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot; `None` when it could not be read (then the pid
    /// alone answers, as for rows written before start times were recorded).
    pub start: Option<i64>,
    /// Where its pid means something ([`this_machine`] of its process); `None` when unknown.
    pub machine: Option<String>,
}

impl Owner {
    /// This process.
    #[must_use]
    pub fn this_process() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start: process_start(pid),
            machine: this_machine(),
        }
    }

    /// Whether its process is running now: a live process with its pid and, when its start
    /// time is known, the same start time (a reused pid is another process). A zombie is not
    /// alive. Meaningful only for an owner of this machine ([`Owner::is_local`]).
    #[must_use]
    pub fn is_alive(&self) -> bool {
        match (process_start(self.pid), self.start) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether it is a process of this machine, boot and pid namespace, so that
    /// [`Owner::is_alive`] can tell.
    #[must_use]
    pub fn is_local(&self) -> bool {
        self.machine.is_some() && self.machine == this_machine()
    }

    /// Whether it is known to be gone: local and not alive. An owner that cannot be judged from
    /// here is never dead.
    #[must_use]
    pub fn is_dead(&self) -> bool {
        self.is_local() && !self.is_alive()
    }

    /// The owner as one word for a label: `PID/START/MACHINE` (`-` for an unknown start or
    /// machine; the machine itself holds a `/`). Read back by [`Owner::from_label`].
    #[must_use]
    pub fn to_label(&self) -> String {
        format!(
            "{}/{}/{}",
            self.pid,
            self.start.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            self.machine.as_deref().unwrap_or("-")
        )
    }

    /// An owner written by [`Owner::to_label`]; `None` for anything else.
    #[must_use]
    pub fn from_label(label: &str) -> Option<Self> {
        let mut parts = label.splitn(3, '/');
        let pid = parts.next()?.parse().ok()?;
        let start = match parts.next()? {
            "-" => None,
            s => Some(s.parse().ok()?),
        };
        let machine = match parts.next()? {
            "-" | "" => None,
            m => Some(m.to_owned()),
        };
        Some(Self {
            pid,
            start,
            machine,
        })
    }
}

/// Where this process's pids mean something: the boot (`/proc/sys/kernel/random/boot_id`) and
/// the pid namespace (`/proc/self/ns/pid`), as `BOOT_ID/pid:[INODE]`. A process in a container
/// sharing a state folder with the host, another machine sharing a file, or a host without
/// `/proc` cannot tell whether a pid of theirs is alive. `None` without `/proc`.
#[must_use]
pub fn this_machine() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

/// A live process's start time (field 22 of `/proc/PID/stat`); `None` when it does not exist
/// or has ended: a killed process stays a zombie (state `Z`) until its parent reaps it, and
/// must not pass for its live self in that window.
#[must_use]
pub fn process_start(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_local() {
        let me = Owner::this_process();
        assert!(me.start.is_some(), "Linux /proc gives a start time");
        assert!(me.is_alive());
        assert!(me.is_local());
        assert!(!me.is_dead());
    }

    #[test]
    fn a_reused_pid_is_not_taken_for_its_dead_owner() {
        // The same pid as a live process, but another start time: the owner that had the pid
        // before is gone, whatever now runs under it.
        let me = Owner::this_process();
        let before = Owner {
            start: me.start.map(|s| s - 1),
            ..me.clone()
        };
        assert!(!before.is_alive());
        assert!(before.is_dead());
        // Without a recorded start the pid alone answers.
        let pid_only = Owner { start: None, ..me };
        assert!(pid_only.is_alive());
    }

    #[test]
    fn an_owner_of_another_machine_is_never_judged_dead() {
        let other = Owner {
            pid: u32::MAX,
            start: Some(1),
            machine: Some("another-boot/pid:[1]".to_owned()),
        };
        assert!(!other.is_alive());
        assert!(!other.is_dead());
        let unknown = Owner {
            machine: None,
            ..other
        };
        assert!(!unknown.is_dead());
    }

    #[test]
    fn labels_read_back() {
        let me = Owner::this_process();
        assert_eq!(Owner::from_label(&me.to_label()), Some(me));
        let bare = Owner {
            pid: 7,
            start: None,
            machine: None,
        };
        assert_eq!(bare.to_label(), "7/-/-");
        assert_eq!(Owner::from_label("7/-/-"), Some(bare));
        assert_eq!(Owner::from_label("7"), None);
        assert_eq!(Owner::from_label("x/1/m"), None);
    }
}
