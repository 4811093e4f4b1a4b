//! TLS in the same loop: a [`Session`] is the [`Transport`] of a connection accepted on a TLS
//! listener, so a TLS client is, to the room and the loop, a connection like any other.
//!
//! rustls does no I/O of its own. It is a state machine with two sides: ciphertext goes in
//! and out through `read_tls`/`write_tls` (here, on the non-blocking socket, which may say
//! `WouldBlock` at any point), and plaintext goes in and out through `reader()`/`writer()`.
//! That is what lets it live inside a readiness loop without a thread: the loop decides when
//! the socket is read or written, exactly as for a plain connection.
//!
//! Where it sits in the data path:
//!
//! ```text
//!  read side:  socket ──read_tls──► rustls ──process_new_packets──► plaintext ──► LineFramer
//!  write side: WriteQueue (Rc lines) ──writer(), one record's worth──► rustls ──write_tls──► socket
//! ```
//!
//! On the write side, lines stay in the connection's [`WriteQueue`] (shared, not copied)
//! until the socket can take them. Only then is the next record's worth of plaintext handed to
//! rustls and encrypted, and no more is encrypted until those records have gone to the kernel.
//! So at most [`TLS_RECORDS_AHEAD`] bytes of a client's output ever sit encrypted in
//! rustls, and `--max-output` judges a TLS client by the same queue as a plain one (plus those
//! few bytes).
//!
//! The handshake happens on the same events: the client's hello arrives as readable data, the
//! server's answer is records to write at the end of the batch. A connection is not in the
//! room until its transport's [`handshake`](Transport::handshake) is done, and one that sends garbage is
//! closed when rustls rejects it, after the alert is sent. One that stalls is closed by the
//! handshake timer ([`Listens::handshake_timeout`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Broken, Farewell, Handshake, Listens, Rejection, Transport};
use crate::error::Error;
use crate::framing::LineFramer;
use crate::limits::TLS_RECORDS_AHEAD;
use crate::nonblocking::{Flushed, Plaintext, ReadOutcome, write_records};
use crate::write_queue::WriteQueue;

/// A TLS listener (`--tls-bind`): the certificate it presents and how long a handshake may
/// take.
pub struct TlsListener {
    pub config: Arc<ServerConfig>,
    pub handshake_timeout: Duration,
}

impl Listens for TlsListener {
    fn name(&self) -> &'static str {
        "TLS"
    }

    fn transport(&self) -> Result<Box<dyn Transport>, String> {
        Session::new(&self.config)
            .map(|session| Box::new(session) as Box<dyn Transport>)
            .map_err(|e| format!("cannot start a TLS session: {e}"))
    }

    fn handshake_timeout(&self) -> Option<Duration> {
        Some(self.handshake_timeout)
    }
}

/// The server's TLS settings, loaded from PEM files: certificate chain and private key.
///
/// The crypto provider is *ring*: it builds with a C compiler alone (aws-lc-rs, rustls's
/// default, also wants cmake and, on some targets, nasm), and it is what rustls's own examples
/// use. Protocol versions are rustls's safe defaults: TLS 1.2 and 1.3.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(format!("cannot read TLS certificate {}", cert.display()), e))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let what = format!("cannot read TLS private key {}", key.display());
        match e {
            rustls_pki_types::pem::Error::NoItemsFound => Error::Tls(format!(
                "{what}: it holds no -----BEGIN PRIVATE KEY----- (or RSA or EC PRIVATE KEY) \
                 section; give the key the certificate was made with"
            )),
            e => tls_error(what, e),
        }
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(certs, key_der)
        })
        .map_err(|e| {
            Error::Tls(format!(
                "the TLS key {} cannot be used with certificate {}: {}",
                key.display(),
                cert.display(),
                key_trouble(&e)
            ))
        })?;
    Ok(Arc::new(config))
}

/// One sentence from a PEM loading error: what was being read, and why it could not be.
fn tls_error(what: String, error: rustls_pki_types::pem::Error) -> Error {
    Error::Tls(format!("{what}: {}", crate::error::describe_pem(&error)))
}

/// Why rustls would not pair the key with the certificate, and what to do. (rustls's own
/// text is `Debug` of its enums: `keys may not be consistent: KeyMismatch`.)
fn key_trouble(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "it is not that certificate's key; give the key the certificate was made with"
        }
        rustls::Error::InvalidCertificate(_) => {
            "the certificate is not valid X.509; make it again (scripts/gen-cert.sh)"
        }
        // rustls says `General("failed to parse private key as RSA, ECDSA, or EdDSA")`.
        _ => {
            "rustls cannot use a key of that kind; give an RSA, ECDSA (P-256 or P-384) or \
              Ed25519 key in PEM"
        }
    }
}

/// rustls refused what the client sent: the close reason, counted as `tls_error`.
fn rejected(error: &rustls::Error) -> Broken {
    Broken::Rejected(Rejection {
        by: "TLS",
        kind: "tls_error",
        why: error.to_string(),
    })
}

/// The TLS state of one connection. See the module documentation.
pub struct Session {
    tls: ServerConnection,
    /// Plaintext handed to rustls whose records the kernel has not taken yet. At most
    /// [`TLS_RECORDS_AHEAD`]; zero once rustls has nothing left to write.
    encrypted_unsent: usize,
    /// `close_notify` queued: the last thing this connection will send.
    closing: bool,
    /// The client's stream ended (TCP's end, or its `close_notify`) in a read that also
    /// brought data: that read reports the data, and the next one the end.
    ended: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("handshaking", &self.tls.is_handshaking())
            .field("encrypted_unsent", &self.encrypted_unsent)
            .field("closing", &self.closing)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Session {
    pub fn new(config: &Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        let mut tls = ServerConnection::new(Arc::clone(config))?;
        // Bounds what rustls buffers of our output (see the module documentation).
        tls.set_buffer_limit(Some(TLS_RECORDS_AHEAD));
        Ok(Session {
            tls,
            encrypted_unsent: 0,
            closing: false,
            ended: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Output handed to rustls and not yet taken by the kernel, in plaintext bytes.
    pub fn unsent(&self) -> usize {
        self.encrypted_unsent
    }

    /// One `read` from the socket into rustls, then every byte of plaintext that it yields into
    /// `framer` (`None` while the connection is leaving: the input is thrown away).
    ///
    /// Returns the ciphertext bytes read, so the loop's read budget and byte counts see what
    /// the socket delivered. Records that complete the handshake yield no plaintext; the loop
    /// asks [`Transport::handshake`] after each read.
    pub fn read(
        &mut self,
        socket: &mut (impl Read + Write),
        framer: Option<&mut LineFramer>,
        scratch: &mut [u8],
    ) -> Result<ReadOutcome, Broken> {
        if self.ended {
            return Ok(ReadOutcome::Eof);
        }
        let read = ReadOutcome::from_read(|| self.tls.read_tls(socket)).map_err(Broken::Io)?;
        let read = match read {
            ReadOutcome::Drained => return Ok(ReadOutcome::Drained),
            ReadOutcome::Eof => 0,
            ReadOutcome::Data(n) => n,
        };
        let state = match self.tls.process_new_packets() {
            Ok(state) => state,
            Err(error) => {
                // rustls has queued an alert saying what was wrong: one best-effort write
                // tells the client, then the connection is closed. Nobody else is affected.
                let _ = self.tls.write_tls(socket);
                return Err(rejected(&error));
            }
        };
        // Take every byte of plaintext now: rustls refuses to read more records while what it
        // decrypted is still waiting, and edge-triggered readiness will not remind us.
        let mut plaintext = state.plaintext_bytes_to_read();
        let mut framer = framer;
        while plaintext > 0 {
            let n = self.tls.reader().read(scratch).map_err(Broken::Io)?;
            if n == 0 {
                break;
            }
            if let Some(framer) = framer.as_deref_mut() {
                framer.extend(&scratch[..n]);
            }
            plaintext = plaintext.saturating_sub(n);
        }
        // End of the stream: TCP's (the socket read 0) or TLS's (`close_notify`). Unlike a
        // plain `read`, one call can bring both data and the end: a client that pipes its
        // input sends its last handshake message, its lines, `close_notify` and FIN at once.
        // The data is reported first, so the loop handles the handshake and relays the lines
        // before it treats the connection as ended.
        self.ended = read == 0 || state.peer_has_closed();
        if read == 0 {
            return Ok(ReadOutcome::Eof);
        }
        Ok(ReadOutcome::Data(read))
    }

    /// Writes what can be written: first the records rustls already made, then, one record's
    /// worth at a time, lines from `queue`, each encrypted only once the previous records are
    /// in the kernel. Stops at `WouldBlock`, as a plain flush does.
    ///
    /// `socket` is the connection's `TcpStream`; anything that reads and writes like a
    /// non-blocking socket will do, which is how the tests below drive it.
    pub fn flush(&mut self, socket: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed> {
        loop {
            if !write_records(&mut self.tls, socket)? {
                return Ok(Flushed::Blocked);
            }
            self.encrypted_unsent = 0;
            // During the handshake the queue is empty: a client is given its first line only
            // once it is in the room, after the handshake. What rustls had to say is written,
            // and the read side (not a writable event) moves the handshake on.
            if queue.is_empty() || self.closing || self.tls.is_handshaking() {
                return Ok(Flushed::All);
            }
            // Every record is out, so rustls's buffer limit lets one record's worth in, and
            // then says it is full.
            let before = queue.unsent();
            queue.write_to(&mut Plaintext(&mut self.tls))?;
            self.encrypted_unsent = before - queue.unsent();
        }
    }
}

impl Transport for Session {
    fn name(&self) -> &'static str {
        "TLS"
    }

    fn handshake(&self) -> Handshake {
        if self.is_handshaking() {
            Handshake::Underway
        } else {
            Handshake::Done
        }
    }

    fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        framer: Option<&mut LineFramer>,
    ) -> Result<ReadOutcome, Broken> {
        Session::read(self, socket, framer, scratch)
    }

    /// rustls has records to send (handshake messages, an answer to a key update, an alert).
    fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    fn write(&mut self, socket: &mut dyn Write, queue: &mut WriteQueue) -> io::Result<Flushed> {
        self.flush(socket, queue)
    }

    /// Queues `close_notify`, TLS's own end of stream, once; the next write sends it. A
    /// client that gets it knows the server ended the session, not an attacker cutting the
    /// stream.
    fn close(&mut self, _farewell: Farewell<'_>) -> bool {
        if self.closing {
            return false;
        }
        self.closing = true;
        self.tls.send_close_notify();
        true
    }

    fn unsent(&self) -> usize {
        Session::unsent(self)
    }

    /// Protocol and cipher suite, once the handshake is over.
    fn describe(&self) -> String {
        match (
            self.tls.protocol_version(),
            self.tls.negotiated_cipher_suite(),
        ) {
            (Some(version), Some(suite)) => format!("{version:?}, {:?}", suite.suite()),
            _ => "handshake not finished".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;

    /// One direction of a loopback socket, in memory: takes at most `room` bytes, then says
    /// `WouldBlock` like a non-blocking socket whose send buffer is full.
    #[derive(Default)]
    struct Wire {
        bytes: Vec<u8>,
        room: usize,
    }

    impl Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.bytes.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The server's socket: reads what the client sent, writes into `to_client`.
    struct Socket<'a> {
        from_client: &'a mut Vec<u8>,
        to_client: &'a mut Wire,
    }

    impl Read for Socket<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.from_client.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.from_client.len());
            buf[..n].copy_from_slice(&self.from_client[..n]);
            self.from_client.drain(..n);
            Ok(n)
        }
    }

    impl Write for Socket<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.to_client.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A server session and a rustls client that have finished their handshake in memory.
    fn connected() -> (Session, ClientConnection) {
        let made =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(vec![made.cert.der().clone()], key)
            })
            .expect("server config");
        let mut roots = RootCertStore::empty();
        roots.add(made.cert.der().clone()).expect("root");
        let client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(Arc::new(client_config), name).expect("client");
        let mut server = Session::new(&Arc::new(server_config)).expect("session");
        let mut framer = LineFramer::new(1024);
        let mut scratch = vec![0; 16 * 1024];
        for _ in 0..10 {
            let mut from_client = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut from_client).expect("client writes");
            }
            let mut to_client = Wire {
                bytes: Vec::new(),
                room: usize::MAX,
            };
            let mut socket = Socket {
                from_client: &mut from_client,
                to_client: &mut to_client,
            };
            while !socket.from_client.is_empty() {
                server
                    .read(&mut socket, Some(&mut framer), &mut scratch)
                    .expect("server reads");
            }
            server
                .flush(&mut to_client, &mut WriteQueue::default())
                .expect("server writes");
            client
                .read_tls(&mut to_client.bytes.as_slice())
                .expect("client reads");
            client.process_new_packets().expect("client accepts");
            if !server.is_handshaking() && !client.is_handshaking() {
                return (server, client);
            }
        }
        panic!("handshake did not finish");
    }

    /// While the socket takes nothing, at most one record's worth of output is encrypted: the
    /// rest stays in the write queue, shared and counted. Once the socket drains, every byte
    /// arrives, decrypted, in order.
    #[test]
    fn output_is_encrypted_only_as_the_socket_takes_it() {
        let (mut server, mut client) = connected();
        let mut queue = WriteQueue::default();
        let mut expected = Vec::new();
        for i in 0..2000 {
            let line = format!("<guest-{i}> {}\n", "x".repeat(500));
            expected.extend_from_slice(line.as_bytes());
            queue.push(Rc::from(line.as_bytes()));
        }
        let total = queue.unsent();

        // The socket is full: the first record's worth is encrypted, and no more.
        let mut wire = Wire::default();
        assert_eq!(
            server.flush(&mut wire, &mut queue).unwrap(),
            Flushed::Blocked
        );
        assert!(
            queue.unsent() >= total - TLS_RECORDS_AHEAD,
            "encrypted ahead"
        );
        assert!(server.unsent() <= TLS_RECORDS_AHEAD);
        assert_eq!(queue.unsent() + server.unsent(), total);

        // A little room at a time: partial writes of records resume where they stopped.
        let mut received = Vec::new();
        let mut plaintext = vec![0; 64 * 1024];
        loop {
            wire.room = 3000;
            let flushed = server.flush(&mut wire, &mut queue).unwrap();
            assert!(server.unsent() <= TLS_RECORDS_AHEAD);
            let mut ciphertext = std::mem::take(&mut wire.bytes);
            let mut from = ciphertext.as_slice();
            while !from.is_empty() {
                client.read_tls(&mut from).unwrap();
                client.process_new_packets().unwrap();
                while let Ok(n) = client.reader().read(&mut plaintext) {
                    if n == 0 {
                        break;
                    }
                    received.extend_from_slice(&plaintext[..n]);
                }
            }
            ciphertext.clear();
            if flushed == Flushed::All {
                break;
            }
        }
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "output reordered or corrupted");
    }
}
