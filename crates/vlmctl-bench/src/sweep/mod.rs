//! The rate sweep: the highest open-loop rate at which the plan's `[slo]` holds.
//!
//! - [`SweepSpec`]: the plan's `[sweep]` table (or `--sweep-rate LO:HI`, a [`RateRange`]),
//!   defined with the plan ([`crate::plan`]).
//! - [`next`] (`search`): the pure search. Geometric steps from `min_hz` (× `factor`) up to `max_hz`
//!   until a step fails, then bisection (geometric mean) between the highest passing and the
//!   lowest failing rate until they are within `precision` of each other, or `max_steps` ran.
//! - [`run()`] (`run`): each step is an open-loop run of one config at that rate (the plan's arrivals
//!   and seed), its first requests discarded as warm-up, checked against the SLO; a step that
//!   fails badly is cut short ([`StopRule`]). It gives [`SweepResult`]s, stored in
//!   `results.json` under `sweep` ([`crate::results`]).
//! - [`crate::report::sweep`]: the verdict line and the table of steps (terminal, Markdown,
//!   HTML); [`SweepResult::series`] is the latency-versus-rate curve for a chart.
//!
//! **Warm-up.** Before the first step, the plan's `warmup` requests (at least one) go one at a
//! time, unmeasured: a cold server's first answers cost seconds that no rate should be charged
//! for. Before every later step one such request waits out what the previous step left queued
//! in the server (seen on the CPU llama-server: after an early stop, the next two steps failed
//! without a single answer).
//!
//! **Step length.** A step sends `max(MIN_REQUESTS, rate × step_s)` requests (or
//! `requests_per_step`) and discards the first tenth (at least [`MIN_WARMUP`]). An overloaded
//! open loop shows itself as a queue that grows request after request, so a step must be long
//! enough for that growth to reach the bound: at a rate 1 % above a capacity of `c`, each
//! request waits `0.01 / c` longer than the one before, and over 100 requests that is a whole
//! service time. [`MIN_REQUESTS`] (40) keeps the nearest-rank p95 off the single slowest request
//! (36 measured: the p95 is the 35th), and 5 s keeps slow rates from ending before the server's
//! caches and batches settle.
//!
//! **Early stop.** A latency bound at percentile `p` over `n` requests fails for certain once
//! more than `n - ceil(p n / 100)` of them are slower than it. A step stops as soon as that many
//! measured requests have failed or taken more than three times the deciding bound — counting
//! requests still in flight past that age — instead of queueing for minutes behind a server
//! that cannot keep up. Requests still in flight are then dropped; those past the age are kept
//! as `timeout` samples (their wall time is their age when the step stopped), so the step's
//! percentiles do not forget them.

mod run;
mod search;

pub use run::{SweepEvent, run};
pub use search::{
    BAD_FACTOR, KEEPS_UP, MAX_REQUESTS, MIN_REQUESTS, MIN_WARMUP, Next, StopRule, keeps_up, next,
};

/// The sweep's types, where they were before they moved beside the plan and the results
/// (callers import them from here).
pub use crate::plan::{
    DEFAULT_FACTOR, DEFAULT_MAX_STEPS, DEFAULT_PRECISION, DEFAULT_STEP_S, RateRange, SweepSpec,
};
/// The renderers, where they were before they moved to [`crate::report::sweep`].
pub use crate::report::sweep::{html, hz_text, markdown, table};
pub use crate::results::{RatePoint, SweepResult, SweepStep, SweepVerdict};
