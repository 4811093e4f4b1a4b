//! TLS in the same loop: a [`Session`] is the [`Stream`] of a connection accepted on a TLS
//! listener (`--tls-bind`, `--https-bind`), so a TLS client is, to the room and the loop, a
//! connection like any other, and whatever protocol it carries (chat lines, HTTP then
//! WebSocket) neither knows nor asks that TLS is under it.
//!
//! rustls does no I/O of its own. It is a state machine: ciphertext goes in, plaintext and
//! records to send come out. That is what lets it live inside a readiness loop without a
//! thread: the loop decides when the socket is read or written, exactly as for a plain
//! connection. The session uses rustls's *unbuffered* API
//! (`UnbufferedServerConnection`), in which the caller owns the ciphertext buffers. (Its
//! buffered `ServerConnection` keeps a 4 KiB read buffer and its write queues at their
//! high-water mark for the life of the connection: 8.2 KB per idle TLS client, measured, where
//! this session keeps no buffer at all between records.)
//!
//! Where it sits in the data path:
//!
//! ```text
//!  read side:  socket ──read──► scratch (shared) ──process_tls_records──► plaintext ──► the protocol
//!                                  └─ a record's start still coming: kept in `incoming`
//!  write side: the protocol over its WriteQueue ──one record's worth──► encrypt ──write──► socket
//!                                  └─ what the socket did not take: kept in `outgoing`
//! ```
//!
//! Each read goes into the loop's scratch buffer, shared by every connection, and the whole
//! records in it are processed there. Only the start of a record whose end has not arrived
//! is copied out and kept. What rustls has to say of its own (handshake messages, alerts) is
//! made into `outgoing` and written with the flush at the end of the batch.
//!
//! On the write side, lines stay in the connection's `WriteQueue` (shared, not copied)
//! until the socket can take them. Only then is the next record's worth gathered from the
//! protocol (which writes the queue, and frames of its own, into it as it would into a
//! socket), encrypted
//! on the stack and written; what the socket does not take of it is kept, and no more is
//! encrypted until that has gone to the kernel. So at most [`TLS_RECORDS_AHEAD`] bytes of a
//! client's output are ever encrypted ahead, and `--max-output` judges a TLS client by the
//! same queue as a plain one (plus those few bytes).
//!
//! What an idle session still holds is rustls's: the connection state (about 1.1 KB) and,
//! on the heap, the keys and secrets of the session (about 2.1 KB: ring's AEAD key of each
//! direction is 560 bytes whatever the cipher suite).
//!
//! The handshake happens on the same events: the client's hello arrives as readable data, the
//! server's answer is records to write at the end of the batch. A connection is not in the
//! room until its stream's [`handshake`](Stream::handshaking) is done, and one that sends
//! garbage is closed when rustls rejects it, after the alert is sent. One that stalls is
//! closed by the handshake timer ([`MakesStream::handshake_timeout`]).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Broken, MakesStream, Rejection, Source, Stream, Take};
use crate::error::Error;
use crate::limits::TLS_RECORDS_AHEAD;
use crate::nonblocking::{Flushed, ReadOutcome, write_until_blocked};

/// The stream of a TLS listener (`--tls-bind`, `--https-bind`): the certificate it presents
/// and how long a handshake may take. Its clones, one per TLS listener, share them, so a
/// reload swaps them for every listener at once ([`TlsStreams::swap`]).
#[derive(Clone)]
pub struct TlsStreams(Rc<RefCell<(Arc<ServerConfig>, Duration)>>);

impl TlsStreams {
    pub fn new(config: Arc<ServerConfig>, handshake_timeout: Duration) -> TlsStreams {
        TlsStreams(Rc::new(RefCell::new((config, handshake_timeout))))
    }

    /// New handshakes get this certificate; a session keeps the `Arc` it started with.
    pub fn swap(&self, config: Arc<ServerConfig>, handshake_timeout: Duration) {
        *self.0.borrow_mut() = (config, handshake_timeout);
    }
}

impl MakesStream for TlsStreams {
    fn name(&self) -> &'static str {
        "TLS"
    }

    fn stream(&self) -> Result<Box<dyn Stream>, String> {
        Session::new(&self.0.borrow().0)
            .map(|session| Box::new(session) as Box<dyn Stream>)
            .map_err(|e| format!("cannot start a TLS session: {e}"))
    }

    fn handshake_timeout(&self) -> Option<Duration> {
        Some(self.0.borrow().1)
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
    tls: UnbufferedServerConnection,
    /// Ciphertext read and not yet processed: the start of a record, or of a handshake
    /// message, whose end has not arrived. Empty, with no buffer, between records.
    incoming: Vec<u8>,
    /// Ciphertext made and not yet taken by the kernel: handshake messages, alerts, and the
    /// part of a record the socket did not take. Empty, with no buffer, once written.
    outgoing: Vec<u8>,
    /// Bytes at the front of `outgoing` the kernel already took.
    written: usize,
    /// Plaintext encrypted whose records the kernel has not taken yet. At most
    /// [`TLS_RECORDS_AHEAD`]; zero once `outgoing` is written.
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
            .field("incoming", &self.incoming.len())
            .field("outgoing", &(self.outgoing.len() - self.written))
            .field("encrypted_unsent", &self.encrypted_unsent)
            .field("closing", &self.closing)
            .field("ended", &self.ended)
            .finish()
    }
}

/// What processing the records at hand came to.
enum Processed {
    /// Every whole record is processed (the rest, if any, is the start of one still coming).
    Done,
    /// The client sent its `close_notify`: nothing after it counts.
    PeerClosed,
}

impl Session {
    pub fn new(config: &Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            tls: UnbufferedServerConnection::new(Arc::clone(config))?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            written: 0,
            encrypted_unsent: 0,
            closing: false,
            ended: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Output encrypted and not yet taken by the kernel, in plaintext bytes.
    pub fn unsent(&self) -> usize {
        self.encrypted_unsent
    }

    /// Buffer capacity the session holds of its own (none at all when idle).
    pub fn buffered(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity()
    }

    /// One `read` from the socket into `scratch`, the records in it processed, and every byte
    /// of plaintext they yield handed to `take` (the protocol). What rustls has to say back
    /// (handshake messages, an alert) is made into `outgoing`, for the flush.
    ///
    /// Returns the ciphertext bytes read, so the loop's read budget and byte counts see what
    /// the socket delivered. Records that complete the handshake yield no plaintext; the loop
    /// asks where the handshake stands after each read.
    pub fn read(
        &mut self,
        socket: &mut (impl Read + Write),
        take: &mut Take<'_>,
        scratch: &mut [u8],
    ) -> Result<ReadOutcome, Broken> {
        if self.ended {
            return Ok(ReadOutcome::Eof);
        }
        let n = match ReadOutcome::from_read(|| socket.read(scratch)).map_err(Broken::Io)? {
            ReadOutcome::Drained => return Ok(ReadOutcome::Drained),
            ReadOutcome::Eof => {
                self.ended = true;
                return Ok(ReadOutcome::Eof);
            }
            ReadOutcome::Data(n) => n,
        };
        let processed = match self.process_read(&mut scratch[..n], take) {
            Ok(processed) => processed,
            // The protocol refused the plaintext: it says what to send; the session is fine.
            Err(Refused::Protocol(broken)) => return Err(broken),
            Err(Refused::Tls(error)) => {
                // rustls has queued an alert saying what was wrong: it is made, one
                // best-effort write tells the client, then the connection is closed. Nobody
                // else is affected.
                self.take_alert();
                let _ = write_until_blocked(socket, &self.outgoing[self.written..]);
                return Err(rejected(&error));
            }
        };
        if self.incoming.len() > TLS_PENDING_MAX {
            return Err(rejected(&rustls::Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooLarge,
            )));
        }
        // Unlike a plain `read`, one read can bring both data and the end: a client that pipes
        // its input sends its last handshake message, its lines and `close_notify` at once.
        // The data is reported first, so the loop handles the handshake and relays the lines
        // before it treats the connection as ended.
        if let Processed::PeerClosed = processed {
            self.ended = true;
        }
        Ok(ReadOutcome::Data(n))
    }

    /// The records in `bytes` (what one read brought), after any start of a record kept from
    /// before. Most reads bring whole records: they are processed where they were read, and
    /// nothing is kept. Only the start of a record still coming is, in `incoming`.
    fn process_read(
        &mut self,
        bytes: &mut [u8],
        take: &mut Take<'_>,
    ) -> Result<Processed, Refused> {
        if self.incoming.is_empty() {
            let (processed, taken) = process(&mut self.tls, bytes, take, &mut self.outgoing);
            self.incoming.extend_from_slice(&bytes[taken..]);
            return processed;
        }
        self.incoming.extend_from_slice(bytes);
        let mut incoming = std::mem::take(&mut self.incoming);
        let (processed, taken) = process(&mut self.tls, &mut incoming, take, &mut self.outgoing);
        incoming.drain(..taken);
        if !incoming.is_empty() {
            self.incoming = incoming;
        }
        processed
    }

    /// Writes what can be written: first the ciphertext already made, then, one record's worth
    /// at a time, what `source` has (the protocol writing its queue), each encrypted only once
    /// the previous records are in the kernel. Stops at `WouldBlock`, as a plain flush does.
    ///
    /// `socket` is the connection's `TcpStream`; anything that reads and writes like a
    /// non-blocking socket will do, which is how the tests below drive it.
    pub fn flush(
        &mut self,
        socket: &mut dyn Write,
        source: &mut Source<'_>,
    ) -> io::Result<Flushed> {
        loop {
            if !self.write_outgoing(socket)? {
                return Ok(Flushed::Blocked);
            }
            self.encrypted_unsent = 0;
            // During the handshake the queue is empty: a client is given its first line only
            // once it is in the room, after the handshake. What rustls had to say is written,
            // and the read side (not a writable event) moves the handshake on.
            if source.is_empty() || self.closing || self.tls.is_handshaking() {
                return Ok(Flushed::All);
            }
            // One record's worth of lines, gathered, encrypted and written. What the socket
            // does not take of it waits in `outgoing`; no more is encrypted until it is out.
            let mut plaintext = [0; TLS_RECORDS_AHEAD];
            let mut gathered = Gather {
                into: &mut plaintext,
                len: 0,
            };
            source.write_to(&mut gathered)?;
            let len = gathered.len;
            let mut sealed = [0; TLS_RECORDS_AHEAD + RECORD_OVERHEAD];
            let made = self.seal(&plaintext[..len], &mut sealed)?;
            // Written straight from the stack, unless rustls had something of its own to
            // send first; then after it.
            if !self.outgoing.is_empty() {
                self.outgoing.extend_from_slice(made);
                self.encrypted_unsent = len;
                continue;
            }
            let taken = write_until_blocked(&mut &mut *socket, made)?;
            if taken < made.len() {
                self.outgoing.extend_from_slice(&made[taken..]);
                self.encrypted_unsent = len;
                return Ok(Flushed::Blocked);
            }
        }
    }

    /// After rustls refused what the client sent: the alert it queued, into `outgoing`.
    /// Asked once only: rustls hands out what it queued before it looks at the bytes again,
    /// and looking again at the bytes it refused would make it refuse them a second time.
    /// (The bytes it is shown are those it was shown last, less what it was done with, as
    /// every call must be: it remembers where it was in them.)
    fn take_alert(&mut self) {
        let status = self.tls.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut alert)) = status.state {
            let _ = encode(&mut alert, &mut self.outgoing);
        }
    }

    /// Writes `outgoing`; true once all of it is out, and then its buffer is freed.
    fn write_outgoing(&mut self, socket: &mut dyn Write) -> io::Result<bool> {
        if self.outgoing.is_empty() {
            return Ok(true);
        }
        self.written += write_until_blocked(&mut &mut *socket, &self.outgoing[self.written..])?;
        if self.written < self.outgoing.len() {
            return Ok(false);
        }
        self.outgoing = Vec::new();
        self.written = 0;
        Ok(true)
    }

    /// Encrypts `plaintext` as application data records into `sealed` (or, should it not
    /// fit, a buffer of the size rustls asks for), after anything rustls must send first (a
    /// key update): the bytes to write.
    fn seal<'a>(&mut self, plaintext: &[u8], sealed: &'a mut [u8]) -> io::Result<&'a [u8]> {
        encode_pending(&mut self.tls, &mut self.incoming, &mut self.outgoing)?;
        let status = self.tls.process_tls_records(&mut self.incoming);
        let ConnectionState::WriteTraffic(mut traffic) = status.state.map_err(io::Error::other)?
        else {
            return Err(io::Error::other("TLS session cannot send application data"));
        };
        match traffic.encrypt(plaintext, sealed) {
            Ok(len) => Ok(&sealed[..len]),
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                // Not expected (a record's worth has room for its overhead), but not fatal.
                let mut bigger = vec![0; required_size];
                let len = traffic
                    .encrypt(plaintext, &mut bigger)
                    .map_err(io::Error::other)?;
                self.outgoing.extend_from_slice(&bigger[..len]);
                Ok(&sealed[..0])
            }
            Err(error) => Err(io::Error::other(error)),
        }
    }
}

/// Plaintext a TLS record adds at most: a 5-byte header, an explicit nonce (TLS 1.2's
/// AES-GCM: 8 bytes), the content type (TLS 1.3: 1 byte) and a 16-byte tag.
const RECORD_OVERHEAD: usize = 64;

/// Ciphertext a session keeps unprocessed at most: a handshake message at rustls's limit of
/// 64 KiB, split into records, or one record of 16 KiB and its overhead. More is refused.
const TLS_PENDING_MAX: usize = 0x1_0000 + 18 * 1024;

/// How processing records failed: rustls refused them, or the protocol refused their
/// plaintext.
enum Refused {
    Tls(rustls::Error),
    Protocol(Broken),
}

/// Plaintext handed to the protocol at a time: rustls decrypts in place but lends the
/// plaintext read-only, and a protocol may change what it is given (WebSocket unmasks in
/// place), so each record's plaintext is handed on through a copy on the stack.
const HANDED: usize = 4096;

/// Processes the whole records at the front of `bytes`: their plaintext to `take`,
/// whatever rustls answers into `outgoing`. Returns how it went, and how many bytes of
/// `bytes` are done with (the rest is the start of a record still coming).
fn process(
    tls: &mut UnbufferedServerConnection,
    bytes: &mut [u8],
    take: &mut Take<'_>,
    outgoing: &mut Vec<u8>,
) -> (Result<Processed, Refused>, usize) {
    let mut handed = [0; HANDED];
    let mut taken = 0;
    loop {
        let status = tls.process_tls_records(&mut bytes[taken..]);
        let discard = status.discard;
        let next = match status.state {
            Err(error) => return (Err(Refused::Tls(error)), taken),
            Ok(ConnectionState::ReadTraffic(mut traffic)) => loop {
                match traffic.next_record() {
                    Some(Ok(record)) => {
                        for piece in record.payload.chunks(HANDED) {
                            let copy = &mut handed[..piece.len()];
                            copy.copy_from_slice(piece);
                            if let Err(broken) = take(copy) {
                                return (Err(Refused::Protocol(broken)), taken);
                            }
                        }
                        taken += record.discard;
                    }
                    Some(Err(error)) => return (Err(Refused::Tls(error)), taken),
                    None => break None,
                }
            },
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                if let Err(error) = encode(&mut data, outgoing) {
                    let error = rustls::Error::General(error.to_string());
                    return (Err(Refused::Tls(error)), taken);
                }
                None
            }
            // Written with the flush at the end of the batch.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                None
            }
            // Early data is off (rustls's default): none will come, and none would be read.
            Ok(ConnectionState::ReadEarlyData(mut early)) => {
                while let Some(Ok(_)) = early.next_record() {}
                None
            }
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                Some(Processed::PeerClosed)
            }
            // More bytes needed, or every record is in: either way, done for this read.
            Ok(_) => Some(Processed::Done),
        };
        taken += discard;
        if let Some(processed) = next {
            return (Ok(processed), taken);
        }
    }
}

/// Makes whatever rustls has to send of its own (an alert, a key update) into `outgoing`.
fn encode_pending(
    tls: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        let status = tls.process_tls_records(incoming);
        match status.state {
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode(&mut data, outgoing).map_err(io::Error::other)?;
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
            _ => return Ok(()),
        }
    }
}

/// Appends one message rustls made to `outgoing`, growing it to the size rustls asks for.
fn encode<D>(data: &mut EncodeTlsData<'_, D>, outgoing: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = outgoing.len();
    let mut room = 0;
    loop {
        outgoing.resize(start + room, 0);
        match data.encode(&mut outgoing[start..]) {
            Ok(len) => {
                outgoing.truncate(start + len);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(error) => {
                outgoing.truncate(start);
                return Err(error);
            }
        }
    }
}

/// Gathers queued lines into one record's worth of plaintext: a writer that takes bytes
/// until it is full, then says `WouldBlock`, as a full socket does.
struct Gather<'a> {
    into: &'a mut [u8],
    len: usize,
}

impl Write for Gather<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let before = self.len;
        for buf in bufs {
            let n = buf.len().min(self.into.len() - self.len);
            self.into[self.len..self.len + n].copy_from_slice(&buf[..n]);
            self.len += n;
        }
        match self.len - before {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for Session {
    fn name(&self) -> &'static str {
        "TLS"
    }

    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }

    fn read(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        take: &mut Take<'_>,
    ) -> Result<ReadOutcome, Broken> {
        Session::read(self, socket, take, scratch)
    }

    /// rustls made records to send (handshake messages, an answer to a key update, an alert).
    fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    fn write(&mut self, socket: &mut dyn Write, source: &mut Source<'_>) -> io::Result<Flushed> {
        self.flush(socket, source)
    }

    /// Queues `close_notify`, TLS's own end of stream, once; the next write sends it. A
    /// client that gets it knows the server ended the session, not an attacker cutting the
    /// stream.
    fn close(&mut self) -> bool {
        if self.closing {
            return false;
        }
        self.closing = true;
        if encode_pending(&mut self.tls, &mut self.incoming, &mut self.outgoing).is_err() {
            return false;
        }
        let status = self.tls.process_tls_records(&mut self.incoming);
        let Ok(ConnectionState::WriteTraffic(mut traffic)) = status.state else {
            return !self.outgoing.is_empty();
        };
        let mut alert = [0; RECORD_OVERHEAD];
        if let Ok(len) = traffic.queue_close_notify(&mut alert) {
            self.outgoing.extend_from_slice(&alert[..len]);
        }
        !self.outgoing.is_empty()
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
