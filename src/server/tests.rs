//! Crafted batches over real sockets: what a turn does, step by step, replayed by hand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream as StdStream;

use mio::{Events, Token};
use socket2::SockRef;

use super::accept::listener_token;
use super::*;
use crate::connection::Phase;
use crate::limits::READ_BUDGET;

const DEADLINE: Duration = Duration::from_secs(10);

fn test_server() -> Server {
    Server::bind(Config {
        bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        rate: 0.0,
        quiet_joins: true,
        ..Config::default()
    })
    .expect("bind on loopback")
}

/// A crafted readable event for `token`.
fn readable(token: Token) -> Readiness {
    Readiness {
        token,
        readable: true,
        writable: false,
    }
}

fn read_line(stream: &StdStream) -> String {
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("a line");
    line
}

/// Polls until the kernel has reported readiness for every token in `tokens`, so that a
/// crafted batch replayed afterwards meets sockets in a known state.
fn wait_for_events(server: &mut Server, tokens: &[Token]) {
    let mut events = Events::with_capacity(16);
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !tokens.iter().all(|t| seen.contains(t)) {
        assert!(Instant::now() < deadline, "no events for {tokens:?}");
        server.poll.poll(&mut events, Some(DEADLINE)).expect("poll");
        seen.extend(events.iter().map(|e| e.token()));
    }
}

/// A connection that ends early in a batch keeps its slot until the batch is over. A client
/// accepted later in the same batch therefore gets another token, and an event still in
/// the batch for the old token never reaches the newcomer.
#[test]
fn slot_freed_in_a_batch_is_not_reused_within_it() {
    let mut server = test_server();
    let addr = server.local_addrs()[0];
    let now = Instant::now();
    let accept = readable(listener_token(0));

    let old = StdStream::connect(addr).expect("connect");
    wait_for_events(&mut server, &[listener_token(0)]);
    server.handle(accept, now);
    server.end_batch(now);
    assert!(read_line(&old).starts_with("*** welcome"));
    let old_token = server.table.tokens()[0];

    // The old client resets its connection and a new client connects.
    SockRef::from(&old)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(old);
    let new = StdStream::connect(addr).expect("connect");
    wait_for_events(&mut server, &[Token(old_token), listener_token(0)]);

    // One batch: the reset is found, the newcomer accepted, then a late event for the
    // old token.
    let late = Readiness {
        token: Token(old_token),
        readable: true,
        writable: true,
    };
    server.handle(late, now);
    assert!(matches!(
        server.table.slot(old_token).map(|c| c.phase()),
        Some(Phase::Closed(CloseReason::Failed(_)))
    ));
    server.handle(accept, now);
    let new_token = *server
        .table
        .tokens()
        .iter()
        .find(|&&t| server.table.slot(t).is_some_and(|c| c.is_chatting()))
        .expect("newcomer accepted");
    assert_ne!(new_token, old_token, "slot reused inside the batch");
    server.handle(late, now);
    assert!(
        server
            .table
            .slot(new_token)
            .is_some_and(|c| c.is_chatting())
    );
    server.end_batch(now);

    // After the batch the old slot is free, and the newcomer is served normally.
    assert!(server.table.slot(old_token).is_none());
    assert!(read_line(&new).starts_with("*** welcome"));
}

/// With a long idle timeout, clients that come and go leave dead idle timers behind; the
/// loop sweeps them out instead of letting the heap grow with every connection ever made.
#[test]
fn timers_of_departed_clients_do_not_pile_up() {
    const CLIENTS: u64 = 300;
    let mut server = Server::bind(Config {
        bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        idle_timeout: Some(Duration::from_secs(3600)),
        quiet_joins: true,
        ..Config::default()
    })
    .expect("bind on loopback");
    let addr = server.local_addrs()[0];
    for _ in 0..CLIENTS {
        drop(StdStream::connect(addr).expect("connect"));
    }
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let deadline = Instant::now() + DEADLINE;
    // Turn the loop until every client has been accepted and has gone again. Each turn
    // has events to handle (accepts, end-of-file) until then, so none waits an hour.
    while server.table.stats.connections_total < CLIENTS || !server.table.is_empty() {
        assert!(Instant::now() < deadline, "clients not all served");
        server.turn(&mut events).expect("turn");
    }
    assert!(
        server.timers.len() <= 64,
        "{} timers left for 0 clients",
        server.timers.len()
    );
}

/// Connects a client through the listener in one crafted batch and reads its welcome.
fn admit_one(server: &mut Server) -> (StdStream, ConnRef) {
    let stream = StdStream::connect(server.local_addrs()[0]).expect("connect");
    wait_for_events(server, &[listener_token(0)]);
    let now = Instant::now();
    server.handle(readable(listener_token(0)), now);
    server.end_batch(now);
    assert!(read_line(&stream).starts_with("*** welcome"));
    let token = *server.table.tokens().last().expect("admitted");
    let conn_ref = server.table.live(token).expect("admitted");
    (stream, conn_ref)
}

/// One readiness event for a client with megabytes waiting reads only the read budget,
/// and the client goes on the ready list instead of keeping the loop to itself; after
/// that, every one of its lines still gets through, in order.
#[test]
fn flooding_client_is_read_in_budgets_and_loses_nothing() {
    let mut server = Server::bind(Config {
        bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        rate: 0.0,
        quiet_joins: true,
        max_line: 4096,
        max_output: usize::MAX,
        ..Config::default()
    })
    .expect("bind on loopback");
    let (mut flooder, flooder_ref) = admit_one(&mut server);
    let (receiver, _) = admit_one(&mut server);

    // The flooder writes until its socket will take no more: megabytes, all waiting in
    // the kernel for the server to read.
    let line = format!("{}\n", "f".repeat(99));
    flooder.set_nonblocking(true).expect("non-blocking");
    let mut sent_lines = 0usize;
    let mut unsent_tail: &[u8] = &[];
    loop {
        match flooder.write(line.as_bytes()) {
            Ok(n) if n == line.len() => sent_lines += 1,
            Ok(n) => {
                // Half a line went out; the rest is sent once the server has made room.
                unsent_tail = &line.as_bytes()[n..];
                sent_lines += 1;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("flooder write: {e}"),
        }
    }
    assert!(sent_lines * line.len() > 4 * READ_BUDGET);
    wait_for_events(&mut server, &[Token(flooder_ref.token)]);

    let now = Instant::now();
    server.handle(readable(Token(flooder_ref.token)), now);
    assert_eq!(
        server.table.take_ready(),
        vec![flooder_ref],
        "budget not applied"
    );
    server.table.read_again(flooder_ref);
    // The tail of the half-sent line goes out from a thread, while the loop runs: written
    // here, with the loop stopped, it could wait on TCP's zero-window persist timer, whose
    // backoff grows to minutes (reading one budget does not always reopen the window).
    let tail = unsent_tail.to_vec();
    let tail_writer = std::thread::spawn(move || {
        flooder.set_nonblocking(false).expect("blocking");
        flooder.write_all(&tail).expect("write");
        flooder
    });

    // Now let the loop run as it does in production. The receiver reads in its own thread
    // (one thread cannot be both ends of a TCP connection that is full in both
    // directions), and stops the server when it has every line or its deadline passes.
    let expected_len = sent_lines * ("<guest-1> ".len() + line.len());
    let handle = server.shutdown_handle();
    let reader = std::thread::spawn(move || {
        receiver.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut received = vec![0; expected_len];
        let result = (&receiver).read_exact(&mut received);
        handle.shutdown();
        result.map(|()| received)
    });
    server.run().expect("run");
    let _flooder = tail_writer.join().expect("tail writer");
    let received = reader
        .join()
        .expect("reader thread")
        .expect("every line reaches the receiver");
    let expected = format!("<guest-1> {line}");
    assert!(
        received
            .chunks(expected.len())
            .all(|l| l == expected.as_bytes())
    );
}

/// Lines handled in a batch are not written until the batch ends: a recipient's socket
/// stays empty while events are being handled, then gets everything in one flush.
#[test]
fn output_waits_for_the_end_of_the_batch() {
    let mut server = test_server();
    let (mut sender, sender_ref) = admit_one(&mut server);
    let (receiver, _) = admit_one(&mut server);
    sender.write_all(b"one\ntwo\n").expect("write");
    wait_for_events(&mut server, &[Token(sender_ref.token)]);
    let now = Instant::now();
    server.handle(readable(Token(sender_ref.token)), now);
    receiver.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0u8; 64];
    let early = (&receiver).read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "written before the end of the batch: {early:?}"
    );
    server.end_batch(now);
    receiver.set_nonblocking(false).expect("blocking");
    receiver.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let expected = b"<guest-1> one\n<guest-1> two\n";
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let n = (&receiver).read(&mut buf).expect("read");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, expected);
}
