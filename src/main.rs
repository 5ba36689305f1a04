//! The `qasid` binary: parse arguments, run the command, map the outcome to an exit code.
//!
//! Exit codes (documented in docs/FORMAT.md): 0 ok, 1 runtime error, 2 usage or bad input,
//! 3 verification failed.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    let (args, output) = cli::parse();
    cli::init_logging(&args);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(&output),
    }
}
