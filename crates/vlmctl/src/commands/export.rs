//! `vlmctl export`: the deployment as a `docker run` line or a compose file.

use crate::cli::{ExportArgs, ExportFormat};
use crate::failure::Failure;
use crate::{Output, exit_codes};

/// `vlmctl export`.
pub async fn export(
    args: &ExportArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let plan = super::plan(args.spec.as_deref(), &args.lock.lock, &args.dirs)?;
    if let Some(need) = &plan.unpinned {
        out.progress(&format!(
            "not pinned yet: {need}\nthe lock label reads \"{}\" until `vlmctl provision` pins it",
            vlmctl_deploy::plan::UNPINNED
        ));
    }
    let (container, note) =
        vlmctl_deploy::export::container_plan(engine, &plan.spec, &plan.mount).await;
    if let Some(note) = note {
        out.progress(&note);
    }
    let text = match args.format {
        ExportFormat::DockerRun => container.docker_run_line(),
        ExportFormat::Compose => vlmctl_deploy::export::compose(&container),
    };
    out.stdout(&text);
    Ok(exit_codes::SUCCESS)
}
