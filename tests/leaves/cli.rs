//! `cli`: the command line as `main` parses it: sizes with binary suffixes, the old
//! subcommands naming the binaries that took them over, no arguments meaning the documented
//! defaults, and the backplane's flags making a backplane configuration.

use std::time::Duration;

use clap::Parser;
use pollchat::Config;
use pollchat::cli::{Cli, moved_subcommand, parse_bytes};

#[test]
fn sizes_accept_binary_suffixes() {
    assert_eq!(parse_bytes("4096"), Ok(4096));
    assert_eq!(parse_bytes("64K"), Ok(65536));
    assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
    assert!(parse_bytes("1G").is_err());
    assert!(parse_bytes("0").is_err());
    assert!(parse_bytes("x").is_err());
}

#[test]
fn the_old_subcommands_name_the_binaries_that_took_them_over() {
    assert_eq!(moved_subcommand("bench"), Some("pollchat-bench"));
    assert_eq!(moved_subcommand("connect"), Some("pollchat-connect"));
    assert_eq!(moved_subcommand("--bind"), None);
}

#[test]
fn no_arguments_means_the_documented_defaults() {
    let cli = Cli::try_parse_from(["pollchat"]).unwrap();
    let config = cli.config();
    let default = Config::default();
    assert_eq!(config.bind, default.bind);
    assert_eq!(config.max_line, 4096);
    assert_eq!(config.max_output, 1 << 20);
    assert_eq!(config.idle_timeout, None);
    assert!(config.handle_signals);
}

#[test]
fn backplane_flags_make_a_backplane_config() {
    let cli = Cli::try_parse_from([
        "pollchat",
        "--backplane",
        "redis://127.0.0.1:6379/chat",
        "--backplane-nick-ttl",
        "2.5",
        "--backplane-stream-len",
        "500",
    ])
    .unwrap();
    let backplane = cli.config().backplane.unwrap();
    assert_eq!(backplane.url.channel, "chat");
    assert_eq!(backplane.nick_ttl, Duration::from_millis(2500));
    assert_eq!(backplane.stream_len, 500);
    let url = "redis://127.0.0.1:6379";
    let default = Cli::try_parse_from(["pollchat", "--backplane", url]).unwrap();
    assert_eq!(default.config().backplane.unwrap().stream_len, 10_000);
    for bad in ["0", "200001", "many"] {
        let args = [
            "pollchat",
            "--backplane",
            url,
            "--backplane-stream-len",
            bad,
        ];
        assert!(Cli::try_parse_from(args).is_err(), "{bad}");
    }
    assert!(
        Cli::try_parse_from(["pollchat"])
            .unwrap()
            .config()
            .backplane
            .is_none()
    );
    assert!(Cli::try_parse_from(["pollchat", "--backplane", "127.0.0.1:6379"]).is_err());
    assert!(Cli::try_parse_from(["pollchat", "--backplane-nick-ttl", "3"]).is_err());
    assert!(Cli::try_parse_from(["pollchat", "--backplane-stream-len", "3"]).is_err());
}
