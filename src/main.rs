//! The `pollchat` binary: parse the command line, set up logging, run the server. Everything
//! else is in the library. The load generator and the terminal client are binaries of their
//! own, beside this one: `pollchat-bench` and `pollchat-connect`.

use std::process::ExitCode;

use pollchat::cli::{Subcommand, moved_subcommand};
use pollchat::{Error, Server, config_file, logging};

fn main() -> ExitCode {
    // `pollchat bench ...` and `pollchat connect ...` were subcommands once: say where they
    // went rather than let clap call `bench` an unexpected argument. Exit status 2, as for any
    // other bad command line.
    if let Some(first) = std::env::args().nth(1)
        && let Some(binary) = moved_subcommand(&first)
    {
        eprintln!(
            "pollchat: `pollchat {first}` is now a binary of its own: {binary} (built beside \
             pollchat by `cargo build --release`; `{binary} --help` says how to use it)"
        );
        return ExitCode::from(2);
    }
    // The flags over the file --config names; clap prints a wrong command line (status 2) or
    // --help (status 0) itself, as it would without a file.
    let (cli, matches) = match config_file::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(Error::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("pollchat: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Subcommand::HashPassword) = cli.command {
        return hash_password();
    }
    if cli.print_config {
        print!("{}", config_file::print(&matches));
        return ExitCode::SUCCESS;
    }
    let mut config = cli.config();
    // SIGHUP reads the same command line over the file again (`server/reload.rs`).
    config.reload_args = cli.config.is_some().then(|| std::env::args_os().collect());
    let result = logging::init(cli.log_level, cli.log_file.as_deref())
        .and_then(|()| Server::bind(config))
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

/// `pollchat hash-password`: one line of standard input (its line ending not part of the
/// password) to its PHC string on standard output, for the `[operators]` table.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    let password = line.trim_end_matches(['\n', '\r']);
    let hashed = match read {
        Err(e) => Err(format!("cannot read standard input: {e}")),
        Ok(_) if password.is_empty() => Err("no password on standard input".to_string()),
        Ok(_) => pollchat::operators::hash_password(password),
    };
    match hashed {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("pollchat hash-password: {why}");
            ExitCode::FAILURE
        }
    }
}
