//! Containers: the plan of the one a deployment is ([`ContainerPlan`], pure), and what touches
//! containers through the Engine API: the image (`image`), launch and teardown ([`launch`]),
//! set-aside and put-back (`aside`, the journal's other half), readiness (`ready`),
//! conflicts ([`conflicts`]), the listing (`list`) and the one-shot GPU probe (`probe`).

mod aside;
mod conflicts;
mod image;
mod launch;
mod list;
mod plan;
mod probe;
mod ready;

pub use aside::*;
pub use conflicts::*;
pub use image::*;
pub use launch::*;
pub use list::*;
pub use plan::{
    API_KEY_ENV, BindMount, ContainerPlan, EnvValue, EnvVar, HEALTH_INTERVAL_S, HEALTH_RETRIES,
    HEALTH_TIMEOUT_S, HealthCheck, LOG_DRIVER, LOG_OPTS, LOG_VERBOSITY_ENV, LogConfig,
    MODELS_TARGET, PROBE_LOG_VERBOSITY, Published, SERVER_LOG_VERBOSITY, shell_quote,
};
pub use probe::*;
pub use ready::*;

#[cfg(test)]
mod tests {
    use crate::spec::{ModelMount, Spec};

    /// dockerd 20.10's answer to a GPU request on a host without the NVIDIA container toolkit
    /// (daemon/devices.go: `could not select device driver %q with capabilities: %v`, status
    /// 500 on the start call), as the test daemon no longer gives it (it has a no-op hook).
    #[test]
    fn a_start_refused_for_want_of_a_gpu_driver_says_install_the_toolkit() {
        let refused = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "could not select device driver \"\" with capabilities: [[gpu]]".to_owned(),
        };
        let e = super::start_error("panda-llamacpp", refused);
        assert!(
            matches!(e, crate::LifecycleError::NoGpuRuntime { .. }),
            "{e:?}"
        );
        assert!(
            e.hint().contains("NVIDIA Container Toolkit"),
            "{}",
            e.hint()
        );
        let other = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "something else".to_owned(),
        };
        assert!(matches!(
            super::start_error("x", other),
            crate::LifecycleError::Docker { .. }
        ));
    }

    use super::*;

    fn spec(gpus: &str, key: bool) -> Spec {
        let key = if key { "api_key_env = \"K\"\n" } else { "" };
        let text = format!(
            "name = \"x\"\nimage = \"i:1\"\nmodel = \"m\"\ngpus = {gpus}\n[server]\nhost = \"127.0.0.1\"\nport = 8080\n{key}"
        );
        Spec::parse(&text, std::path::Path::new("x.toml")).unwrap()
    }

    #[test]
    fn every_server_runs_at_verbosity_3_which_logs_no_request_bodies() {
        let mount = ModelMount {
            dir: "/m".into(),
            model_file: "m.gguf".into(),
            mmproj_file: None,
            lock_sha256: String::new(),
        };
        let env =
            |s: &Spec, key: Option<&str>| ContainerPlan::of(s, &mount, None).to_bollard(key).env;
        assert_eq!(
            env(&spec("\"all\"", true), Some("k")),
            Some(vec![
                "LLAMA_API_KEY=k".to_owned(),
                "LLAMA_ARG_LOG_VERBOSITY=3".to_owned()
            ])
        );
        let quiet = Some(vec!["LLAMA_ARG_LOG_VERBOSITY=3".to_owned()]);
        assert_eq!(env(&spec("\"all\"", false), None), quiet);
        assert_eq!(env(&spec("\"none\"", false), None), quiet);
        // A key named but not set in the starter's environment: no empty value.
        assert_eq!(env(&spec("\"none\"", true), None), quiet);
        assert_eq!(
            env(&spec("\"none\"", true), Some("k")),
            Some(vec![
                "LLAMA_API_KEY=k".to_owned(),
                "LLAMA_ARG_LOG_VERBOSITY=3".to_owned()
            ])
        );
    }
}
