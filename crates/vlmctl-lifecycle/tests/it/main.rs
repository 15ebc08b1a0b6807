//! Integration tests against the real components `scripts/test` sets up: dockerd, a
//! `docker-registry` on 127.0.0.1, the `vlmctl-test/llama-server:cpu` image and the Gemma 3 270M
//! GGUF. Compiled only with the `test-docker` feature; with it on, a missing component is a
//! failure that names the variable to set, never a skip.
#![cfg(feature = "test-docker")]
#![expect(
    clippy::print_stderr,
    reason = "tests report timings and cleanup problems on stderr"
)]

mod common;
mod environment;
mod registry;
