//! The `pollchat` binary: parse the command line, set up logging, run the server (or the
//! load generator, or the terminal client). Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use pollchat::cli::{Cli, Command};
use pollchat::{Server, bench, client, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Connect(args)) = &cli.command {
        // The session's one line on stderr (why it ended), and a status that says the same
        // to scripts; `pollchat connect --help` lists them.
        let outcome = client::run(args);
        if let Some(message) = outcome.message() {
            eprintln!("pollchat: {message}");
        }
        return ExitCode::from(outcome.exit_code());
    }
    if let Some(Command::Bench(args)) = &cli.command {
        return match bench::report(args) {
            Ok((text, passed)) => {
                print!("{text}");
                if passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("pollchat bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = logging::init(cli.log_level, cli.log_file.as_deref())
        .and_then(|()| Server::bind(cli.config()))
        .and_then(Server::run);
    // What the loop could not write without waiting, and anything logged before it ran.
    logging::flush_on_exit();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One sentence for the operator; no panic, no backtrace.
        Err(e) => {
            eprintln!("pollchat: {e}");
            ExitCode::FAILURE
        }
    }
}
