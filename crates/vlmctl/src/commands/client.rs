//! `vlmctl client` (a running deployment's client settings, printed again) and `vlmctl key new`
//! (a new API key file). The settings are `vlmctl_deploy::client`'s, as provision prints them;
//! the key is never printed.

use vlmctl_deploy::DeployError;
use vlmctl_deploy::client::ClientSettings;
use vlmctl_deploy::client_error::ClientError;

use crate::cli::{ClientArgs, KeyNewArgs};
use crate::failure::Failure;
use crate::{Output, exit_codes};

/// `vlmctl client`: asks the running server which model it lists (with the key, when the spec
/// names one), then prints the settings for its clients.
pub async fn client(
    args: &ClientArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let plan = super::plan(args.spec.as_deref(), &args.lock.lock, &args.dirs)?;
    plan.require_api_key()?;
    plan.check_interface_on(engine)?;
    let url = plan.reach_url(engine).await?;
    let model = vlmctl_deploy::smoke::served_model(&url, plan.api_key.as_deref())
        .await
        .map_err(|e| {
            DeployError::from(ClientError::NotServing {
                deployment: plan.spec.name.clone(),
                url: url.clone(),
                why: match e {
                    DeployError::SmokeFailed { why, .. } => why,
                    other => other.to_string(),
                },
            })
        })?;
    let settings = ClientSettings::of(
        &plan.spec,
        &model,
        &vlmctl_deploy::history::host_name(engine),
    );
    if args.json {
        let mut doc = settings.to_json();
        if let Some(o) = doc.as_object_mut() {
            o.insert("deployment".to_owned(), plan.spec.name.clone().into());
        }
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        out.stdout(&format!("{}: {}", plan.spec.name, settings.render()));
    }
    Ok(exit_codes::SUCCESS)
}

/// `vlmctl key new --file PATH`.
pub fn key_new(args: &KeyNewArgs, out: &mut Output) -> Result<u8, Failure> {
    let len =
        vlmctl_deploy::apikey::new_file(&args.file).map_err(vlmctl_deploy::DeployError::from)?;
    out.stdout(&format!(
        "wrote a new {len}-character API key to {} (mode 0600; not shown)\nname it in the spec: \
         [server] api_key_file = \"{}\"; the client sends it as: Authorization: Bearer \
         ${}",
        args.file.display(),
        std::path::absolute(&args.file)
            .unwrap_or_else(|_| args.file.clone())
            .display(),
        vlmctl_deploy::client::KEY_VAR
    ));
    Ok(exit_codes::SUCCESS)
}
