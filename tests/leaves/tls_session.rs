//! `transport::tls`: a server `Session` against a rustls client in memory: output encrypted
//! only as the socket takes it, no buffers held while idle, records arriving in pieces.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "the helpers outside #[test] functions fail their test, with its message"
)]

use std::rc::Rc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use std::io::{self, Read, Write};
use std::sync::Arc;

use pollchat::framing::{Frame, LineFramer};
use pollchat::limits::TLS_RECORDS_AHEAD;
use pollchat::nonblocking::Flushed;
use pollchat::transport::tls::Session;
use pollchat::transport::{Broken, Lines, Source};
use pollchat::write_queue::WriteQueue;
use rustls::ServerConfig;
use rustls_pki_types::PrivateKeyDer;

/// Plaintext into `framer`, as the chat's lines protocol takes it.
fn into(framer: &mut LineFramer) -> impl FnMut(&mut [u8]) -> Result<(), Broken> + '_ {
    |bytes| {
        framer.extend(bytes);
        Ok(())
    }
}

/// `queue` as the chat's lines protocol writes it.
fn lines(queue: &mut WriteQueue) -> Source<'_> {
    Source {
        protocol: Box::leak(Box::new(Lines)),
        queue,
    }
}

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
    /// The most one read gives: records arrive in pieces when it is small.
    per_read: usize,
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.from_client.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.from_client.len()).min(self.per_read);
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

/// A server session and a rustls client that have finished their handshake in memory,
/// the server reading at most `per_read` bytes at a time.
fn connected(per_read: usize) -> (Session, ClientConnection) {
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
            per_read,
        };
        while !socket.from_client.is_empty() {
            server
                .read(&mut socket, &mut into(&mut framer), &mut scratch)
                .expect("server reads");
        }
        server
            .flush(&mut to_client, &mut lines(&mut WriteQueue::default()))
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
    let (mut server, mut client) = connected(usize::MAX);
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
        server.flush(&mut wire, &mut lines(&mut queue)).unwrap(),
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
        let flushed = server.flush(&mut wire, &mut lines(&mut queue)).unwrap();
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
/// The server's lines to the client, decrypted.
fn received(client: &mut ClientConnection, mut ciphertext: &[u8]) -> Vec<u8> {
    let mut plaintext = Vec::new();
    while !ciphertext.is_empty() {
        client.read_tls(&mut ciphertext).unwrap();
        client.process_new_packets().unwrap();
    }
    let _ = client.reader().read_to_end(&mut plaintext);
    plaintext
}

/// Once its handshake is done and its welcome written, an idle session holds no buffer
/// of its own: ciphertext is kept only while a record is half read or half written.
#[test]
fn an_idle_session_holds_no_buffers() {
    let (mut server, mut client) = connected(usize::MAX);
    let mut queue = WriteQueue::default();
    queue.push(Rc::from(&b"*** welcome\n"[..]));
    let mut wire = Wire {
        bytes: Vec::new(),
        room: usize::MAX,
    };
    assert_eq!(
        server.flush(&mut wire, &mut lines(&mut queue)).unwrap(),
        Flushed::All
    );
    assert_eq!(received(&mut client, &wire.bytes), b"*** welcome\n");
    assert_eq!(server.buffered(), 0, "{server:?}");
    assert_eq!(server.unsent(), 0);
}

/// Records that arrive a few bytes at a time, the handshake's and the lines' alike, are
/// kept until whole, then processed; nothing is kept once they are.
#[test]
fn records_in_pieces_are_put_together() {
    let (mut server, mut client) = connected(7);
    let mut from_client = Vec::new();
    client.writer().write_all(b"one\ntwo\n").unwrap();
    client.writer().write_all(b"three\n").unwrap();
    while client.wants_write() {
        client.write_tls(&mut from_client).unwrap();
    }
    let mut to_client = Wire::default();
    let mut socket = Socket {
        from_client: &mut from_client,
        to_client: &mut to_client,
        per_read: 7,
    };
    let mut framer = LineFramer::new(1024);
    let mut scratch = vec![0; 16 * 1024];
    while !socket.from_client.is_empty() {
        server
            .read(&mut socket, &mut into(&mut framer), &mut scratch)
            .unwrap();
    }
    let mut lines = Vec::new();
    while let Some(Frame::Line(line)) = framer.next_frame() {
        lines.push(line);
    }
    assert_eq!(lines, ["one", "two", "three"]);
    assert_eq!(server.buffered(), 0, "{server:?}");
}
