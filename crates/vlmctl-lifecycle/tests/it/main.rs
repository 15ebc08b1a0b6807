//! Integration tests. `specs` and `nvidia_smi` need nothing; the rest run against the real
//! components `scripts/test` sets up (dockerd, a `docker-registry` on 127.0.0.1, the
//! `vlmctl-test/llama-server:cpu` image, the Gemma 3 270M GGUF, a static busybox) and are
//! compiled only with the `test-docker` feature; with it on, a missing component is a failure
//! that names the variable to set, never a skip.
#![cfg_attr(
    feature = "test-docker",
    expect(
        clippy::print_stderr,
        reason = "tests report timings and cleanup problems on stderr"
    )
)]

#[cfg(feature = "test-docker")]
mod common;
mod engine_answers;
#[cfg(feature = "test-docker")]
mod environment;
#[cfg(feature = "test-docker")]
mod exported;
#[cfg(feature = "test-docker")]
mod lifecycle;
mod nvidia_smi;
#[cfg(feature = "test-docker")]
mod registry;
#[cfg(feature = "test-docker")]
mod sessions;
mod specs;
