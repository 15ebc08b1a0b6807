//! The benchmark instrument behind `vlmctl bench`.
//!
//! - [`plan::LoadedPlan`]: a plan (targets, configs A-E/T, runs, warm-up, load) with its prompts
//!   and camera image, hashed; a pinned image that differs is refused. [`plan::Plan::parse`]
//!   checks every value against its range and names the offending key's line.
//! - [`client`]: the OpenAI-compatible (`/v1/chat/completions`, SSE) and Ollama (`/api/chat`,
//!   NDJSON) protocols, timed on a monotonic clock; TTFT from the first non-empty delta.
//! - [`schema::NavSchema`]: the nav answer check (strategies 1/2 pass, 3 is a miss).
//! - [`stats`]: nearest-rank percentiles, bootstrap intervals, the 36 Hz bands.
//! - [`slo::Slo`]: the plan's service-level objectives; [`slo::evaluate`] checks a config
//!   against them and counts its goodput.
//! - [`preflight::check`]: each target answers `/health` (or `/v1/models`, `/api/tags`) within
//!   seconds, before a run that would otherwise spend a timeout on every request.
//! - [`charts`]: the HTML report's charts as inline SVG, drawn by `plotters`.
//! - [`sweep::run`] finds the highest open-loop rate at which the SLO holds (steps, then
//!   bisection; [`sweep::next`] is the pure search) into [`run::Results::sweep`].
//! - [`run::run`] produces [`run::Results`] (versioned JSON with raw samples; summaries are
//!   recomputable with [`run::summarize`]); [`report`] renders them; [`compare`] applies the
//!   runbook's rule to two runs ([`compare::verdict`]).
//! - `fake_server` (feature `fake-server`) is an in-process llama-server / Ollama for tests,
//!   scripted per request.
//! - [`text`]: text from outside made safe for a terminal ([`text::printable`]) and for
//!   Markdown ([`text::markdown`]).
//!
//! This crate never talks to Docker: it measures whatever server a plan points at.

pub mod charts;
pub mod client;
pub mod compare;
mod error;
#[cfg(feature = "fake-server")]
pub mod fake_server;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod run;
pub mod schema;
pub mod slo;
pub mod stats;
pub mod sweep;
pub mod text;

pub use error::BenchError;

/// Reads a results file: [`parse_results`] of its bytes.
///
/// # Errors
/// [`BenchError::Read`] when it cannot be read, else as [`parse_results`].
pub fn load_results(path: &std::path::Path) -> Result<run::Results, BenchError> {
    let bytes = std::fs::read(path).map_err(|source| BenchError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_results(&bytes, path)
}

/// A results file's `bytes` (read from `path`, which errors name) as [`run::Results`]: JSON
/// of this format, whose latencies are all plausible ([`run::Results::validate`]). A summary
/// stored with `null` figures (an overflowed mean, as an earlier vlmctl wrote) is recomputed
/// from its samples ([`run::Results::repair_summaries`]). What `bench compare`, `--baseline`
/// and `runs import` read with.
///
/// # Errors
/// [`BenchError::BadResults`] for what is not a results file of this format,
/// [`BenchError::ImplausibleResults`] for a latency no request could have had.
pub fn parse_results(bytes: &[u8], path: &std::path::Path) -> Result<run::Results, BenchError> {
    let mut r: run::Results =
        serde_json::from_slice(bytes).map_err(|e| BenchError::BadResults {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    if r.format != run::FORMAT {
        return Err(BenchError::BadResults {
            path: path.to_owned(),
            why: format!("format {:?}, expected {:?}", r.format, run::FORMAT),
        });
    }
    r.repair_summaries();
    r.validate(path)?;
    Ok(r)
}

/// Standard base64 (for images in requests).
#[must_use]
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
