//! `--config FILE` and `--print-config`, through the built binary: every kind of bad file
//! refused in one sentence naming the line and the key (exit status 1, no panic, in bounded
//! time), the file's settings applied with flags winning over them, and `--print-config`'s
//! output read back to the same settings.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is a failed test, with its message"
)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Client, ServerProcess};

/// A file of this test binary's own under the system's temporary directory, with `bytes`.
fn file(bytes: &[u8]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("pollchat-config-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `pollchat ARGS` run to its end.
fn pollchat(args: &[&str]) -> Output {
    common::guard::output(Command::new(env!("CARGO_BIN_EXE_pollchat")).args(args))
}

/// The one-line refusal of the file holding `bytes` (exit status 1, nothing but that line).
fn refusal(bytes: &[u8]) -> String {
    let path = file(bytes);
    let output = pollchat(&["--config", path.to_str().unwrap(), "--log-level", "off"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
    let prefix = format!("pollchat: config file {}", path.display());
    let _ = std::fs::remove_file(&path);
    stderr
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{stderr:?} does not start with {prefix:?}"))
        .trim_end()
        .to_string()
}

/// `--print-config` with `args`, its output.
fn printed(args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.push("--print-config");
    let output = pollchat(&args);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The settings a printed file sets (its lines that are not comments).
fn set(printed: &str) -> Vec<&str> {
    printed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

/// A key no flag has: refused with its line and the way to see the keys.
#[test]
fn config_unknown_key_is_refused_with_its_line() {
    assert_eq!(
        refusal(b"# settings\nmax-clients = 10\nmax-client = 5\n"),
        ", line 3: unknown key max-client (`pollchat --print-config` lists them)"
    );
    // Keys that are not settings are not keys either.
    assert!(refusal(b"config = \"other.toml\"\n").contains("unknown key config"));
    assert!(refusal(b"[tls]\ncert = \"a.pem\"\n").contains("line 1: unknown key tls"));
}

/// A value of the wrong TOML type: the key, its line, what it takes.
#[test]
fn config_wrong_type_is_refused_with_its_line() {
    assert_eq!(
        refusal(b"\nquiet-joins = 1\n"),
        ", line 2: quiet-joins takes true or false, not an integer"
    );
    assert_eq!(
        refusal(b"max-clients = [1, 2]\n"),
        ", line 1: max-clients takes a string or a decimal number, not an array"
    );
    assert_eq!(
        refusal(b"bind = [\"127.0.0.1:0\", true]\n"),
        ", line 1: bind takes a string or a decimal number, not a boolean"
    );
}

/// A value of the right type that the flag refuses: the flag's own reason.
#[test]
fn config_bad_value_is_refused_with_the_flags_reason() {
    assert_eq!(
        refusal(b"max-clients = 10\nmax-line = \"4G\"\n"),
        ", line 2: max-line = \"4G\" is refused: unknown unit \"g\" (use K or M)"
    );
    assert_eq!(
        refusal(b"max-rooms = 0\n"),
        ", line 1: max-rooms = 0 is refused: 0 is not in 1..18446744073709551615"
    );
    assert!(
        refusal(b"bind = [\"localhost\"]\n")
            .starts_with(", line 1: bind = [\"localhost\"] is refused")
    );
    assert!(
        refusal(b"log-level = \"loud\"\n").starts_with(", line 1: log-level = \"loud\" is refused")
    );
}

/// A file that is not TOML: toml's reason and the line it found it on.
#[test]
fn config_bad_syntax_is_refused_with_its_line() {
    assert_eq!(
        refusal(b"max-clients = 10\n\nmax-line = \n"),
        ", line 3: is not valid TOML: string values must be quoted, expected literal string"
    );
    // Nesting deep enough to overflow a recursive parser's stack: refused, not a crash.
    let mut deep = b"a = ".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 500_000));
    assert!(refusal(&deep).starts_with(", line 1: is not valid TOML:"));
}

/// A path that does not exist, a NUL byte, bytes that are not UTF-8, a file of 10 MB: one
/// sentence each, read no further than 1 MiB.
#[test]
fn config_missing_binary_or_huge_file_is_refused() {
    let output = pollchat(&["--config", "/nonexistent/pollchat.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "pollchat: config file /nonexistent/pollchat.toml: cannot be read: no such file or directory\n"
    );
    assert_eq!(
        refusal(b"max-clients = 10\nmotd = \"a\0b\"\n"),
        ", line 2: has a NUL byte, which a text file does not (is it the right file?)"
    );
    assert_eq!(
        refusal(b"\n\nbind = \"\xff\"\n"),
        ", line 3: is not UTF-8 text"
    );
    let mut huge = b"max-clients = 10\n".to_vec();
    huge.resize(10 << 20, b'#');
    assert_eq!(
        refusal(&huge),
        ": is over 1 MiB, too big for a config file (is it the right file?)"
    );
}

/// A file that is fine alone but not with the command line (tls-cert with no tls-key
/// anywhere): one sentence too, not clap's usage block listing the file's keys as flags.
#[test]
fn config_unmet_requirement_is_one_sentence() {
    assert_eq!(
        refusal(b"tls-cert = \"cert.pem\"\n"),
        " with the flags given: the following required arguments were not provided: --tls-key <PEM>"
    );
}

/// The file's settings apply, and a flag given on the command line wins over the file's key:
/// here the file's `bind` and `max-line` lose to the flags, its `quiet-joins` and `history`
/// apply.
#[test]
fn config_flags_win_over_the_file() {
    let path = file(b"bind = [\"127.0.0.1:7878\", \"[::1]:7878\"]\nmax-line = 16\nquiet-joins = true\nhistory = 0\n");
    let path = path.to_str().unwrap();
    let shown = printed(&["--config", path, "--max-line", "64"]);
    assert_eq!(
        set(&shown),
        [
            "bind = [\"127.0.0.1:7878\", \"[::1]:7878\"]",
            "max-line = 64",
            "quiet-joins = true",
            "history = 0"
        ]
    );
    // The real server: ServerProcess gives --bind 127.0.0.1:0, so the file's two fixed
    // addresses are not listened on (the first address logged is the flag's).
    let mut server = ServerProcess::start(&["--config", path, "--max-line", "64"]);
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 7878);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    // 40 bytes: over the file's 16, under the flag's 64.
    let line = "x".repeat(40);
    a.send(&line);
    b.expect(&format!("<{}> {line}", a.nick));
    // quiet-joins from the file: a leaves without a notice, so b's next line is the marker.
    drop(a);
    let c = Client::connect(server.addr);
    let mut c = c;
    c.send("marker");
    b.expect(&format!("<{}> marker", c.nick));
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    let _ = std::fs::remove_file(path);
}

/// The file's own settings applied: max-line 16 from the file refuses a 40-byte line.
#[test]
fn config_file_settings_apply() {
    let path = file(b"max-line = \"16\"\n");
    let server = ServerProcess::start(&["--config", path.to_str().unwrap()]);
    let mut a = Client::connect(server.addr);
    a.send(&"x".repeat(40));
    let (_, refused) = a.read_until(|l| l.contains("line too long"));
    assert!(refused.contains("over 16 bytes"), "{refused}");
    let _ = std::fs::remove_file(&path);
}

/// What `--print-config` prints, given to `--config`, prints the same again: the same
/// settings, whatever mix of defaults, file and flags made them.
#[test]
fn config_print_config_round_trips() {
    let first = file(b"max-output = \"2M\"\nidle-timeout = 2.5\nlog-file = '/tmp/a \"quoted\" path.log'\nconnect-rate-loopback = true\n");
    let shown = printed(&[
        "--config",
        first.to_str().unwrap(),
        "--bind",
        "127.0.0.1:7000",
        "--bind",
        "[::1]:7000",
        "--max-clients",
        "500",
        "--max-line",
        "4K",
    ]);
    assert_eq!(
        set(&shown),
        [
            "bind = [\"127.0.0.1:7000\", \"[::1]:7000\"]",
            "max-line = \"4K\"",
            "max-output = \"2M\"",
            "max-clients = 500",
            "connect-rate-loopback = true",
            "idle-timeout = 2.5",
            "log-file = '/tmp/a \"quoted\" path.log'",
        ]
    );
    // Every key is there, set or commented out with its default.
    assert!(shown.contains("\n# max-rooms = 1000\n"), "{shown}");
    assert!(shown.contains("\n# tls-cert = (not set)\n"), "{shown}");
    let second = file(shown.as_bytes());
    assert_eq!(printed(&["--config", second.to_str().unwrap()]), shown);
    // The defaults alone round-trip too (nothing set, everything commented).
    let defaults = printed(&[]);
    assert!(set(&defaults).is_empty(), "{defaults}");
    let third = file(defaults.as_bytes());
    assert_eq!(printed(&["--config", third.to_str().unwrap()]), defaults);
    for path in [first, second, third] {
        let _ = std::fs::remove_file(path);
    }
}
