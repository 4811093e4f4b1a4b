//! The client's connection to the server: a TCP socket, with TLS (rustls) on top when
//! `--tls` asks for it.
//!
//! The loop in `mod.rs` sees one [`Transport`] whatever is underneath. It hands the transport
//! plaintext to send (its [`WriteQueue`]) and gets plaintext back (into a [`LineFramer`]).
//! With TLS, rustls sits between the write queue and the socket, in the shape of rustls's
//! `tlsclient-mio` example:
//!
//! ```text
//!   send:     WriteQueue ──plaintext──► rustls writer() ──records──► write_tls ──► socket
//!   receive:  socket ──► read_tls ──► process_new_packets ──► reader() ──plaintext──► framer
//! ```
//!
//! rustls does no I/O of its own: it is a state machine with a buffer on each side.
//! `write_tls` and `read_tls` are the only calls that touch the socket, and they are made when
//! the socket is ready, like any other non-blocking read or write. The handshake needs no code
//! of its own either. A new `ClientConnection` already has its hello to send (`wants_write`),
//! each answer from the server is handled by `process_new_packets`, and lines typed before the
//! handshake is over wait inside rustls until it is.
//!
//! Connecting is the one blocking step of the client (see [`connect`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream as StdStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::args::{ConnectArgs, Target};
use super::pinned::PinnedVerifier;
use crate::error::{describe, describe_pem};
use crate::framing::LineFramer;
use crate::limits::CONNECT_TIMEOUT;
use crate::nonblocking::ReadOutcome;
use crate::nonblocking::{Plaintext, write_records};
use crate::write_queue::{Flushed, WriteQueue};

/// What went wrong on the connection: the two kinds end the client with different statuses.
#[derive(Debug)]
pub enum TransportError {
    /// The socket failed (reset by the server, ...).
    Io(io::Error),
    /// TLS failed: the certificate was not trusted, the handshake failed, a record was bad.
    Tls(rustls::Error),
}

impl From<io::Error> for TransportError {
    fn from(error: io::Error) -> TransportError {
        TransportError::Io(error)
    }
}

/// How far a [`Transport::send`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Everything is in the kernel's hands.
    All,
    /// The socket's send buffer is full: wait for a writable event.
    SocketFull,
    /// rustls holds the lines until the handshake is over: the server's next answer (a
    /// readable event) moves it on.
    AwaitingHandshake,
}

/// The connection to the server. See the module documentation.
pub struct Transport {
    socket: TcpStream,
    /// `None` without `--tls`. Boxed: a `ClientConnection` is large, and the transport is
    /// moved around while the client is built.
    tls: Option<Box<ClientConnection>>,
    /// TLS: `close_notify` is queued (once only; rustls would send another each time).
    close_notify_queued: bool,
}

impl Transport {
    /// The socket, for registering it with the poll.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// TLS has records of its own to send: the ClientHello at the start, the rest of the
    /// handshake, an alert. They are written by [`Transport::send`] like queued lines.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// One read from the socket; whatever plaintext it yields goes into `framer`.
    ///
    /// With TLS, one `read_tls` may bring part of a record (no plaintext yet, which is
    /// `Data` all the same: the socket had bytes), a whole record, or several.
    pub fn receive(
        &mut self,
        scratch: &mut [u8],
        framer: &mut LineFramer,
    ) -> Result<ReadOutcome, TransportError> {
        let Some(tls) = &mut self.tls else {
            let outcome = ReadOutcome::from_read(|| self.socket.read(scratch))?;
            if let ReadOutcome::Data(n) = outcome {
                framer.extend(&scratch[..n]);
            }
            return Ok(outcome);
        };
        receive_tls(tls, &mut self.socket, scratch, |plaintext| {
            framer.extend(plaintext)
        })
    }

    /// Moves what is queued towards the server as far as it goes without waiting.
    pub fn send(&mut self, queue: &mut WriteQueue) -> Result<Sent, TransportError> {
        let Some(tls) = &mut self.tls else {
            return Ok(match queue.write_to(&mut self.socket)? {
                Flushed::All => Sent::All,
                Flushed::Blocked => Sent::SocketFull,
            });
        };
        loop {
            // Plaintext into rustls until the queue is empty or rustls's buffer is full...
            queue.write_to(&mut Plaintext(tls))?;
            // ...then records out until the socket is full or rustls has none left.
            if !write_records(tls, &mut self.socket)? {
                return Ok(Sent::SocketFull);
            }
            if queue.is_empty() && !tls.is_handshaking() {
                return Ok(Sent::All);
            }
            if tls.is_handshaking() {
                // Records can only be made once the keys are agreed; until then rustls keeps
                // the plaintext (and the queue whatever rustls could not keep).
                return Ok(Sent::AwaitingHandshake);
            }
        }
    }

    /// Closes the sending half, once everything queued has been sent: "I will send no more".
    /// The server can still send, and its last lines are still read.
    ///
    /// With TLS, a `close_notify` alert goes first: it tells the server the stream ended on
    /// purpose, where a bare FIN could be an attacker cutting the connection short.
    pub fn close_sending(&mut self) -> Result<Sent, TransportError> {
        if let Some(tls) = &mut self.tls
            && !self.close_notify_queued
        {
            tls.send_close_notify();
            self.close_notify_queued = true;
        }
        let sent = self.send(&mut WriteQueue::default())?;
        if sent == Sent::All {
            match self.socket.shutdown(Shutdown::Write) {
                // The server closed in the meantime: the read side will say so.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                other => other?,
            }
        }
        Ok(sent)
    }
}

/// One `read_tls` from `socket`, then every byte of plaintext it completes handed to
/// `deliver`. Shared with the chaos generator's TLS clients (`bench/chaos/client.rs`), which
/// call it until the socket has no more.
///
/// One `read_tls` may bring part of a record (no plaintext yet, which is `Data` all the same:
/// the socket had bytes), a whole record, or several. The server's `close_notify` is `Eof`,
/// like a TCP close.
pub fn receive_tls(
    tls: &mut ClientConnection,
    socket: &mut (impl Read + Write),
    scratch: &mut [u8],
    mut deliver: impl FnMut(&[u8]),
) -> Result<ReadOutcome, TransportError> {
    let outcome = ReadOutcome::from_read(|| tls.read_tls(socket))?;
    if let Err(error) = tls.process_new_packets() {
        // rustls has queued an alert telling the server why; send it if the socket takes
        // it at once. We are closing either way.
        let _ = tls.write_tls(socket);
        return Err(TransportError::Tls(error));
    }
    // Take every byte of plaintext out, so rustls's buffer has room for the next read.
    loop {
        match tls.reader().read(scratch) {
            Ok(0) => return Ok(ReadOutcome::Eof), // the server's close_notify
            Ok(n) => deliver(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // TCP closed without close_notify. A truncation attack could look like this,
            // but a chat line cut short shows as a last line without its newline, and a
            // chat client has nothing better to do than to say the server closed.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(ReadOutcome::Eof);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(outcome)
}

/// Why the client could not get as far as a connection.
#[derive(Debug)]
pub enum ConnectError {
    /// TLS could not be set up: the `--ca` file could not be read or holds no certificate,
    /// or HOST is not a name a certificate can be checked against.
    Setup(String),
    /// The host did not resolve, or no address accepted a connection.
    Connect { target: Target, error: io::Error },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Setup(message) => f.write_str(message),
            ConnectError::Connect { target, error } => {
                let hint = match error.kind() {
                    io::ErrorKind::ConnectionRefused => " (is the server running?)",
                    io::ErrorKind::TimedOut => " (no answer: is the address right?)",
                    _ => "",
                };
                write!(f, "cannot connect to {target}: {}{hint}", describe(error))
            }
        }
    }
}

/// Connects to the server (and starts TLS when asked to).
///
/// The TCP connect blocks, on purpose. Until it is done the client has nothing else to do:
/// stdin is not read before there is somewhere to send it, and resolving the host name
/// (`getaddrinfo`) blocks anyway. A non-blocking connect would add a state ("connecting")
/// to the loop for nothing. Everything after this is non-blocking, the TLS handshake too.
pub fn connect(args: &ConnectArgs) -> Result<Transport, ConnectError> {
    // The TLS set-up comes first, so a bad --ca file is reported before any connection.
    let tls = if args.tls {
        let config = tls_config(args)?;
        let name = ServerName::try_from(args.server.host.clone()).map_err(|_| {
            ConnectError::Setup(format!(
                "{:?} is not a host name or address TLS can check a certificate against: \
                 connect to a name the server's certificate is for",
                args.server.host
            ))
        })?;
        let connection = ClientConnection::new(Arc::new(config), name).map_err(|_| setup_bug())?;
        Some(Box::new(connection))
    } else {
        None
    };
    let failed = |error| ConnectError::Connect {
        target: args.server.clone(),
        error,
    };
    let stream = connect_tcp(&args.server).map_err(failed)?;
    // Without TCP_NODELAY, Nagle's algorithm holds a typed line back until the previous one is
    // acknowledged (the server sets it for the same reason).
    stream.set_nodelay(true).map_err(failed)?;
    stream.set_nonblocking(true).map_err(failed)?;
    Ok(Transport {
        socket: TcpStream::from_std(stream),
        tls,
        close_notify_queued: false,
    })
}

/// Tries each address the host resolves to, in order, and returns the first connection.
fn connect_tcp(target: &Target) -> io::Result<StdStream> {
    let mut last_error = None;
    for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
        match StdStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("the name has no address")))
}

/// The rustls client configuration `--tls`, `--ca` and `--insecure` ask for.
fn tls_config(args: &ConnectArgs) -> Result<ClientConfig, ConnectError> {
    client_config(args.ca.as_deref(), "--ca", args.insecure)
}

/// A rustls client configuration with the ring provider that trusts the public CAs and the
/// certificates in the PEM file `ca` (as authorities, and each as itself: see
/// [`PinnedVerifier`]), or (`insecure`) any certificate at all. Shared with the chaos
/// generator's `--tls-ca`; `flag` is the option that named `ca`, for the messages.
pub fn client_config(
    ca: Option<&Path>,
    flag: &str,
    insecure: bool,
) -> Result<ClientConfig, ConnectError> {
    // ring, named explicitly rather than picked by crate features behind our back.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|_| setup_bug())?;
    if insecure {
        let verifier = Arc::new(NoVerification(provider));
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth());
    }
    // The public CAs (Mozilla's list, compiled in), plus the --ca certificates if any.
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let Some(path) = ca else {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    };
    let pinned = read_pem_certificates(path, flag)?;
    for certificate in &pinned {
        roots.add(certificate.clone()).map_err(|_| {
            ConnectError::Setup(format!(
                "{flag} {} holds a certificate that is not valid X.509: give the server's \
                 certificate or its CA's, in PEM",
                path.display()
            ))
        })?;
    }
    // With --ca, webpki's verifier inside one that also takes the --ca certificates as pins
    // (src/client/pinned.rs). `dangerous()` is only rustls's way to plug a verifier in: what
    // is not pinned gets webpki's rules exactly, as with `with_root_certificates`.
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|_| setup_bug())?;
    let verifier = Arc::new(PinnedVerifier::new(webpki, pinned));
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// rustls refused settings that are pollchat's own and always the same (ring's safe
/// defaults, Mozilla's roots): nothing the user did, so nothing the user can change.
fn setup_bug() -> ConnectError {
    ConnectError::Setup(
        "cannot start TLS: rustls refused pollchat's built-in settings, which should not \
         happen; please report it"
            .to_string(),
    )
}

/// Every certificate in the PEM file at `path` (at least one).
fn read_pem_certificates(
    path: &Path,
    flag: &str,
) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let unreadable =
        |why: String| ConnectError::Setup(format!("cannot read {flag} {}: {why}", path.display()));
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable(describe_pem(&e)))?;
    if certificates.is_empty() {
        return Err(ConnectError::Setup(format!(
            "{flag} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the \
             server's certificate or its CA's, in PEM",
            path.display()
        )));
    }
    Ok(certificates)
}

/// `--insecure`: accepts any certificate for any name. The handshake's signatures are still
/// checked (that the server holds the key of the certificate it sent), which is worthless
/// without trusting the certificate, but keeps the rest of rustls's checks as they are. This
/// is rustls's own `tlsclient-mio` example's `NoCertificateVerification`.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
