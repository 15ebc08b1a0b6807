//! The jobs run from the library, as a service or a sweep would run them: events collected
//! from a sink and asserted in order, a confirmation answered by code, a cancel at a chosen
//! event. Against the real dockerd, the local llama-server image and the real Gemma 3 270M
//! GGUF served by the fake hub (feature `test-env`, set up by `scripts/test`).
#![cfg(feature = "test-env")]

mod jobs;
