//! The benchmark instrument behind `vlmctl bench`.
//!
//! Types at the bottom, behaviour above (no module imports one that imports it back; checked
//! by the CLI's `module_cycles` test):
//! - [`plan`]: the plan's types (targets, configs A-E/T, runs, warm-up, load, [`plan::Slo`],
//!   [`plan::SweepSpec`]); [`plan::Plan::parse`] checks every value against its range and names
//!   the offending key's line; [`plan::LoadedPlan`] reads its prompts and camera image, hashed
//!   (a pinned image that differs is refused).
//! - [`results`]: the results file's types (versioned JSON with raw samples), plain serde data.
//! - [`client`]: the OpenAI-compatible (`/v1/chat/completions`, SSE) and Ollama (`/api/chat`,
//!   NDJSON) protocols, timed on a monotonic clock; TTFT from the first non-empty delta.
//! - [`schema::NavSchema`]: the nav answer check (strategies 1/2 pass, 3 is a miss).
//! - [`stats`]: nearest-rank percentiles, bootstrap intervals, the 36 Hz bands.
//! - [`slo::evaluate`] checks a config against the plan's service-level objectives and counts
//!   its goodput; [`summary::summarize`] computes a config's figures from its samples.
//! - [`preflight::check`]: each target answers `/health` (or `/v1/models`, `/api/tags`) within
//!   seconds, before a run that would otherwise spend a timeout on every request.
//! - [`sweep::run`] finds the highest open-loop rate at which the SLO holds (steps, then
//!   bisection; [`sweep::next`] is the pure search) into [`results::Results::sweep`].
//! - [`run::run`] produces [`results::Results`]; [`report`] renders them (terminal, Markdown,
//!   HTML with [`report::charts`] as inline SVG drawn by `plotters`, a sweep's table); [`compare`]
//!   applies the runbook's rule to two runs ([`compare::verdict`]).
//! - `fake_server` (feature `fake-server`) is an in-process llama-server / Ollama for tests,
//!   scripted per request.
//! - [`text`]: text from outside made safe for a terminal ([`text::printable`]) and for
//!   Markdown ([`text::markdown`]).
//!
//! This crate never talks to Docker: it measures whatever server a plan points at.

pub mod client;
pub mod compare;
mod error;
#[cfg(feature = "fake-server")]
pub mod fake_server;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod results;
pub mod run;
pub mod schema;
pub mod slo;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod text;

pub use error::BenchError;
/// The charts moved under [`report`]; kept at their old path for callers.
pub use report::charts;

/// The largest results file read: 256 MiB (100,000 samples per config take about 26 MB).
pub const MAX_RESULTS_BYTES: u64 = 256 << 20;

/// Reads a results file: a regular file (a link to one is followed) of at most
/// [`MAX_RESULTS_BYTES`]; a device, a FIFO, a socket or a folder is refused without being read.
/// Then [`parse_results`] of its bytes.
///
/// # Errors
/// [`BenchError::Read`] when it cannot be read, else as [`parse_results`].
pub fn load_results(path: &std::path::Path) -> Result<results::Results, BenchError> {
    let bytes = vlmctl_files::read_regular(path, MAX_RESULTS_BYTES, "a results file").map_err(
        |source| match vlmctl_files::refusal(&source) {
            // What is not a results file is bad input (as before), not an unreadable file.
            Some(refused) => BenchError::BadResults {
                path: path.to_owned(),
                why: refused.to_string(),
            },
            None => BenchError::Read {
                path: path.to_owned(),
                source,
            },
        },
    )?;
    parse_results(&bytes, path)
}

/// A results file's `bytes` (read from `path`, which errors name) as [`results::Results`]: JSON
/// of this format, whose latencies are all plausible ([`results::Results::validate`]). A summary
/// stored with `null` figures (an overflowed mean, as an earlier vlmctl wrote) is recomputed
/// from its samples ([`results::Results::repair_summaries`]). What `bench compare`, `--baseline`
/// and `runs import` read with.
///
/// # Errors
/// [`BenchError::BadResults`] for what is not a results file of this format,
/// [`BenchError::ImplausibleResults`] for a latency no request could have had.
pub fn parse_results(bytes: &[u8], path: &std::path::Path) -> Result<results::Results, BenchError> {
    let mut r: results::Results =
        serde_json::from_slice(bytes).map_err(|e| BenchError::BadResults {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    if r.format != results::FORMAT {
        return Err(BenchError::BadResults {
            path: path.to_owned(),
            why: format!("format {:?}, expected {:?}", r.format, results::FORMAT),
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

#[cfg(test)]
mod read_tests {
    use super::*;

    /// `load_results(p)` must refuse, within seconds, as bad results with `needle` in its
    /// error.
    fn refused(p: &std::path::Path, needle: &str) {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = p.to_owned();
        // On a thread: a read that blocks (a FIFO) fails the test instead of hanging it.
        std::thread::spawn(move || {
            let _ = tx.send(load_results(&path).map(|_| ()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{}: still reading after 10 s", p.display()));
        let e = got.expect_err("refused");
        assert!(matches!(e, BenchError::BadResults { .. }), "{e:?}");
        let text = format!("{e} {e:?}");
        assert!(text.contains(needle), "{text}");
    }

    /// The results file goes through the one bounded reader (`vlmctl_files`, whose own tests
    /// cover links, growth and the size bound); its refusals are bad results, not unreadable
    /// files.
    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let tmp = tempfile::tempdir().expect("tmp");
        // A FIFO with no writer: refused at once instead of blocking.
        let fifo = tmp.path().join("fifo.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        refused(&fifo, "a FIFO");
        refused(tmp.path(), "a folder");
        let sparse = tmp.path().join("sparse.json");
        std::fs::File::create(&sparse)
            .and_then(|f| f.set_len(MAX_RESULTS_BYTES + 1))
            .expect("sparse");
        refused(&sparse, "more than the 256 MiB a results file may have");
        // A link to a device: refused, not read (it would never end).
        let zero = tmp.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("link");
        refused(&zero, "a character device");
    }
}
