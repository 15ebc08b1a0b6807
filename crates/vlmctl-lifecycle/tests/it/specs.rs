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

/// The memory fields and conflicts as the runbooks use them (issue #23 part 4): free before
/// launch, the floor of the server's footprint and its ceiling kept apart.
#[test]
fn shipped_specs_encode_the_runbooks_memory_and_conflicts() {
    use vlmctl_lifecycle::spec::{ConflictCheck, RestoreWhen};
    // Beast: no lower band (seed 000 line 82), the 8 GB ceiling (line 81), nemotron restarted
    // only when the user confirms (line 34).
    let beast = load("beast-e4b.toml");
    assert_eq!(beast.memory.min_process_mib, Some(0));
    assert_eq!(beast.memory.max_process_mib, Some(8192));
    assert_eq!(
        beast.conflict_rule("vllm-nemotron-super").restore,
        RestoreWhen::Ask
    );
    // Panda E4B: the 5.5 GB floor, free memory that ~2.2 GB + Chatterbox's 3.6 GB covers, and
    // Chatterbox stopped before and restored after, probed on its port.
    let e4b = load("panda-e4b.toml");
    assert_eq!(e4b.memory.min_process_mib, Some(5500));
    assert!(e4b.memory.need_free_mib.is_some_and(|n| n <= 2200 + 3654));
    assert_eq!(e4b.memory.max_process_mib, Some(8192));
    assert_eq!(e4b.conflicts, ["chatterbox"]);
    let chatterbox = e4b.conflict_rule("chatterbox");
    assert_eq!(chatterbox.restore, RestoreWhen::Always);
    assert_eq!(
        chatterbox.check,
        Some(ConflictCheck::Http {
            url: "http://127.0.0.1:8772/health".into(),
            status: 200
        })
    );
    // Panda E2B: a ceiling that catches the 6.25 GB "4-bit that isn't" footprint and keeps to
    // the 4.6 GB budget beside the voice pipeline (seed 001 lines 62, 268-269).
    let e2b = load("panda-llamacpp.toml");
    assert!(e2b.memory.max_process_mib.is_some_and(|m| m <= 4600));
    assert_eq!(e2b.memory.need_free_mib, Some(4000));
    assert!(e2b.conflicts.is_empty());
}
