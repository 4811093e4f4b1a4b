//! `pollchat-connect`'s command line: the server to reach, and how to trust it.

use std::path::PathBuf;

/// Chat from this terminal: lines typed are sent, lines received are printed.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "pollchat-connect",
    version,
    max_term_width = 100,
    after_help = CONNECT_AFTER_HELP
)]
pub struct ConnectArgs {
    // (The help is an attribute, not a doc comment: rustdoc would read `[::1]` as a link.)
    #[arg(
        value_name = "HOST:PORT",
        value_parser = parse_target,
        help = "The server, as HOST:PORT (e.g. 127.0.0.1:7878, localhost:7878, [::1]:7878)"
    )]
    pub server: Target,

    /// Connect with TLS (the server's certificate is checked against the usual public CAs)
    #[arg(long)]
    pub tls: bool,

    /// With --tls: trust this PEM certificate or CA as well (for a self-signed server)
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls",
        conflicts_with = "insecure"
    )]
    pub ca: Option<PathBuf>,

    /// With --tls: do not verify the server's certificate at all (anyone on the path can read
    /// and change the chat; for testing only)
    #[arg(long, requires = "tls")]
    pub insecure: bool,
}

/// The end of `pollchat-connect --help`: what the exit status says (the numbers are
/// `Outcome::exit_code` in `main.rs`; a test checks the two agree).
pub const CONNECT_AFTER_HELP: &str = "\
Server lines (those starting with \"*** \") are shown in colour when stdout is a terminal and
NO_COLOR is unset or empty.

Exit status:
  0  stdin ended (Ctrl-D, or the end of piped input), then the server closed
  1  could not connect, or the connection failed
  2  bad command line
  3  you typed /quit, then the server closed
  4  the server closed the connection first
  5  TLS failed: the server's certificate was not trusted, or the handshake failed
  128+N  ended by signal N (130 for Ctrl-C, 129 when the terminal closes)";

/// Where `pollchat-connect` goes: a host name or address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A DNS name or an IP address, without the brackets an IPv6 address is written with.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `HOST:PORT`, `[IPV6]:PORT`. The host is resolved only when connecting.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let shape = || format!("{text:?} is not HOST:PORT (e.g. 127.0.0.1:7878 or [::1]:7878)");
    let (host, port) = text.rsplit_once(':').ok_or_else(shape)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(shape)?,
        None if host.contains(':') => return Err(shape()),
        None => host,
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number (1-65535)"))?;
    if host.is_empty() || port == 0 {
        return Err(shape());
    }
    Ok(Target {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_host_and_port_with_brackets_for_ipv6() {
        let t = parse_target("localhost:7878").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 7878));
        let t = parse_target("[::1]:7878").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7878));
        assert_eq!(t.to_string(), "[::1]:7878");
        for bad in [
            "localhost",
            "::1:7878",
            "[::1:7878",
            ":7878",
            "host:0",
            "host:x",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
