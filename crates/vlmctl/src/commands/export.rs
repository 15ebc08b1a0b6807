//! `vlmctl export`: the deployment as a `docker run` line or a compose file.

use crate::cli::{ExportArgs, ExportFormat};
use crate::failure::Failure;
use crate::{Output, exit_codes};

/// `vlmctl export`.
pub fn export(args: &ExportArgs, out: &mut Output) -> Result<u8, Failure> {
    let plan = super::plan(args.spec.as_deref(), &args.lock.lock, &args.dirs)?;
    if let Some(need) = &plan.unpinned {
        out.progress(&format!(
            "not pinned yet: {need}\nthe lock label reads \"{}\" until `vlmctl provision` pins it",
            vlmctl_deploy::plan::UNPINNED
        ));
    }
    let text = match args.format {
        ExportFormat::DockerRun => plan.spec.docker_run_line(&plan.mount),
        ExportFormat::Compose => vlmctl_deploy::export::compose(&plan.spec, &plan.mount),
    };
    out.stdout(&text);
    Ok(exit_codes::SUCCESS)
}
