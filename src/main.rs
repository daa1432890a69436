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
            report(&causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by ": " as `{:#}` joins them, but without a cause whose
/// text is already in the message: sqlx's errors (and ours wrapping them) print their source
/// in their own text, so `{:#}` said a failed migration's reason four times over.
fn causes(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Prints an error on stderr. Unlike `eprintln!`, a closed stderr (`tickler check 2>&1 | head
/// -c 1`) is no panic: the exit status alone then tells the error.
fn report(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "error: {message}");
}
