//! The `pollchat` binary: parse the command line, set up logging, run the server (or the
//! load generator). Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use pollchat::config::{Cli, Command};
use pollchat::{Server, bench, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Bench(args)) = &cli.command {
        return match bench::run(args) {
            Ok(report) if args.json => {
                println!("{}", report.json());
                ExitCode::SUCCESS
            }
            Ok(report) => {
                print!("{}", report.summary());
                ExitCode::SUCCESS
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
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One sentence for the operator; no panic, no backtrace.
        Err(e) => {
            eprintln!("pollchat: {e}");
            ExitCode::FAILURE
        }
    }
}
