//! The `tickler` binary: parse the command line, set up logging, run the command, and turn an
//! error into a message and an exit code. Everything else lives in the library.

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
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tickler::cli::execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
