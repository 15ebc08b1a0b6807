//! Pin on first use, as a job step: the plan for a spec, its `[model]` pinned into the lock
//! first when the lock does not pin it (yet, or any more) — resolved against the hub, written,
//! and said ([`Event::Pinning`], [`Event::Pinned`]). Under `--locked` such a change is refused.
//! The spec is parsed once by the caller; only the lock is read again after the write.

use std::path::Path;

use vlmctl_lifecycle::spec::Spec;
use vlmctl_weights::HubClient;

use crate::events::{Event, Sink};
use crate::{DeployError, DeploymentPlan, Dirs};

/// The plan for `spec` (read from `spec_path`, `None`: the embedded default) with the lock at
/// `lock`, pinned first when needed: plan, need, `locked`, hub, pin, plan again, and an error if
/// someone changed the lock between the write and the read.
pub async fn pinned_plan(
    spec: Spec,
    spec_path: Option<&Path>,
    lock: &Path,
    dirs: &Dirs,
    hub: &HubClient,
    locked: bool,
    sink: &mut dyn Sink,
) -> Result<DeploymentPlan, DeployError> {
    let first = DeploymentPlan::for_spec(spec.clone(), spec_path, lock, dirs)?;
    let Some(need) = &first.unpinned else {
        return Ok(first);
    };
    if locked {
        return Err(DeployError::LockedChange {
            need: Box::new(need.clone()),
        });
    }
    sink.event(Event::Pinning {
        need: need.to_string(),
        endpoint: hub.endpoint().to_owned(),
    });
    let pinned = crate::pin::pin(hub, need).await?;
    sink.event(Event::Pinned { pinned });
    let again = DeploymentPlan::for_spec(spec, spec_path, lock, dirs)?;
    // Someone changed the lock between our write and this read.
    again.require_pinned()?;
    Ok(again)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vlmctl_weights::fake_hub::{FakeHub, FakeRepo};

    use super::*;
    use crate::pin::Change;

    const SPEC: &str = r#"
name = "d"
image = "img"
[model]
name = "m"
repo = "org/repo"
files = ["m.gguf"]
[server]
host = "127.0.0.1"
port = 1
"#;

    #[tokio::test]
    async fn a_spec_is_pinned_on_first_use_refused_under_locked_then_read_from_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = FakeHub::start(vec![FakeRepo {
            id: "org/repo".into(),
            commit: "1".repeat(40),
            token: None,
            files: BTreeMap::from([("m.gguf".into(), bytes::Bytes::from_static(b"GGUF-ish"))]),
        }])
        .await
        .unwrap();
        let client = HubClient::new(&hub.endpoint(), None, tmp.path().join("cache")).unwrap();
        let spec = Spec::parse(SPEC, Path::new("d.toml")).unwrap();
        let lock = tmp.path().join("weights.lock");
        let dirs = Dirs {
            dir: None,
            models_root: tmp.path().join("models"),
        };
        let mut events: Vec<Event> = Vec::new();
        let refused =
            pinned_plan(spec.clone(), None, &lock, &dirs, &client, true, &mut events).await;
        assert!(matches!(refused, Err(DeployError::LockedChange { .. })));
        assert!(
            !lock.exists() && events.is_empty(),
            "nothing asked, nothing written"
        );

        let plan = pinned_plan(
            spec.clone(),
            None,
            &lock,
            &dirs,
            &client,
            false,
            &mut events,
        )
        .await
        .unwrap();
        assert!(plan.unpinned.is_none());
        assert_eq!(plan.model.revision, "1".repeat(40));
        assert_eq!(plan.model.files[0].size, 8);
        assert!(
            matches!(&events[0], Event::Pinning { need, .. } if need.starts_with("m: org/repo@main"))
        );
        assert!(matches!(&events[1], Event::Pinned { pinned } if pinned.change == Change::Added));
        assert_eq!(events.len(), 2);

        events.clear();
        let again = pinned_plan(spec, None, &lock, &dirs, &client, true, &mut events)
            .await
            .unwrap();
        assert_eq!(again.model, plan.model);
        assert!(
            events.is_empty(),
            "pinned: the lock decides, even under --locked"
        );
    }
}
