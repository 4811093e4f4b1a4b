//! `--config FILE` and `--print-config`: the server's settings from a TOML file, and back.
//!
//! The file's keys are the flags' long names (`max-clients = 500`, `bind = ["[::1]:7878"]`,
//! `quiet-joins = true`), and clap itself checks each value, so a key takes exactly what its
//! flag takes and a new flag is a new key with nothing to add here. Each key becomes its flag
//! (`--max-clients=500`) placed before the real command line, unless the command line gives
//! that flag itself: flags win over the file, the file over the defaults. Every refusal is one
//! sentence naming the file, the line, the key and why.

use std::error::Error as _;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};

use crate::Error;
use crate::cli::Cli;
use crate::error::describe;

/// Largest file read. Settings take a few kilobytes; a bigger file is the wrong file (a log, a
/// disk image), refused before it costs memory or parsing time.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Flags that say what to do with the settings rather than being settings.
const NOT_SETTINGS: [&str; 4] = ["config", "print-config", "help", "version"];

/// The command line `args` (program name first) over the file its `--config` names: the
/// parsed flags, and the matches `--print-config` prints from.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<(Cli, ArgMatches), Error> {
    let args: Vec<OsString> = args.into_iter().collect();
    // A first pass only to find --config and the flags given: `requires` may be met by the file.
    let given = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .map_err(Error::Usage)?;
    let mut merged = args[..1.min(args.len())].to_vec();
    let path = given.get_one::<PathBuf>("config");
    if let Some(path) = path {
        for (id, flags) in file_flags(path)? {
            if given.value_source(&id) != Some(ValueSource::CommandLine) {
                merged.extend(flags);
            }
        }
    }
    merged.extend(args.into_iter().skip(1));
    let matches = Cli::command()
        .try_get_matches_from(merged)
        .map_err(|e| match path {
            // clap's usage line would list the file's keys as flags: one sentence instead, such
            // as a tls-cert in the file without tls-key anywhere.
            Some(path) if e.use_stderr() => {
                let text = e.to_string();
                let first = text.split("\n\n").next().unwrap_or_default();
                let first = first.trim_start_matches("error: ").split_whitespace();
                let why = first.collect::<Vec<_>>().join(" ");
                Error::Config(format!(
                    "config file {} with the flags given: {why}",
                    path.display()
                ))
            }
            _ => Error::Usage(e),
        })?;
    Ok((
        Cli::from_arg_matches(&matches).map_err(Error::Usage)?,
        matches,
    ))
}

/// Each key of the file at `path` as its flag's id and the flags that say the same, checked
/// by clap one key at a time in the file's order.
fn file_flags(path: &Path) -> Result<Vec<(String, Vec<OsString>)>, Error> {
    let refuse = |line: Option<usize>, why: String| {
        let at = line.map(|n| format!(", line {n}")).unwrap_or_default();
        Error::Config(format!("config file {}{at}: {why}", path.display()))
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| refuse(None, format!("cannot be read: {}", describe(&e))))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        let why = "is over 1 MiB, too big for a config file (is it the right file?)";
        return Err(refuse(None, why.into()));
    }
    let line_at = |offset: usize| 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        let why = "has a NUL byte, which a text file does not (is it the right file?)";
        return Err(refuse(Some(line_at(at)), why.into()));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| refuse(Some(line_at(e.valid_up_to())), "is not UTF-8 text".into()))?;
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|span| line_at(span.start));
        let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        refuse(line, format!("is not valid TOML: {message}"))
    })?;
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let command = Cli::command();
    let mut flags = Vec::new();
    for (key, value) in entries {
        let line = Some(line_at(key.span().start));
        let name = key.get_ref().as_ref();
        let shown = text.get(value.span()).unwrap_or_default();
        let flag =
            flag_of(&command, name, value.get_ref(), shown).map_err(|why| refuse(line, why))?;
        flags.push(flag);
    }
    Ok(flags)
}

/// One key as its flag's id and the flags that say the same (`shown` is the value as the file
/// writes it), or why it is refused.
fn flag_of(
    command: &clap::Command,
    name: &str,
    value: &DeValue,
    shown: &str,
) -> Result<(String, Vec<OsString>), String> {
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(name) && !NOT_SETTINGS.contains(&name))
        .ok_or_else(|| format!("unknown key {name} (`pollchat --print-config` lists them)"))?;
    let texts = texts(arg.get_action(), value).map_err(|(wanted, kind)| {
        let a = if kind.starts_with(['a', 'i']) {
            "an"
        } else {
            "a"
        };
        format!("{name} takes {wanted}, not {a} {kind}")
    })?;
    let flag = |text: &String| match arg.get_action() {
        ArgAction::SetTrue => OsString::from(format!("--{name}")),
        _ => OsString::from(format!("--{name}={text}")),
    };
    let these: Vec<OsString> = texts.iter().map(flag).collect();
    // The flag alone on a command line: clap's value check, without the other flags'
    // `requires` (which the rest of the file may meet).
    let alone = [OsString::from("pollchat")]
        .into_iter()
        .chain(these.clone());
    if let Err(e) = Cli::command().try_get_matches_from(alone)
        && matches!(
            e.kind(),
            ErrorKind::ValueValidation | ErrorKind::InvalidValue
        )
    {
        let why = e
            .source()
            .map_or_else(|| e.kind().to_string(), |s| s.to_string());
        return Err(format!("{name} = {shown} is refused: {why}"));
    }
    Ok((arg.get_id().to_string(), these))
}

/// A value as the flag's texts, or what the flag takes and the type found instead. A flag
/// without a value is `true` (given) or `false`; a repeatable one takes one value or an array.
fn texts(action: &ArgAction, value: &DeValue) -> Result<Vec<String>, (&'static str, &'static str)> {
    let scalar = |value: &DeValue| match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(n) if n.radix() == 10 => Ok(n.as_str().replace('_', "")),
        DeValue::Float(x) => Ok(x.as_str().replace('_', "")),
        DeValue::Integer(_) => Err(("a decimal number", "integer in another base")),
        other => Err(("a string or a decimal number", other.type_str())),
    };
    match (action, value) {
        (ArgAction::SetTrue, DeValue::Boolean(on)) => {
            Ok(on.then(String::new).into_iter().collect())
        }
        (ArgAction::SetTrue, other) => Err(("true or false", other.type_str())),
        (ArgAction::Append, DeValue::Array(items)) => {
            items.iter().map(|item| scalar(item.get_ref())).collect()
        }
        // `[operators]`: each `NAME = "PHC"` is `--operators NAME=PHC`.
        (ArgAction::Append, DeValue::Table(table)) => table
            .iter()
            .map(|(k, v)| Ok(format!("{}={}", k.get_ref(), scalar(v.get_ref())?)))
            .collect(),
        _ => scalar(value).map(|text| vec![text]),
    }
}

/// The settings `matches` hold (defaults, then the file, then the flags) as a TOML file that
/// `--config` reads back to the same settings, each key under its flag's help.
pub fn print(matches: &ArgMatches) -> String {
    let mut out = String::from("# pollchat settings: `pollchat --config FILE` reads this file.\n");
    let command = Cli::command();
    for arg in command.get_arguments() {
        let Some(key) = arg.get_long().filter(|key| !NOT_SETTINGS.contains(key)) else {
            continue;
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "\n# {}",
            help.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let id = arg.get_id().as_str();
        let value = match (arg.get_action(), matches.get_raw(id)) {
            (ArgAction::SetTrue, _) => toml::Value::Boolean(matches.get_flag(id)),
            (_, None) => {
                let _ = writeln!(out, "# {key} = (not set)");
                continue;
            }
            (action, Some(raw)) => {
                let mut items = raw.map(|v| toml_scalar(&v.to_string_lossy()));
                match (action, items.next()) {
                    (ArgAction::Append, first) => {
                        toml::Value::Array(first.into_iter().chain(items).collect())
                    }
                    (_, Some(one)) => one,
                    (_, None) => continue,
                }
            }
        };
        // A default is shown commented out: the file sets only what differs, so it keeps its
        // meaning when a default changes, and a default never trips a `requires`
        // (backplane-nick-ttl without backplane).
        let default = matches.value_source(id) == Some(ValueSource::DefaultValue);
        let _ = writeln!(out, "{}{key} = {value}", if default { "# " } else { "" });
    }
    out
}

/// A flag's text as TOML: a number where it is one (`max-clients = 500`), else a string.
fn toml_scalar(text: &str) -> toml::Value {
    match (text.parse::<i64>(), text.parse::<f64>()) {
        (Ok(n), _) => toml::Value::Integer(n),
        (_, Ok(x)) if x.is_finite() => toml::Value::Float(x),
        _ => toml::Value::String(text.to_string()),
    }
}
