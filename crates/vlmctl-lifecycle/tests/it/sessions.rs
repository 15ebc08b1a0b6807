//! The [`Sessions`] pool owns the helper containers handed out through it: one dropped without
//! being stopped, where no runtime could remove it in the background, is removed by the pool's
//! `close` (which the CLI calls on its way out, before the forwards end).

use vlmctl_lifecycle::hosts::Sessions;
use vlmctl_lifecycle::remote::Helper;

use crate::common::{Env, docker};

#[test]
fn a_helper_dropped_without_stop_is_removed_by_its_pools_close() {
    let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let docker = rt.block_on(docker());
    let sessions = Sessions::new();
    let helper = rt
        .block_on(Helper::start(&docker, &sessions, &image, dir.path()))
        .expect("a helper");
    let id = helper.id().to_owned();
    // Dropped outside the runtime: nothing can remove it in the background.
    drop(helper);
    assert!(
        rt.block_on(docker.inspect_container(&id, None)).is_ok(),
        "still there until the pool closes"
    );
    rt.block_on(sessions.close());
    let gone = rt.block_on(docker.inspect_container(&id, None)).is_err();
    if !gone {
        let _ = rt.block_on(
            docker.remove_container(
                &id,
                Some(
                    bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .build(),
                ),
            ),
        );
    }
    assert!(gone, "the pool's close removed the dropped helper {id}");
}
