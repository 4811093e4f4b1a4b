//! The errors that stop the server. There are few on purpose: anything that goes wrong with
//! one client is that client's problem (it is disconnected with a logged reason) and never
//! reaches this type.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// A `--bind` address could not be listened on.
    Bind { addr: SocketAddr, source: io::Error },
    /// The log file could not be opened.
    LogFile { path: PathBuf, source: io::Error },
    /// The poll instance, signal pipe or waker could not be set up or failed: the loop cannot
    /// go on without them.
    Poll(io::Error),
    /// The TLS certificate or key could not be loaded or used (the sentence says which).
    Tls(String),
    /// The configuration leaves nothing to listen on.
    NoListeners,
    /// `--backplane` cannot be used (the sentence says why).
    Backplane(String),
    /// The `--config` file cannot be used (the sentence says which key, on which line, and why).
    Config(String),
    /// `--state-dir`'s file cannot be used (the sentence says why, and what to do).
    State(String),
    /// The command line is wrong, or asks for `--help`: clap prints it and exits (status 2, or 0).
    Usage(clap::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { addr, source } => {
                let hint = match source.kind() {
                    io::ErrorKind::AddrInUse => " (is another server using that port?)",
                    io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
                    io::ErrorKind::AddrNotAvailable => " (no such address on this machine)",
                    _ => "",
                };
                write!(f, "cannot listen on {addr}: {}{hint}", describe(source))
            }
            Error::LogFile { path, source } => {
                write!(
                    f,
                    "cannot open log file {}: {}",
                    path.display(),
                    describe(source)
                )
            }
            Error::Poll(source) => write!(f, "event loop failed: {}", describe(source)),
            Error::Tls(sentence)
            | Error::Backplane(sentence)
            | Error::Config(sentence)
            | Error::State(sentence) => f.write_str(sentence),
            Error::Usage(e) => write!(f, "{e}"),
            Error::NoListeners => f.write_str(
                "nothing to listen on: give --bind, or --tls-cert and --tls-key for TLS",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } | Error::LogFile { source, .. } | Error::Poll(source) => {
                Some(source)
            }
            Error::Usage(e) => Some(e),
            Error::Tls(_)
            | Error::NoListeners
            | Error::Backplane(_)
            | Error::Config(_)
            | Error::State(_) => None,
        }
    }
}

/// An io::Error as a lower-case phrase, without the "(os error 98)" suffix operators do not
/// need.
pub fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// A PEM file that could not be read, as a lower-case phrase. pki-types' own text is for
/// programmers: it quotes the offending line as a list of bytes.
pub fn describe_pem(error: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as Pem;
    match error {
        Pem::Io(e) => describe(e),
        Pem::NoItemsFound => "no PEM section of that kind in it".to_string(),
        Pem::MissingSectionEnd { .. } => {
            "a PEM section has no END line: the file is cut short, make it again".to_string()
        }
        Pem::IllegalSectionStart { .. } => {
            "a -----BEGIN line is malformed: the file is damaged, make it again".to_string()
        }
        Pem::Base64Decode(_) => {
            "the text of a PEM section is not valid base64: the file is damaged, make it again"
                .to_string()
        }
        _ => "it is not valid PEM: make it again".to_string(),
    }
}
