//! Cleanup of what a test created in Docker, by label: every container and image a test makes
//! carries [`RUN_LABEL`]`=<its run id>`, and the test's [`LabelGuard`] removes them all when it
//! is dropped, also when the test panicked. Through the docker CLI, which reads `DOCKER_HOST`
//! as vlmctl does, so the guard meets the daemon the test used.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The label naming the test run that created a container or image (`scripts/test` also
/// removes leftovers of killed runs by it).
pub const RUN_LABEL: &str = "org.vlmctl.test-run";

/// The suffixes of the other names vlmctl gives a deployment's containers: the copy a replacing
/// relaunch sets aside (`vlmctl_lifecycle::containers::aside_name`), the original a tune parks
/// (`vlmctl_lifecycle::spec::TUNE_PARKED_SUFFIX`) and the GPU probe a provision runs before the
/// launch (`vlmctl_lifecycle::containers::probe_name`). Copied, not imported: this crate depends on
/// no vlmctl crate (see the crate doc); a unit test in vlmctl-lifecycle's `containers/aside.rs`
/// checks that the two agree.
pub const DEPLOYMENT_SUFFIXES: [&str; 3] = ["-vlmctl-previous", "-vlmctl-tune", "-vlmctl-probe"];

/// Every container name a deployment named `name` can leave behind: its own, the copy set aside
/// by a replacing relaunch, the original parked by a tune, the GPU probe
/// ([`DEPLOYMENT_SUFFIXES`]).
#[must_use]
pub fn deployment_containers(name: &str) -> Vec<String> {
    std::iter::once(name.to_owned())
        .chain(DEPLOYMENT_SUFFIXES.iter().map(|s| format!("{name}{s}")))
        .collect()
}

/// Runs the docker CLI with `args` against the daemon the environment names (`DOCKER_HOST`) and
/// returns its stdout, trimmed.
///
/// # Panics
/// When the docker CLI cannot run or fails; the message quotes its stderr.
#[expect(
    clippy::must_use_candidate,
    reason = "run for its effect as often as for its output (`docker rm`, `docker push`)"
)]
pub fn docker(args: &[&str]) -> String {
    checked(Command::new("docker"), args)
}

/// `cmd` (a docker CLI) run with `args`, its stdout trimmed; panics when it fails.
fn checked(mut cmd: Command, args: &[&str]) -> String {
    let out = cmd.args(args).output().expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One test's identity in Docker: a run id unique to this process and moment, the names and
/// label derived from it, and removal of everything labelled with it on drop.
///
/// Containers that vlmctl creates under a name the test chose (a deployment) carry vlmctl's
/// labels, not the run label: name them with [`LabelGuard::also_remove_deployment`] (or
/// [`LabelGuard::also_remove`] for one container), and images tagged without the label with
/// [`LabelGuard::also_remove_image`]. On another host's daemon: [`LabelGuard::on`].
pub struct LabelGuard {
    id: String,
    docker_host: Option<String>,
    /// Whether anything carries this guard's run label ([`LabelGuard::deployment`]: no).
    by_label: bool,
    named: Vec<String>,
    images: Vec<String>,
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
            by_label: true,
            named: Vec::new(),
            images: Vec::new(),
        }
    }

    /// A guard for the deployment `name` alone (its containers as in
    /// [`LabelGuard::also_remove_deployment`]), for a test whose deployment is named by a
    /// document or a fixed default rather than by a run: nothing is removed by label.
    #[must_use]
    pub fn deployment(name: &str) -> Self {
        let mut g = Self::new("deployment");
        g.by_label = false;
        g.also_remove_deployment(name);
        g
    }

    /// The same guard, having removed now what it removes on drop: what an earlier, killed run
    /// left under the same fixed names.
    #[must_use]
    pub fn cleared(self) -> Self {
        self.remove_all();
        self
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

    /// Also removes, on drop, the deployment `name`'s container and the copies vlmctl keeps of
    /// it under other names ([`deployment_containers`]): vlmctl creates them from the spec, with
    /// its labels, not the run label.
    pub fn also_remove_deployment(&mut self, name: &str) {
        self.named.extend(deployment_containers(name));
    }

    /// Also removes the image tag `tag` on drop (after the containers).
    pub fn also_remove_image(&mut self, tag: impl Into<String>) {
        self.images.push(tag.into());
    }

    /// Starts a "conflict" for a deployment to stop: a busybox container (`sleep` as PID 1, so
    /// that it ignores SIGTERM and a stop takes `stop_timeout_s`, dockerd's SIGKILL after its
    /// own `--stop-timeout`) with restart policy `always`, named [`LabelGuard::name`]`("conflict")`.
    /// Its image is built in `dir` from the static busybox `VLMCTL_TEST_BUSYBOX`; both carry
    /// the run label. Returns the container's name.
    ///
    /// # Panics
    /// When the busybox is missing or docker fails.
    #[must_use]
    pub fn conflict(&self, dir: &Path, stop_timeout_s: u32) -> String {
        std::fs::create_dir_all(dir).expect("the busybox image's folder");
        std::fs::copy(
            crate::Env::require("VLMCTL_TEST_BUSYBOX"),
            dir.join("busybox"),
        )
        .expect("copy the busybox");
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
        )
        .expect("the busybox Dockerfile");
        let tag = format!("vlmctl-test/busybox:{}", self.id);
        let label = self.label();
        let name = self.name("conflict");
        let stop_timeout_s = stop_timeout_s.to_string();
        for args in [
            &[
                "build",
                "-q",
                "-t",
                &tag,
                "--label",
                &label,
                &dir.to_string_lossy(),
            ][..],
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--label",
                &label,
                "--restart",
                "always",
                "--stop-timeout",
                &stop_timeout_s,
                &tag,
                "sleep",
                "3600",
            ],
        ] {
            let mut c = self.docker();
            c.env("DOCKER_BUILDKIT", "0");
            checked(c, args);
        }
        name
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

    /// Removes the containers, then the images, labelled with this run, then the containers and
    /// images named with the `also_remove*` methods. Errors are ignored: this runs after failures
    /// too and must not hide the original panic; `scripts/test` removes what a killed run left.
    pub fn remove_all(&self) {
        let filter = format!("label={}", self.label());
        let sweeps: &[(&[&str], &str)] = if self.by_label {
            &[(&["ps", "-aq"], "rm"), (&["images", "-q"], "rmi")]
        } else {
            &[]
        };
        for &(list, rm) in sweeps {
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
        if !self.images.is_empty() {
            let _ = self
                .docker()
                .args(["rmi", "-f"])
                .args(&self.images)
                .output();
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
    use super::{LabelGuard, RUN_LABEL, deployment_containers};

    #[test]
    fn names_and_the_label_carry_the_run_id() {
        let g = LabelGuard::new("unit").on("unix:///nonexistent/docker.sock");
        assert!(g.id().starts_with(&format!("unit-{}-", std::process::id())));
        assert_eq!(g.name("srv"), format!("vlmctl-test-{}-srv", g.id()));
        assert_eq!(g.label(), format!("{RUN_LABEL}={}", g.id()));
        assert_ne!(LabelGuard::new("unit").id(), "", "ids are never empty");
        // Dropped against a daemon that is not there: cleanup never panics.
    }

    #[test]
    fn a_deployment_is_its_container_and_the_copies_vlmctl_keeps() {
        assert_eq!(
            deployment_containers("srv"),
            [
                "srv",
                "srv-vlmctl-previous",
                "srv-vlmctl-tune",
                "srv-vlmctl-probe"
            ]
        );
        let mut g = LabelGuard::new("unit").on("unix:///nonexistent/docker.sock");
        g.also_remove_deployment("srv");
        g.also_remove_image("vlmctl-test/x:unit");
        assert_eq!(g.named, deployment_containers("srv"));
        assert_eq!(g.images, ["vlmctl-test/x:unit"]);
        let alone = LabelGuard::deployment("srv").on("unix:///nonexistent/docker.sock");
        assert!(!alone.by_label, "no run label to sweep by");
        assert_eq!(alone.named, deployment_containers("srv"));
    }
}
