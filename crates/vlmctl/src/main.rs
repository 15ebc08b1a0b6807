//! The `vlmctl` binary: everything lives in the library so it can be tested.
use std::process::ExitCode;

fn main() -> ExitCode {
    vlmctl::run(std::env::args_os())
}
