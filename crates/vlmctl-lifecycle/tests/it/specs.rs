//! The shipped specs in docker/ parse, and say what the runbooks need.

use std::path::Path;

use vlmctl_lifecycle::spec::{Gpus, Spec};

fn load(name: &str) -> Spec {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docker")
        .join(name);
    match Spec::load(&p) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn shipped_specs_parse_and_bind_loopback() {
    let panda = load("panda-llamacpp.toml");
    assert_eq!((panda.server.port, panda.gpus.clone()), (11435, Gpus::All));
    assert_eq!(load("panda-e4b.toml").server.port, 11437);
    let beast = load("beast-e4b.toml");
    assert_eq!(beast.platform, "linux/arm64");
    assert_eq!(beast.conflicts, ["vllm-nemotron-super"]);
    // CUDA 13: the first published build with kernels for the GB10's compute capability 12.1.
    assert!(beast.image.ends_with(":server-cuda13"), "{}", beast.image);
    assert_eq!(load("cpu-test.toml").gpus, Gpus::None);
    for s in [
        "panda-llamacpp.toml",
        "panda-e4b.toml",
        "beast-e4b.toml",
        "cpu-test.toml",
    ] {
        assert_eq!(load(s).server.host, "127.0.0.1", "{s}");
        assert!(load(s).server.jinja, "{s}");
    }
}
