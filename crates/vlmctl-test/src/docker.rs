//! Cleanup of what a test created in Docker, by label: every container and image a test makes
//! carries [`RUN_LABEL`]`=<its run id>`, and the test's [`LabelGuard`] removes them all when it
//! is dropped, also when the test panicked. Through the docker CLI, which reads `DOCKER_HOST`
//! as vlmctl does, so the guard meets the daemon the test used.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The label naming the test run that created a container or image (`scripts/test` also
/// removes leftovers of killed runs by it).
pub const RUN_LABEL: &str = "org.vlmctl.test-run";

/// One test's identity in Docker: a run id unique to this process and moment, the names and
/// label derived from it, and removal of everything labelled with it on drop.
///
/// Containers that vlmctl creates under a name the test chose (a deployment) carry vlmctl's
/// labels, not the run label: name them with [`LabelGuard::also_remove`].
pub struct LabelGuard {
    id: String,
    docker_host: Option<String>,
    named: Vec<String>,
}

impl LabelGuard {
    /// A guard for a run of `what` (a short word: it appears in every name).
    #[must_use]
    pub fn new(what: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            id: format!("{what}-{}-{nanos:08x}", std::process::id()),
            docker_host: None,
            named: Vec::new(),
        }
    }

    /// The same guard, removing from the daemon at `docker_host` (`DOCKER_HOST` syntax) instead
    /// of the one the environment names.
    #[must_use]
    pub fn on(mut self, docker_host: &str) -> Self {
        self.docker_host = Some(docker_host.to_owned());
        self
    }

    /// The run id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A container or image name unique to this run.
    #[must_use]
    pub fn name(&self, suffix: &str) -> String {
        format!("vlmctl-test-{}-{suffix}", self.id)
    }

    /// `org.vlmctl.test-run=<id>`, for `docker run --label` and `docker build --label`.
    #[must_use]
    pub fn label(&self) -> String {
        format!("{RUN_LABEL}={}", self.id)
    }

    /// Also removes the container `name` (and nothing else by that name) on drop.
    pub fn also_remove(&mut self, name: impl Into<String>) {
        self.named.push(name.into());
    }

    /// A docker CLI command against this guard's daemon.
    #[must_use]
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        if let Some(host) = &self.docker_host {
            c.env("DOCKER_HOST", host);
        }
        c
    }

    /// Removes the containers, then the images, labelled with this run, and the containers named
    /// with [`LabelGuard::also_remove`]. Errors are ignored: this runs after failures too and
    /// must not hide the original panic; `scripts/test` removes what a killed run left.
    pub fn remove_all(&self) {
        let filter = format!("label={}", self.label());
        for (list, rm) in [(&["ps", "-aq"], "rm"), (&["images", "-q"], "rmi")] {
            let ids = self
                .docker()
                .args(list)
                .args(["--filter", &filter])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let mut ids: Vec<&str> = ids.split_whitespace().collect();
            ids.dedup();
            if !ids.is_empty() {
                let _ = self.docker().args([rm, "-f"]).args(&ids).output();
            }
        }
        if !self.named.is_empty() {
            let _ = self.docker().args(["rm", "-f"]).args(&self.named).output();
        }
    }
}

impl Drop for LabelGuard {
    fn drop(&mut self) {
        self.remove_all();
    }
}

#[cfg(test)]
mod tests {
    use super::{LabelGuard, RUN_LABEL};

    #[test]
    fn names_and_the_label_carry_the_run_id() {
        let g = LabelGuard::new("unit").on("unix:///nonexistent/docker.sock");
        assert!(g.id().starts_with(&format!("unit-{}-", std::process::id())));
        assert_eq!(g.name("srv"), format!("vlmctl-test-{}-srv", g.id()));
        assert_eq!(g.label(), format!("{RUN_LABEL}={}", g.id()));
        assert_ne!(LabelGuard::new("unit").id(), "", "ids are never empty");
        // Dropped against a daemon that is not there: cleanup never panics.
    }
}
