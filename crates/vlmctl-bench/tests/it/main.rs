//! Integration tests of the bench instrument: scripted fake servers faithful to the
//! `OpenAI` (SSE) and Ollama (NDJSON) protocols for every failure the instrument must count exactly, and
//! (feature `test-env`) the real llama-server with the Gemma 3 270M GGUF.

mod fakes;
#[cfg(feature = "test-env")]
mod real;
mod reports;
