//! The command line as a user meets it: help, version, and errors for bad input.

use std::fs;

use crate::common::{redact, repo_file, run, vlmctl};

#[test]
fn help_lists_the_commands() {
    let (code, out, _) = run(vlmctl().arg("--help"));
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

#[test]
fn version_is_the_crate_version() {
    let (code, out, _) = run(vlmctl().arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("vlmctl {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_command_is_a_usage_error() {
    let (code, _, err) = run(vlmctl().arg("frobnicate"));
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn malformed_lock_names_file_line_and_field_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("weights.lock");
    fs::write(
        &lock,
        "version = 1\n\n[[model]]\nname = \"m\"\nrepo = \"org/repo\"\n\
         revision = \"0123456789abcdef0123456789abcdef01234567\"\n\n[[model.file]]\n\
         path = \"../escape.gguf\"\nrole = \"model\"\nsize = 1\n\
         sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
    )
    .unwrap();
    let (code, out, err) = run(vlmctl().args(["weights", "verify", "--lock"]).arg(&lock));
    assert_eq!(code, 3, "{err}");
    assert_eq!(out, "");
    insta::assert_snapshot!(redact(&err, tmp.path()));
}

#[test]
fn missing_lock_is_an_environment_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = run(vlmctl()
        .args(["weights", "verify", "--lock"])
        .arg(tmp.path().join("nope.lock")));
    assert_eq!(code, 5, "{err}");
    insta::assert_snapshot!(redact(&err, tmp.path()));
}

#[test]
fn unknown_model_lists_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("weights.lock");
    fs::write(&lock, "version = 1\n").unwrap();
    let (code, _, err) = run(vlmctl()
        .args(["weights", "verify", "gemma", "--lock"])
        .arg(&lock));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no model named \"gemma\""), "{err}");
    assert!(err.contains("hint: the lock has no models yet"), "{err}");
}

#[test]
fn export_gives_the_docker_run_line_and_a_compose_file() {
    for format in ["docker-run", "compose"] {
        let (code, out, err) = run(vlmctl()
            .args(["export", "--format", format, "--spec"])
            .arg(repo_file("docker/cpu-test.toml"))
            .arg("--lock")
            .arg(repo_file("examples/cpu-test.lock"))
            .env("HOME", "/home/user")
            // No daemon to inspect the image: llama.cpp's health check is assumed, and said.
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"));
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains("could not be inspected here: its health check is assumed"),
            "{err}"
        );
        insta::assert_snapshot!(format!("export-{format}"), out);
    }
}

/// The README's first command on a fresh clone: the committed lock has no entry for the embedded
/// spec's model, and there is no network (the hub endpoint is a closed local port). The dry run
/// still prints the hardened line, from the spec's `[model]`, and says what provision will pin.
#[test]
fn provision_dry_run_of_the_embedded_spec_needs_no_lock_entry_and_no_network() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let (code, out, err) = run(vlmctl()
        .args(["provision", "--dry-run", "--lock"])
        .arg(repo_file("weights.lock"))
        .env("HF_ENDPOINT", format!("http://{closed}"))
        .env("HOME", "/home/user"));
    assert_eq!(code, 0, "{err}");
    for want in [
        "--name panda-llamacpp",
        "--restart unless-stopped",
        "--gpus all",
        "--network host",
        "--mount type=bind,source=/home/user/gguf-gemma4-e2b,target=/models,readonly",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--model /models/gemma-4-E2B-it-Q4_K_M.gguf --mmproj /models/mmproj-F16.gguf --host 127.0.0.1 --port 11435",
        "--jinja",
        // The image's check, aimed at the spec's port (llama.cpp's images probe 8080).
        "--health-cmd 'curl -f http://127.0.0.1:11435/health'",
        "--health-start-period ",
        // A GPU spec's server runs at the quiet verbosity, 3 (issue #23).
        "-e LLAMA_ARG_LOG_VERBOSITY=3",
    ] {
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
    assert!(!out.contains("LLAMA_ARG_LOG_VERBOSITY=4"), "{out}");
    // The probe that proves the GPU is said, with its verbosity.
    assert!(
        err.contains(
            "before it, provision loads the model once in panda-llamacpp-vlmctl-probe: the same \
             image, GPUs, mount and arguments, at LLAMA_ARG_LOG_VERBOSITY=4"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "not pinned yet: gemma-4-e2b-it-q4km: unsloth/gemma-4-E2B-it-GGUF@main \
             (gemma-4-E2B-it-Q4_K_M.gguf, mmproj-F16.gguf)"
        ) && err.contains("provision will pin it before it starts"),
        "{err}"
    );
}

#[test]
fn bad_spec_and_missing_spec_are_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("bad.toml");
    fs::write(
        &spec,
        "name = \"x\"\nimage = \"i\"\nmodel = \"m\"\n[server]\nhost = \"0.0.0.0\"\nport = 8080\n",
    )
    .unwrap();
    let lock = repo_file("examples/cpu-test.lock");
    let (code, _, err) = run(vlmctl()
        .args(["gates", "--spec"])
        .arg(&spec)
        .arg("--lock")
        .arg(&lock));
    assert_eq!(code, 3, "{err}");
    insta::assert_snapshot!(redact(&err, tmp.path()));
    let (code, _, err) = run(vlmctl()
        .args(["provision", "--spec"])
        .arg(tmp.path().join("nope.toml"))
        .arg("--lock")
        .arg(&lock));
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("hint: pass --spec PATH"), "{err}");
}

#[test]
fn a_spec_or_lock_that_is_not_utf8_is_bad_input_not_an_unreadable_file() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("latin1.toml");
    fs::write(&spec, b"# caf\xe9\nname = \"x\"\n").unwrap();
    let (code, _, err) = run(vlmctl()
        .args(["export", "--spec"])
        .arg(&spec)
        .arg("--lock")
        .arg(repo_file("examples/cpu-test.lock")));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("latin1.toml:1: not UTF-8"), "{err}");
    let lock = tmp.path().join("weights.lock");
    fs::write(&lock, b"version = 1\n# caf\xe9\n").unwrap();
    let (code, _, err) = run(vlmctl()
        .args(["export", "--spec"])
        .arg(repo_file("docker/cpu-test.toml"))
        .arg("--lock")
        .arg(&lock));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("weights.lock:2: not UTF-8"), "{err}");
}

#[test]
fn teardown_of_a_name_that_is_a_path_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state/a");
    fs::create_dir_all(state.join("journals")).unwrap();
    let victim = tmp.path().join("state/victim.json");
    fs::write(&victim, "{}").unwrap();
    let (code, _, err) = run(vlmctl()
        .args(["teardown", "../../victim", "--state-dir"])
        .arg(&state));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is not a deployment name"), "{err}");
    assert!(victim.exists() && !tmp.path().join("state/victim.lock").exists());
}

/// A text-only plan against a port nothing listens on (these tests never send a request).
fn sweep_plan(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let examples = repo_file("examples");
    let plan = dir.join("plan.toml");
    fs::write(
        &plan,
        format!(
            "version = 1\nconfigs = [\"T\"]\ndescribe = false\n{extra}\n[prompts]\nnav = \"{e}/prompts/nav.txt\"\n\
             nav_short = \"{e}/prompts/nav-short.txt\"\ndescribe = \"{e}/prompts/describe.txt\"\n\
             [[target]]\nname = \"t\"\nurl = \"http://127.0.0.1:9\"\n",
            e = examples.display()
        ),
    )
    .unwrap();
    plan
}

#[test]
fn a_sweep_needs_an_slo_and_a_range() {
    let tmp = tempfile::tempdir().unwrap();
    // --sweep-rate on a plan without [slo]: refused before any request, with the way out.
    let plan = sweep_plan(tmp.path(), "");
    let (code, _, err) = run(vlmctl()
        .args(["bench", "--sweep-rate", "1:10", "--plan"])
        .arg(&plan));
    assert_eq!(code, 3, "{err}");
    insta::assert_snapshot!("sweep-without-slo", redact(&err, tmp.path()));
    // A [sweep] table without [slo]: a plan error on the table's line.
    let plan = sweep_plan(tmp.path(), "[sweep]\nmin_hz = 1\nmax_hz = 10");
    let (code, _, err) = run(vlmctl().args(["bench", "--plan"]).arg(&plan));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("plan.toml:4: sweep: a rate sweep needs an [slo] table"),
        "{err}"
    );
    // A range upside down is a usage error.
    let (code, _, err) = run(vlmctl()
        .args(["bench", "--sweep-rate", "10:1", "--plan"])
        .arg(&plan));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("LO must be below HI"), "{err}");
}

/// While a tune of a deployment runs (it holds `<name>.tune` and has the deployment's container
/// parked aside), `provision`, `relaunch` and `teardown` of it wait or fail with exit 10 naming
/// the tune, instead of acting in the middle of it. The tune's lock is taken here as the tune
/// takes it; nothing below it (Docker) is reached.
#[test]
fn provision_relaunch_and_teardown_wait_for_a_running_tune() {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("vlmctl-test-tunelock-{}", std::process::id());
    let spec = tmp.path().join("spec.toml");
    fs::write(
        &spec,
        format!(
            "name = \"{name}\"\nimage = \"127.0.0.1:1/none:never\"\nmodel = \"gemma-3-270m-q4km\"\n\
             gpus = \"none\"\n[server]\nhost = \"127.0.0.1\"\nport = 1\n"
        ),
    )
    .unwrap();
    let state = tmp.path().join("state");
    let _tune =
        vlmctl_lifecycle::lockfile::try_acquire(&state, &format!("{name}.tune"), "vlmctl tune")
            .expect("the tune's lock");
    for args in [&["provision"][..], &["relaunch"], &["teardown"]] {
        let (code, out, err) = run(vlmctl()
            .args(args)
            .arg("--spec")
            .arg(&spec)
            .args(if args[0] == "teardown" {
                &[][..]
            } else {
                &["--lock"][..]
            })
            .args(if args[0] == "teardown" {
                Vec::new()
            } else {
                vec![repo_file("examples/cpu-test.lock")]
            })
            .env("VLMCTL_STATE_DIR", &state));
        assert_eq!(code, 10, "{args:?}: {out}\n{err}");
        assert!(
            err.contains("vlmctl tune"),
            "{args:?}: the holder is named: {err}"
        );
    }
}

/// A tune's parked original (`NAME-vlmctl-tune`) is the deployment itself, set aside: `teardown`
/// of it is refused (exit 3) with a hint naming the deployment, before any lock or the daemon.
#[test]
fn teardown_of_a_tunes_parked_original_is_refused_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = run(vlmctl()
        .args(["teardown", "web-vlmctl-tune"])
        .env("VLMCTL_STATE_DIR", tmp.path()));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("web-vlmctl-tune is not a deployment: it is web's own container"),
        "{err}"
    );
    assert!(
        err.contains("vlmctl restore") && err.contains("vlmctl teardown web`"),
        "{err}"
    );
    assert!(!tmp.path().join("locks").exists(), "no lock taken");
}

/// `tune --only`, `--configs` and `--runs` are checked against the tune file and the plan before
/// anything else: the spec here does not exist, and is never read.
#[test]
fn tune_shortening_flags_are_checked_before_anything_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let variants = tmp.path().join("tune.toml");
    fs::write(
        &variants,
        "[[variant]]\nname = \"fa-on\"\nextra_args = [\"--flash-attn\", \"on\"]\n",
    )
    .unwrap();
    let base = |extra: &[&str]| {
        let mut c = vlmctl();
        c.args(["tune", "--spec"])
            .arg(tmp.path().join("no-such-spec.toml"))
            .arg("--plan")
            .arg(repo_file("examples/cpu-bench.toml"))
            .arg("--variants")
            .arg(&variants)
            .args(extra)
            .env("VLMCTL_STATE_DIR", tmp.path().join("state"));
        run(&mut c)
    };
    let (code, _, err) = base(&["--only", "baseline,fa-of"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("has no variant named \"fa-of\"") && err.contains("baseline, fa-on"),
        "{err}"
    );
    let (code, _, err) = base(&["--configs", "T,Z"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("has no config \"Z\"") && err.contains("A, B, C, D, E, T"),
        "{err}"
    );
    let (code, _, err) = base(&["--runs", "0"]);
    assert_eq!(code, 2, "{err}");
    // Valid ones pass the check and reach the spec, which is missing.
    let (code, _, err) = base(&["--only", "fa-on", "--configs", "T", "--runs", "1"]);
    assert_ne!(code, 2, "{err}");
    assert!(err.contains("no-such-spec.toml"), "{err}");
    assert!(!tmp.path().join("state").exists(), "{err}");
}

/// A spec that names its model by name only, run with the default lock (a forgotten
/// `--lock`): the error says so and names the lock nearby that pins it.
#[test]
fn a_forgotten_lock_is_named_with_the_lock_that_pins_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("weights.lock");
    fs::write(&lock, "version = 1\n").unwrap();
    let (code, _, err) = run(vlmctl()
        .args([
            "provision",
            "--dry-run",
            "--spec",
            "docker/cpu-test.toml",
            "--lock",
        ])
        .arg(&lock)
        .current_dir(repo_file("")));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(
            "docker/cpu-test.toml names its model \"gemma-3-270m-q4km\" by name only (no [model] \
             table)"
        ),
        "{err}"
    );
    assert!(
        err.contains("hint: pass --lock FILE that pins it; this lock pins it here: --lock examples/cpu-test.lock"),
        "{err}"
    );
    // No lock file at all: the same.
    let (code, _, err) = run(vlmctl()
        .args([
            "provision",
            "--dry-run",
            "--spec",
            "docker/cpu-test.toml",
            "--lock",
        ])
        .arg(tmp.path().join("nope.lock"))
        .current_dir(repo_file("")));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--lock examples/cpu-test.lock"), "{err}");
}

/// A bench plan given as a deployment spec is called one, not "unknown field 'configs'".
#[test]
fn a_bench_plan_given_as_a_spec_is_called_a_bench_plan() {
    let (code, _, err) = run(vlmctl()
        .args([
            "provision",
            "--dry-run",
            "--spec",
            "examples/cpu-bench.toml",
            "--lock",
            "examples/cpu-test.lock",
        ])
        .current_dir(repo_file("")));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(
            "examples/cpu-bench.toml looks like a bench plan (it has [[target]]), not a deployment spec"
        ),
        "{err}"
    );
    assert!(
        err.contains("vlmctl bench --plan examples/cpu-bench.toml"),
        "{err}"
    );
}

/// A fresh host: the hub cannot be reached (pinning fails, exit 6) and neither can Docker. The
/// error still comes with the read-only gates' table and names the other failing gates, so that
/// the user meets every problem at once, not one per run.
#[test]
fn a_provision_that_cannot_pin_still_shows_the_other_gates() {
    let tmp = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let (code, _, err) = run(vlmctl()
        .args(["provision", "--lock"])
        .arg(tmp.path().join("weights.lock"))
        .env("VLMCTL_STATE_DIR", tmp.path().join("state"))
        .env("HF_ENDPOINT", format!("http://{closed}"))
        .env(
            "DOCKER_HOST",
            format!("unix://{}", tmp.path().join("no-docker.sock").display()),
        )
        .env("HOME", tmp.path()));
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("cannot reach the Hugging Face hub"), "{err}");
    assert!(
        err.contains("the read-only gates meanwhile (what `vlmctl gates` shows):"),
        "{err}"
    );
    assert!(err.contains("GATE") && err.contains("daemon"), "{err}");
    assert!(err.contains("then the gates: daemon"), "{err}");
    assert!(!tmp.path().join("weights.lock").exists(), "nothing written");
}

/// `key new` makes a key file only its owner reads and never replaces one (exit 3); a spec
/// whose key file others may read is refused before anything starts (exit 3), naming the file
/// and the `chmod 600` that fixes it, and never showing the key.
#[test]
fn key_files_are_made_private_and_a_loose_one_is_refused_with_the_chmod_that_fixes_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("robot.key");
    let (code, out, err) = run(vlmctl().args(["key", "new", "--file"]).arg(&key_file));
    assert_eq!(code, 0, "{err}");
    let key = fs::read_to_string(&key_file).unwrap().trim().to_owned();
    assert_eq!(key.len(), 64);
    assert!(!out.contains(&key), "{out}");
    assert!(out.contains("api_key_file = "), "{out}");
    assert_eq!(
        fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, _, err) = run(vlmctl().args(["key", "new", "--file"]).arg(&key_file));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("already exists: a key file is never replaced"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&key_file).unwrap().trim(), key);

    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).unwrap();
    let spec = tmp.path().join("exposed.toml");
    let text = fs::read_to_string(repo_file("docker/cpu-test.toml"))
        .unwrap()
        .replace(
            "host = \"127.0.0.1\"",
            &format!(
                "host = \"192.0.2.10\"\napi_key_file = \"{}\"",
                key_file.display()
            ),
        )
        .replace("network = \"host\"", "network = \"host\"\nexpose = true");
    fs::write(&spec, text).unwrap();
    let (code, _, err) = run(vlmctl()
        .args(["provision", "--no-record", "--spec"])
        .arg(&spec)
        .arg("--lock")
        .arg(repo_file("examples/cpu-test.lock"))
        .env("VLMCTL_STATE_DIR", tmp.path().join("state"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "the API key file {} has mode 0644",
            key_file.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("chmod 600 {}", key_file.display())),
        "{err}"
    );
    assert!(!err.contains(&key), "{err}");
}

/// `vlmctl client` asks the running server: a deployment that does not answer is exit 5, named,
/// with what to run, never settings that may be stale.
#[test]
fn client_settings_of_a_deployment_that_does_not_answer_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let spec = tmp.path().join("cpu.toml");
    fs::write(
        &spec,
        fs::read_to_string(repo_file("docker/cpu-test.toml"))
            .unwrap()
            .replace("port = 18435", &format!("port = {port}")),
    )
    .unwrap();
    let (code, out, err) = run(vlmctl()
        .args(["client", "--spec"])
        .arg(&spec)
        .arg("--lock")
        .arg(repo_file("examples/cpu-test.lock"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"));
    assert_eq!(code, 5, "{out}\n{err}");
    assert_eq!(out, "");
    assert!(
        err.contains(&format!(
            "error: vlmctl-cpu-test does not answer at http://127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(err.contains("hint: `vlmctl status` shows whether"), "{err}");
}
