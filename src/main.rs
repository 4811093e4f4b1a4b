//! The `pollchat` binary: parse the command line, set up logging, run the server. Everything
//! else is in the library.

use std::process::ExitCode;

use clap::Parser;
use pollchat::config::Cli;
use pollchat::{Server, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = logging::init(cli.log_level, cli.log_file.as_deref())
        .and_then(|()| Server::bind(cli.config()))
        .and_then(Server::run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One sentence for the operator; no panic, no backtrace.
        Err(e) => {
            eprintln!("pollchat: {e}");
            ExitCode::FAILURE
        }
    }
}
