//! Exit codes, documented in docs/reference.md ("Exit codes", checked against this file by a
//! test). Scripts may rely on them.

/// Everything asked for was done and every check passed.
pub const SUCCESS: u8 = 0;
/// An unexpected failure (a bug, or an error without a better code).
pub const FAILURE: u8 = 1;
/// The command line is wrong (clap's own code for usage errors).
pub const USAGE: u8 = 2;
/// An input file (lock, spec, plan) is malformed or names something that does not exist.
pub const INVALID_INPUT: u8 = 3;
/// Weights verification ran and at least one file failed it.
pub const VERIFY_FAILED: u8 = 4;
/// The environment is not usable: Docker daemon unreachable, a file unreadable, a bench target
/// that does not answer its check before the run (or whose host cannot be reached, or whose
/// deployment is not running).
pub const ENVIRONMENT: u8 = 5;
/// The Hugging Face hub could not be used: unreachable, refused (401/403), not found (404),
/// failing (5xx), or the transfer broke off (re-running resumes).
pub const HUB: u8 = 6;
/// A gate failed (`gates`, `provision`; also a "no" at the stop prompt, Gate 1 answered no):
/// nothing was changed.
pub const GATE_FAILED: u8 = 7;
/// The server did not come up right: launch, readiness, smoke request or memory ceiling.
/// Anything stopped for it was restored.
pub const SERVER: u8 = 8;
/// `bench compare` found a config that needs investigating (p50 change > 20 % or schema pass
/// rate < 95 %).
pub const INVESTIGATE: u8 = 9;
/// Another vlmctl command holds the deployment's lock (`provision`, `relaunch`, `teardown`,
/// `restore`); nothing was done. `--wait` waits for it instead.
pub const BUSY: u8 = 10;
/// `tune` could not verify that the deployment's original container is back as it was (the
/// same container id, running if it ran, healthy): it was removed, replaced, or did not come
/// back up during or after the tune. The table and `--out` files were written; look at the
/// deployment before anything else.
pub const ORIGINAL_NOT_BACK: u8 = 11;
/// A container vlmctl started again (a conflict restored by `teardown`, `restore`, or the undo
/// of a failed or interrupted run) is not proven alive: it is not running, its Docker health
/// check is not healthy, or the spec's `[[conflict]]` check (HTTP probe or command) did not
/// pass within its `check_timeout_s`. Every other restore was still done; the failure is kept
/// in the journal and shown by `status` until `vlmctl restore` finds it alive.
pub const CONFLICT_NOT_ALIVE: u8 = 12;
/// Interrupted by a signal (SIGINT/Ctrl-C, SIGTERM, SIGHUP, SIGQUIT) during provision or
/// relaunch; what the run had done (stopped containers, a half-started server) was undone.
/// During bench's requests: nothing written, the run recorded `interrupted` in the history.
/// During `tune`: the variants measured by then are shown, written (`--out`) and recorded, and
/// the original is put back.
pub const INTERRUPTED: u8 = 130;
