//! Integration tests of fetching and adopting, against the in-process fake hub (which imitates
//! huggingface.co's HTTP; see `vlmctl_weights::fake_hub`). Built with the `fake-hub` feature;
//! the `real` module also needs `test-env` (the real GGUF and Python's `huggingface_hub` that
//! `scripts/test` provides).
#![cfg(feature = "fake-hub")]

mod common;
mod fetch;
mod hostile;
#[cfg(feature = "test-env")]
mod real;
