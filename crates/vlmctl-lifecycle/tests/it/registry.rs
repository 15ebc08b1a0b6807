//! The local registry is real: a tiny image built and pushed through the daemon comes back from
//! the daemon's distribution endpoint (what `docker manifest inspect` asks) with its platform.

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures::StreamExt;

use crate::common::{Env, TestRun, docker};

#[tokio::test]
async fn pushed_image_platforms_read_back_through_the_daemon() {
    let registry = Env::require("VLMCTL_TEST_REGISTRY");
    let docker = docker().await;
    let run = TestRun::new(&docker, "registry");
    run.guard(push_and_inspect(&docker, &run, &registry)).await;
}

async fn push_and_inspect(docker: &Docker, run: &TestRun, registry: &str) -> anyhow::Result<()> {
    let local = run.name("tiny");
    build_tiny_image(docker, run, &local).await?;

    let repo = format!("{registry}/vlmctl-test/tiny");
    let tag = run.id.clone();
    let opts = TagImageOptionsBuilder::default()
        .repo(&repo)
        .tag(&tag)
        .build();
    docker.tag_image(&local, Some(opts)).await?;
    let opts = PushImageOptionsBuilder::default().tag(&tag).build();
    let mut push = docker.push_image(&repo, Some(opts), None);
    while let Some(step) = push.next().await {
        step?;
    }

    let remote = format!("{repo}:{tag}");
    let inspect = docker.inspect_registry_image(&remote, None).await?;
    let platforms: Vec<String> = inspect
        .platforms
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.os.as_deref().unwrap_or("?"),
                p.architecture.as_deref().unwrap_or("?")
            )
        })
        .collect();
    let host = format!("linux/{}", docker_arch());
    assert!(
        platforms.contains(&host),
        "{remote}: platforms {platforms:?}, expected {host}"
    );
    assert!(
        inspect
            .descriptor
            .digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{inspect:?}"
    );
    // The pushed tag is a second name for the image; the label cleanup removes both.
    Ok(())
}

/// Builds `FROM scratch` + one file, labelled with the run, from an in-memory tar.
async fn build_tiny_image(docker: &Docker, run: &TestRun, tag: &str) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = b"FROM scratch\nCOPY hello.txt /hello.txt\n";
    for (name, data) in [("Dockerfile", &dockerfile[..]), ("hello.txt", b"hello\n")] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data)?;
    }
    let context = tar.into_inner()?;
    let opts = BuildImageOptionsBuilder::default()
        .t(tag)
        .labels(&run.image_labels())
        .rm(true)
        .build();
    let mut build = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    while let Some(step) = build.next().await {
        let info = step?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            anyhow::bail!("building {tag}: {err}");
        }
    }
    Ok(())
}

fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
