//! Logging set-up: `log` macros everywhere, `simplelog` behind them, to the terminal (stderr)
//! and optionally a file.
//!
//! Levels mean something: `info` for what an operator wants in the log of a healthy server
//! (listening, connects, disconnects with their reason, shutdown), `warn` for limits hit
//! (server full, too slow, line too long, flood control, out of descriptors), `debug` for
//! details of the loop, `trace` for every line relayed, with its token, so a trace replays
//! a line's journey through the loop.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;

use log::LevelFilter;
use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};

use crate::error::Error;

pub fn init(level: LevelFilter, file: Option<&Path>) -> Result<(), Error> {
    let mut builder = ConfigBuilder::new();
    builder
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        // mio traces its own registrations; ours already say what the loop is doing.
        .add_filter_ignore_str("mio");
    // An RFC 3339 timestamp (UTC) reads the same in every time zone and sorts as text.
    let config = builder.set_time_format_rfc3339().build();
    // simplelog's `ColorChoice::Auto` looks only at $TERM, so it would write colour codes
    // into a redirected log; ask whether stderr really is a terminal.
    let colour = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![TermLogger::new(
        level,
        config.clone(),
        TerminalMode::Stderr,
        colour,
    )];
    if let Some(path) = file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::LogFile {
                path: path.to_path_buf(),
                source,
            })?;
        loggers.push(WriteLogger::new(level, config, file));
    }
    // Fails only if a logger is already installed (a second call), which is harmless.
    let _ = CombinedLogger::init(loggers);
    Ok(())
}
