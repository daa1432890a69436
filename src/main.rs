//! The `tickler` binary: parse the command line, set up logging, run the command, and turn an
//! error into a message and an exit code. Everything else lives in the library.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use tickler::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon and manual runs log what they do; the other commands only their warnings.
    let default = match cli.command {
        Command::Run { .. } | Command::RunJob { .. } | Command::Demo => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_env("TICKLER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tickler::logging::init(filter);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tickler::cli::execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            report(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Prints an error on stderr. Unlike `eprintln!`, a closed stderr (`tickler check 2>&1 | head
/// -c 1`) is no panic: the exit status alone then tells the error.
fn report(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "error: {message}");
}
