//! The robot: a client on another machine, as the runbook's Pi 5 is. A network namespace of
//! its own ("the robot") is joined to this host by a veth pair; the host's end gets an address
//! of TEST-NET-2 (198.51.100.0/24, documentation addresses that no network routes; TEST-NET-1
//! is this CI machine's own eth0 subnet), the robot's end the next one. The CPU deployment is
//! provisioned on the host's end with `expose = true` and a key file `vlmctl key new` made, and
//! the spec names the host's end by its interface's name (resolved to its address at launch);
//! the robot uses exactly the settings `provision` printed (parsed from its output): the server
//! answers with the key, 401 without it, and `vlmctl bench` run in the robot's namespace
//! (`ip netns exec`) measures it with the key from the environment. The same deployment on
//! loopback is unreachable from the robot.
//!
//! The host's end sits in this machine's namespace (not in beast's): the deployment is the local
//! CPU one, provisioned as the README's walkthrough does, without pushing the model to a second
//! Docker host; what the test proves is about the client's side of the network, which is the
//! same there. The namespace and the veth pair carry names unique to the run and are removed on
//! drop, also after a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use vlmctl_test::LabelGuard;

use crate::common::{free_port, run, vlmctl};
use crate::deploy_real::{Run, hub};

/// A network namespace joined to this host by a veth pair; removed on drop.
struct Robot {
    ns: String,
    host_if: String,
    /// The host's end (the address the server binds).
    host_ip: String,
}

impl Robot {
    /// Creates the namespace and the pair, on a free /30 of 198.51.100.0/24.
    fn new(id: &str) -> Self {
        let short: String = id.chars().filter(char::is_ascii_alphanumeric).collect();
        let short = &short[short.len().saturating_sub(8)..];
        let used = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-o", "addr", "show"])
                .output()
                .expect("ip addr")
                .stdout,
        )
        .into_owned();
        // Starting at a block of the run's own (its id ends in the clock's nanoseconds), so
        // that two runs at once (two checkouts on one machine) are unlikely to pick one block.
        let start = u32::from_str_radix(short, 16).unwrap_or(0) % 64;
        let block = (0..64_u32)
            .map(|b| (start + b) % 64 * 4)
            .find(|b| !used.contains(&format!("198.51.100.{}/", b + 1)))
            .expect("a free /30 of 198.51.100.0/24");
        let robot = Self {
            ns: format!("vlmctl-robot-{short}"),
            host_if: format!("vrh{short}"),
            host_ip: format!("198.51.100.{}", block + 1),
        };
        let robot_ip = format!("198.51.100.{}", block + 2);
        let peer = format!("vrr{short}");
        ip(&["netns", "add", &robot.ns]);
        ip(&[
            "link",
            "add",
            &robot.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &robot.ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", robot.host_ip),
            "dev",
            &robot.host_if,
        ]);
        ip(&["link", "set", &robot.host_if, "up"]);
        ip(&[
            "-n",
            &robot.ns,
            "addr",
            "add",
            &format!("{robot_ip}/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &robot.ns, "link", "set", &peer, "up"]);
        ip(&["-n", &robot.ns, "link", "set", "lo", "up"]);
        robot
    }

    /// `program` run in the robot's namespace.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// `sh -c script` in the robot's namespace with the client's settings as its environment
    /// (`env`), as a robot's service has them: the script reads them as `$NAV_VLLM_URL` etc.
    fn sh(&self, env: &[(&str, &str)], script: &str) -> (i32, String, String) {
        let mut c = self.cmd("sh");
        c.args(["-c", script])
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin");
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    }
}

impl Drop for Robot {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace goes after.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of `VAR=` on a line of its own in provision's output.
fn setting(out: &str, var: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")))
        .unwrap_or_else(|| panic!("no {var}= line in:\n{out}"))
        .to_owned()
}

/// The `client settings (...)` block of provision's (or `vlmctl client`'s) output.
fn settings_block(out: &str) -> String {
    let at = out.find("client settings (").expect("client settings");
    out[at..].trim_end().to_owned()
}

/// Done-when of issue 23, item 1: a client in another network namespace reaches an exposed CPU
/// deployment with the key and only then, using exactly the settings `provision` printed; it
/// cannot reach a loopback one.
#[tokio::test(flavor = "multi_thread")]
async fn the_robot_reaches_an_exposed_deployment_with_the_key_only_and_never_a_loopback_one() {
    let hub = hub().await;
    let r = Run::new("robot");
    let robot = Robot::new(&r.id);
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let port = free_port();
    let lock = r.write_lock();
    r.fetch(&hub, &lock);
    let (key_file, key) = new_key(&r);
    let spec = r.write_spec(&server, port, &r.name("no-conflict"), 1024);
    let loopback_text = std::fs::read_to_string(&spec).expect("spec");
    let exposed_text = loopback_text
        .replace(
            "host = \"127.0.0.1\"",
            // The host's end by its interface's name: resolved to its address at launch.
            &format!(
                "host = \"{}\"\napi_key_file = \"{}\"",
                robot.host_if,
                key_file.display()
            ),
        )
        .replace("restart = \"no\"\n", "restart = \"no\"\nexpose = true\n");
    std::fs::write(&spec, &exposed_text).expect("spec");

    let (code, out, err) = run(&mut r.cmd(&hub, &["provision"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains(&key) && !err.contains(&key), "the key leaked");
    let url = setting(&out, "NAV_VLLM_URL");
    let model = setting(&out, "NAV_VLLM_MODEL");
    let key_line = setting(&out, "NAV_VLLM_API_KEY");
    assert_eq!(url, format!("http://{}:{port}/v1", robot.host_ip));
    assert_eq!(
        model, "gemma-3-270m-q4_k_m.gguf",
        "the bare file name: {out}"
    );
    assert!(
        key_line.contains(&key_file.display().to_string()) && key_line.contains("not shown"),
        "{key_line}"
    );
    assert!(
        out.lines()
            .any(|l| l == "send it as: Authorization: Bearer $NAV_VLLM_API_KEY"),
        "{out}"
    );
    // The robot's service environment: the printed settings, the key copied from the file.
    robot_is_served_with_the_key_only(&robot, &url, &model, &key);

    // `vlmctl client` prints the same settings again for the running deployment.
    let (code, again, err) = run(&mut r.cmd(&hub, &["client"], &spec, &lock));
    assert_eq!(code, 0, "{again}\n{err}");
    assert_eq!(settings_block(&again), settings_block(&out));
    assert!(!again.contains(&key) && !err.contains(&key));

    // `vlmctl bench` on the robot, the key from its environment, the plan from the settings.
    let plan = bench_plan(&r, &url, &model);
    let from_robot = bench(&r, Some(&robot), &plan, "bench-robot", Some(&key));
    assert_eq!(
        from_robot["targets"][0]["configs"][0]["summary"]["ok"].as_u64(),
        Some(4),
        "every request answered: {from_robot}"
    );
    let from_host = bench(&r, None, &plan, "bench-host", Some(&key));
    let p50 = |doc: &serde_json::Value| {
        doc["targets"][0]["configs"][0]["summary"]["wall_ms"]["p50"].as_f64()
    };
    eprintln!(
        "robot: p50 from the robot's namespace {:?} ms, from the host {:?} ms (config T, 4 requests)",
        p50(&from_robot),
        p50(&from_host)
    );

    // The same deployment on loopback: the settings say it is for this host only, and the robot
    // reaches it neither at the printed URL nor at the host's address.
    std::fs::write(&spec, &loopback_text).expect("spec");
    let (code, out, err) = run(&mut r.cmd(&hub, &["provision"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    let local_url = setting(&out, "NAV_VLLM_URL");
    assert_eq!(local_url, format!("http://127.0.0.1:{port}/v1"));
    assert!(
        settings_block(&out).contains("only: the server listens on its loopback"),
        "{out}"
    );
    assert!(!out.contains("NAV_VLLM_API_KEY"), "{out}");
    for (u, why) in [
        (&local_url, "the robot's own loopback has no server"),
        (&url, "the host's address has no server any more"),
    ] {
        let (_, code, _) = robot.sh(
            &[("U", u)],
            r#"curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$U/models""#,
        );
        assert_eq!(code, "000", "{why}");
    }
    // The host itself still reaches it.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let (code, _, err) = run(&mut r.cmd(&hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 0, "{err}");
    key_is_nowhere_in(&r.path("state"), &key);
    let ns = robot.ns.clone();
    drop(robot);
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&ns),
        "the robot's namespace is removed"
    );
}

/// A key file made by `vlmctl key new` in the run's folder, and its key; the command never
/// prints it.
fn new_key(r: &Run) -> (PathBuf, String) {
    let key_file = r.path("robot.key");
    let (code, out, err) = run(vlmctl().args(["key", "new", "--file"]).arg(&key_file));
    assert_eq!(code, 0, "{out}\n{err}");
    let key = std::fs::read_to_string(&key_file)
        .expect("key")
        .trim()
        .to_owned();
    assert!(key.len() >= 32, "a long key");
    assert!(
        !out.contains(&key) && !err.contains(&key),
        "key new printed the key"
    );
    (key_file, key)
}

/// With the settings in its environment, the robot's requests are answered with the key (200,
/// and `/v1/models` lists the model it sends), and refused without it or with another (401).
fn robot_is_served_with_the_key_only(robot: &Robot, url: &str, model: &str, key: &str) {
    let env = [
        ("NAV_VLLM_URL", url),
        ("NAV_VLLM_MODEL", model),
        ("NAV_VLLM_API_KEY", key),
    ];
    let chat = r#"curl -s -o /dev/null -w '%{http_code}' "$NAV_VLLM_URL/chat/completions" \
        -H 'Content-Type: application/json' -d "{\"model\": \"$NAV_VLLM_MODEL\", \"max_tokens\": 2, \
        \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}""#;
    let (_, code, err) = robot.sh(
        &env,
        &format!("{chat} -H \"Authorization: Bearer $NAV_VLLM_API_KEY\""),
    );
    assert_eq!(code, "200", "with the key: {err}");
    let (_, code, _) = robot.sh(&env, chat);
    assert_eq!(code, "401", "without the key");
    let (_, code, _) = robot.sh(
        &env,
        &format!("{chat} -H 'Authorization: Bearer not-the-key'"),
    );
    assert_eq!(code, "401", "with another key");
    let (_, models, err) = robot.sh(
        &env,
        r#"curl -sf "$NAV_VLLM_URL/models" -H "Authorization: Bearer $NAV_VLLM_API_KEY""#,
    );
    let models: serde_json::Value =
        serde_json::from_str(&models).unwrap_or_else(|_| panic!("{models}\n{err}"));
    assert_eq!(models["data"][0]["id"], model, "{models}");
}

/// A bench plan built from the printed settings: the server's base URL (`NAV_VLLM_URL` less
/// its `/v1`), the model, and the key from `NAV_VLLM_API_KEY`; config T, 4 requests.
fn bench_plan(r: &Run, url: &str, model: &str) -> PathBuf {
    let plans = r.path("plans");
    crate::serve_real::frame_and_prompts_into(&plans);
    let base = url
        .strip_suffix("/v1")
        .expect("an OpenAI base URL ends in /v1");
    let plan = plans.join("robot.toml");
    std::fs::write(
        &plan,
        format!(
            "version = 1\nruns = 4\nwarmup = 1\nmax_tokens = 8\ndescribe = false\n\
             image = \"camera.png\"\nconfigs = [\"T\"]\n[[target]]\nname = \"robot\"\n\
             url = \"{base}\"\nmodel = \"{model}\"\napi_key_env = \"NAV_VLLM_API_KEY\"\n"
        ),
    )
    .expect("plan");
    plan
}

/// `vlmctl bench` of `plan` (in the robot's namespace when given one), `key` in
/// `NAV_VLLM_API_KEY`: its results.json. Without a key the bench must fail (`Null`).
fn bench(
    r: &Run,
    robot: Option<&Robot>,
    plan: &Path,
    dir: &str,
    key: Option<&str>,
) -> serde_json::Value {
    let template = vlmctl();
    let mut c = match robot {
        Some(robot) => robot.cmd(template.get_program()),
        None => Command::new(template.get_program()),
    };
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.args(["bench", "--no-record", "--plan"])
        .arg(plan)
        .arg("--out")
        .arg(r.path(dir));
    if let Some(key) = key {
        c.env("NAV_VLLM_API_KEY", key);
    }
    let (code, out, err) = run(&mut c);
    let Some(key) = key else {
        assert_ne!(code, 0, "a bench without the key must fail: {err}");
        return serde_json::Value::Null;
    };
    assert_eq!(code, 0, "bench ({dir}): {out}\n{err}");
    assert!(
        !out.contains(key) && !err.contains(key),
        "bench printed the key"
    );
    // Without the key the same bench from the same place measures nothing.
    bench(r, robot, plan, &format!("{dir}-keyless"), None);
    serde_json::from_slice(&std::fs::read(r.path(dir).join("results.json")).expect("results"))
        .expect("results.json")
}

/// No file under `dir` (records, journals, the history) holds the key.
fn key_is_nowhere_in(dir: &Path, key: &str) {
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(key),
                    "the key is in {}",
                    p.display()
                );
            }
        }
    }
}
