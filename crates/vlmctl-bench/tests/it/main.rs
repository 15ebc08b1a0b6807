//! Integration tests of the bench instrument: (feature `fake-server`) the scripted fake server
//! (`vlmctl_bench::fake_server`, faithful to llama-server's SSE and Ollama's NDJSON) for every
//! failure the instrument must count exactly, and (feature `test-env`, which turns `fake-server`
//! on) the real llama-server with the Gemma 3 270M GGUF and headless Chromium for the HTML report.
//! The report snapshots need neither.

#[cfg(feature = "test-env")]
mod browser;
mod connections;
#[cfg(feature = "fake-server")]
mod fakes;
#[cfg(feature = "test-env")]
mod real;
mod reports;
#[cfg(feature = "fake-server")]
mod sweep;
