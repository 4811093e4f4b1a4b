//! Helpers shared by the integration tests: a server on an ephemeral loopback port (in-process
//! or as the built binary), and a line-oriented client whose every read has a deadline.
//!
//! Ports: a server is given port 0 and reports the port it took (`Server::local_addrs` in
//! process, its "listening on" log line as a binary); a test never binds port 0 to learn a
//! free port and releases it for a server, because another test can take the port in
//! between. Processes: every process a test starts is held by a [`Guard`], which ends it
//! when the test ends, pass or fail.
//!
//! Tests synchronise on what the server sends, never on sleeps: to know that the server has
//! handled everything a client sent, have the client send `/who` and wait for the answer
//! ([`Client::sync`]). The server handles each client's lines in order, so by then it has
//! handled all of them.

#![allow(
    dead_code,
    reason = "each test file uses its own subset of these helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap in a test helper is a failed test, with its message"
)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pollchat::{Config, Server, ShutdownHandle};
use socket2::{Domain, SockRef, Socket, Type};

/// How long any single wait in a test may take before the test fails. Generous, because CI
/// machines are shared and slow; a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub mod bench;
pub mod guard;
pub mod tls;
pub mod web;

pub use guard::Guard;

/// A server running in a thread of the test process. Stopped (gracefully) when dropped.
pub struct TestServer {
    /// The plain listener (the TLS one, when the test serves TLS only).
    pub addr: SocketAddr,
    /// The TLS listener, when the test turned TLS on.
    pub tls_addr: Option<SocketAddr>,
    /// The HTTP listener, when the test turned `--http-bind` on.
    pub http_addr: Option<SocketAddr>,
    /// The HTTPS listener, when the test turned `--https-bind` on.
    pub https_addr: Option<SocketAddr>,
    /// Where `--stats-udp` answers, when the test turned it on.
    pub stats: Option<SocketAddr>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<(), pollchat::Error>>>,
}

impl TestServer {
    /// Defaults, except: an ephemeral port, and no flood control (tests send fast).
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    pub fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            bind: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            rate: 0.0,
            ..Config::default()
        };
        tweak(&mut config);
        let (tx, rx) = mpsc::channel();
        // The server is built inside its thread: it holds `Rc`s and never leaves its thread,
        // exactly as in the real binary.
        let thread = thread::spawn(move || {
            let server = Server::bind(config)?;
            let tls_addr = server.tls_addrs().first().copied();
            let http_addr = server.http_addrs().first().copied();
            let https_addr = server.https_addrs().first().copied();
            let addr = server
                .local_addrs()
                .first()
                .copied()
                .or(tls_addr)
                .or(http_addr);
            let _ = tx.send((
                addr.expect("Server::bind refuses a config with no listener"),
                tls_addr,
                http_addr,
                https_addr,
                server.stats_addr(),
                server.shutdown_handle(),
            ));
            server.run()
        });
        match rx.recv_timeout(DEADLINE) {
            Ok((addr, tls_addr, http_addr, https_addr, stats, handle)) => TestServer {
                addr,
                tls_addr,
                http_addr,
                https_addr,
                stats,
                handle,
                thread: Some(thread),
            },
            Err(_) => panic!("server did not start: {:?}", thread.join()),
        }
    }

    /// A client that has read its welcome line.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// `n` clients, connected one after another, each having read the join notices of the
    /// ones after it, so every client starts with nothing unread.
    pub fn clients(&self, n: usize) -> Vec<Client> {
        let mut clients: Vec<Client> = Vec::new();
        for _ in 0..n {
            let new = self.connect();
            for old in &mut clients {
                old.expect(&format!("*** {} joined", new.nick));
            }
            clients.push(new);
        }
        clients
    }

    /// Sends one datagram to the server's `--stats-udp` socket and returns the reply.
    pub fn ask_stats(&self, datagram: &[u8]) -> String {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        let stats = self.stats.expect("the test turned --stats-udp on");
        socket.send_to(datagram, stats).unwrap();
        let mut buf = [0u8; 4096];
        let n = socket
            .recv(&mut buf)
            .expect("a reply from the stats socket");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Waits until the server's backplane reports `state` ("up", "down") on `--stats-udp`
    /// (which the test must have turned on), asking every few milliseconds until [`DEADLINE`].
    pub fn wait_backplane(&self, state: &str) {
        let needle = format!("\"backplane\":{{\"state\":\"{state}\"");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let stats = self.ask_stats(b"stats");
            if stats.contains(&needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "backplane never {state}: {stats}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Shuts the server down and waits for its loop to return.
    pub fn stop(mut self) -> Result<(), pollchat::Error> {
        self.handle.shutdown();
        let thread = self.thread.take().expect("stop is called once");
        thread.join().expect("server thread panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let result = thread.join();
            if !thread::panicking() {
                result
                    .expect("server thread panicked")
                    .expect("server failed");
            }
        }
    }
}

/// What a [`Client`] talks through: the TCP stream itself, or a TLS stream over it.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A blocking client that reads whole lines, each read bounded by [`DEADLINE`].
pub struct Client {
    /// Lines are read through the buffer; writes go to the stream inside it (the buffer
    /// holds only what was read), so plain and TLS clients share every helper below.
    reader: BufReader<Box<dyn Stream>>,
    /// The TCP socket underneath, for socket-level acts: half-close, reset.
    socket: TcpStream,
    pub nick: String,
}

impl Client {
    /// Connects and reads the welcome line, which names the client.
    pub fn connect(addr: SocketAddr) -> Client {
        let mut client = Client::raw(addr);
        client.read_welcome();
        client
    }

    /// Reads the welcome line and takes the nick from it.
    pub fn read_welcome(&mut self) {
        let welcome = self.line();
        self.nick = welcome
            .strip_prefix("*** welcome to pollchat, you are ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("not a welcome line: {welcome:?}"))
            .to_string();
    }

    /// Connects without reading anything.
    pub fn raw(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect to test server"))
    }

    /// Connects with a tiny receive buffer, so that the server's writes to this client stop
    /// fitting in the kernel soon and pile up in the server's write queue instead.
    pub fn with_small_receive_buffer(addr: SocketAddr) -> Client {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket
            .connect(&addr.into())
            .expect("connect to test server");
        let mut client = Client::from_stream(socket.into());
        client.read_welcome();
        client
    }

    /// Connects from a chosen loopback source address (127.0.0.2, ...), without reading.
    pub fn raw_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind source address");
        socket
            .connect(&addr.into())
            .expect("connect to test server");
        Client::from_stream(socket.into())
    }

    /// A client over a stream the test connected itself, nothing read yet.
    pub fn from_connected(stream: TcpStream) -> Client {
        Client::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> Client {
        let socket = stream.try_clone().expect("clone stream");
        Client::over(socket, Box::new(stream))
    }

    /// A client speaking through `stream`, which runs over `socket`.
    pub fn over(socket: TcpStream, stream: Box<dyn Stream>) -> Client {
        socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
        socket.set_nodelay(true).expect("nodelay");
        Client {
            reader: BufReader::new(stream),
            socket,
            nick: String::new(),
        }
    }

    /// Sends one line (the newline is added).
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).expect("send to server");
        stream.flush().expect("send to server");
    }

    /// The next line, without its newline. Fails the test on EOF or after [`DEADLINE`].
    pub fn line(&mut self) -> String {
        match self.try_line() {
            Ok(Some(line)) => line,
            Ok(None) => panic!("{}: server closed the connection", self.nick),
            Err(e) => panic!("{}: no line from the server: {e}", self.nick),
        }
    }

    /// The next line, `Ok(None)` at EOF.
    pub fn try_line(&mut self) -> std::io::Result<Option<String>> {
        let mut buf = Vec::new();
        let n = self.reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        assert_eq!(buf.pop(), Some(b'\n'), "line cut short by EOF: {buf:?}");
        Ok(Some(
            String::from_utf8(buf).expect("server sent invalid UTF-8"),
        ))
    }

    pub fn expect(&mut self, expected: &str) {
        let got = self.line();
        assert_eq!(got, expected, "{}: unexpected line", self.nick);
    }

    /// Reads lines until one satisfies `pred`; returns the lines before it and the match.
    pub fn read_until(&mut self, pred: impl Fn(&str) -> bool) -> (Vec<String>, String) {
        let mut before = Vec::new();
        loop {
            let line = self.line();
            if pred(&line) {
                return (before, line);
            }
            before.push(line);
        }
    }

    /// Round trip through the server: sends `/who` and returns every line received before
    /// its answer. Once it returns, the server has handled everything sent before it.
    pub fn sync(&mut self) -> Vec<String> {
        self.send("/who");
        self.read_until(is_who_reply).0
    }

    /// `/join ROOM`, and its confirmation (`*** you are now in ROOM (N users)`); returns the
    /// lines that came before it (the old room's, until the move).
    pub fn join(&mut self, room: &str) -> Vec<String> {
        self.send(&format!("/join {room}"));
        let confirmation = format!("*** you are now in {room} (");
        let (before, _) = self.read_until(|l| {
            l.to_ascii_lowercase()
                .starts_with(&confirmation.to_ascii_lowercase())
        });
        before
    }

    /// Reads until the server closes the connection; returns the lines read. A reset counts
    /// as a close.
    pub fn read_to_eof(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.try_line() {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return lines,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return lines,
                Err(e) => panic!("{}: waiting for the server to close: {e}", self.nick),
            }
        }
    }

    /// Half-close: "I will send no more", as `nc -N` does at the end of its input.
    pub fn shutdown_write(&mut self) {
        self.socket.shutdown(Shutdown::Write).expect("shutdown");
    }

    /// Closes with a reset (RST) instead of an orderly FIN, as a crashing client would.
    pub fn reset(self) {
        SockRef::from(&self.socket)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
    }

    /// The next `n` bytes the server sends, whatever they are (Telnet's answers are not
    /// lines). Fails the test on EOF or after [`DEADLINE`].
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        if let Err(e) = self.reader.read_exact(&mut bytes) {
            panic!("{}: {n} bytes expected from the server: {e}", self.nick);
        }
        bytes
    }

    /// Everything the server sent, as raw bytes, until it closes the connection.
    pub fn read_all_bytes(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let _ = self.reader.read_to_end(&mut all);
        all
    }
}

/// Whether `line` is the answer to `/who` (`*** 2 users in #lobby: a, b`).
pub fn is_who_reply(line: &str) -> bool {
    line.starts_with("*** ")
        && line
            .split_once(" in #")
            .is_some_and(|(count, _)| count.ends_with(" users") || count.ends_with(" user"))
}

/// Each client sends `lines` lines `s<index> n<n>` from a thread of its own, all at once;
/// returns the clients once every line is sent.
pub fn send_concurrently(senders: Vec<Client>, lines: usize) -> Vec<Client> {
    let threads: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut client)| {
            thread::spawn(move || {
                for n in 0..lines {
                    client.send(&format!("s{s} n{n}"));
                }
                client
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("sender thread"))
        .collect()
}

/// The built `pollchat` binary, started as a real process on an ephemeral port.
pub struct ServerProcess {
    /// Ends the process when the test ends, pass or fail.
    process: Guard,
    pub addr: SocketAddr,
    /// Lines the process writes to stderr (its log), forwarded by a thread.
    log: Receiver<String>,
    /// Its log up to the first "listening on" line, which [`ServerProcess::start`] read.
    pub start_log: Vec<String>,
}

impl ServerProcess {
    pub fn start(args: &[&str]) -> ServerProcess {
        ServerProcess::start_command(Command::new(env!("CARGO_BIN_EXE_pollchat")), args)
    }

    /// Runs the binary with its open-file limit (soft and hard) lowered to `limit`.
    pub fn start_with_fd_limit(limit: u32, args: &[&str]) -> ServerProcess {
        ServerProcess::start_under_ulimit(&format!("-n {limit}"), args)
    }

    /// Runs the binary with only its soft open-file limit lowered to `limit`.
    pub fn start_with_soft_fd_limit(limit: u32, args: &[&str]) -> ServerProcess {
        ServerProcess::start_under_ulimit(&format!("-S -n {limit}"), args)
    }

    /// Runs the binary with files it writes limited to `blocks` blocks (`ulimit -f`), with
    /// SIGXFSZ ignored: a write past the limit then fails with EFBIG, as a full disk fails one
    /// with ENOSPC, whoever runs the test (root included).
    pub fn start_with_file_size_limit(blocks: u32, args: &[&str]) -> ServerProcess {
        ServerProcess::start_under_ulimit(&format!("-f {blocks}"), args)
    }

    /// `sh -c 'trap "" XFSZ; ulimit ULIMIT_ARGS && exec pollchat ARGS'` (an ignored signal
    /// stays ignored across exec; only a file size limit raises this one).
    fn start_under_ulimit(ulimit_args: &str, args: &[&str]) -> ServerProcess {
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!(
            "trap '' XFSZ; ulimit {ulimit_args} && exec \"$0\" \"$@\""
        ));
        command.arg(env!("CARGO_BIN_EXE_pollchat"));
        ServerProcess::start_command(command, args)
    }

    /// Starts the binary and reads its log only up to its start-up lines; after that its
    /// stderr pipe is not read until the returned sender is dropped: a log consumer that
    /// stopped reading.
    pub fn start_log_paused(args: &[&str]) -> (ServerProcess, mpsc::Sender<()>) {
        let (resume, paused) = mpsc::channel();
        let command = Command::new(env!("CARGO_BIN_EXE_pollchat"));
        let server =
            ServerProcess::start_reading(command, args, |pipe| forward_lines_paused(pipe, paused));
        (server, resume)
    }

    fn start_command(command: Command, args: &[&str]) -> ServerProcess {
        ServerProcess::start_reading(command, args, forward_lines)
    }

    fn start_reading(
        mut command: Command,
        args: &[&str],
        forward: impl FnOnce(std::process::ChildStderr) -> Receiver<String>,
    ) -> ServerProcess {
        // Port 0: the server takes a free port itself and says which in its log, so no
        // other test can take the port between its choice and its bind.
        let mut process = Guard::spawn(
            command
                .args(["--bind", "127.0.0.1:0"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let log = forward(process.take_stderr().expect("piped stderr"));
        let mut server = ServerProcess {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            start_log: Vec::new(),
        };
        server.start_log = server.log_until("listening on ");
        let listening = server.start_log.last().expect("the listening line");
        let addr = listening.rsplit(' ').next().expect("address in log line");
        server.addr = addr.parse().expect("listening address");
        server
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        self.log_until(needle)
            .pop()
            .expect("at least the matching line")
    }

    /// Collects log lines up to and including the first one containing `needle`.
    pub fn log_until(&mut self, needle: &str) -> Vec<String> {
        wait_for_line(&self.log, needle)
    }

    /// Every log line written so far and not yet read, without waiting.
    pub fn log_so_far(&mut self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Where `--stats-udp` answers, from the log line that says so (with the real port when
    /// the test asked for port 0). Call it right after [`ServerProcess::start`]: the line
    /// follows "listening on", and log lines read past are gone.
    pub fn stats_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_log("stats on udp ");
        line.split("stats on udp ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .expect("address in log line")
            .parse()
            .expect("stats address")
    }

    /// Sends a signal with `kill(1)`.
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Waits for the process to exit, failing the test after [`DEADLINE`].
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.process.wait()
    }

    /// CPU time (user + system) the process has used, in seconds.
    pub fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("the server's /proc/PID/stat");
        // Fields after the command name (in parentheses, possibly with spaces) start at
        // field 3; utime and stime are fields 14 and 15, in clock ticks of 1/100 s.
        let after_name = &stat[stat.rfind(')').expect("(comm) in /proc/PID/stat") + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        let ticks = |i: usize| -> u64 { fields[i].parse().expect("a tick count") };
        (ticks(11) + ticks(12)) as f64 / 100.0
    }
}

/// A child process a test talks to: lines in on its stdin, lines out of its stdout, read by
/// a thread so that every wait has a deadline. Killed when dropped.
pub struct Interactive {
    process: Guard,
    stdin: Option<std::process::ChildStdin>,
    out: Receiver<String>,
}

impl Interactive {
    pub fn spawn(command: &mut Command) -> Interactive {
        let mut process = Guard::spawn(
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let stdin = process.take_stdin();
        let out = forward_lines(process.take_stdout().expect("piped stdout"));
        Interactive {
            process,
            stdin,
            out,
        }
    }

    /// Sends one line to its stdin (the newline is added).
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to child's stdin");
        stdin.flush().expect("flush child's stdin");
    }

    /// Closes its stdin: the end of its input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Its output up to and including the first line containing `needle`.
    pub fn wait_for_output(&mut self, needle: &str) -> Vec<String> {
        wait_for_line(&self.out, needle)
    }

    /// Waits for it to exit (failing the test after [`DEADLINE`]).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.process.wait()
    }
}

/// `kill -NAME PID`, failing the test if it fails.
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Sends each line a child writes to `pipe` into the returned channel, from a thread, so
/// tests can wait for a line with a deadline. Keep the receiver while the child runs: once
/// it is dropped the thread stops reading, and a child that writes more would block.
fn forward_lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// As [`forward_lines`], but stops reading after the line that says how many clients the
/// server takes (the last start-up line) until `paused` says go (or its sender is dropped).
fn forward_lines_paused(
    pipe: impl Read + Send + 'static,
    paused: Receiver<()>,
) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut paused = Some(paused);
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let last_startup_line = line.contains("] up to ");
            if tx.send(line).is_err() {
                break;
            }
            if last_startup_line && let Some(wait) = paused.take() {
                let _ = wait.recv();
            }
        }
    });
    rx
}

/// Lines from `lines` up to and including the first containing `needle`; fails the test
/// after [`DEADLINE`].
fn wait_for_line(lines: &Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no line containing {needle:?} in:\n{}", seen.join("\n")),
        }
    }
}

/// `pollchat-bench ARGS` (arguments split on spaces), for [`bench::run`] and
/// [`bench::chaos::run`].
pub fn bench_args(args: &str) -> bench::BenchArgs {
    bench::BenchArgs(args.split_whitespace().map(str::to_string).collect())
}

/// A `redis-server` on a free loopback port, persistence off, `DEBUG` allowed from loopback.
/// Stopped when dropped.
pub struct RedisServer {
    /// Ends the process when the test ends, pass or fail.
    process: Guard,
    pub addr: SocketAddr,
    /// Its output, kept flowing (see [`forward_lines`]).
    _log: Receiver<String>,
}

/// How many ports [`RedisServer::start`] tries before it gives up: each one taken by another
/// program is a retry, so this many in a row means something else is wrong.
const REDIS_PORT_TRIES: usize = 20;

impl RedisServer {
    /// `None`, after saying so loudly on stderr, if `redis-server` is not installed
    /// (`.ci/run` installs it, so CI always runs these tests).
    ///
    /// Redis cannot be told to pick a free port itself (`--port 0` turns TCP off), so the
    /// port is chosen here (see [`redis_port`]) and Redis is asked to bind it; if something
    /// else holds it, Redis says "Address already in use" and exits, and another port is
    /// tried. Nothing is bound and released first: there is no moment in which a port this
    /// test believes its own is free for another test to take.
    pub fn start() -> Option<RedisServer> {
        if !peer_present(
            Command::new("redis-server").arg("--version"),
            "redis-server",
        ) {
            return None;
        }
        let mut taken = Vec::new();
        for _ in 0..REDIS_PORT_TRIES {
            let port = redis_port();
            match RedisServer::start_on(port) {
                Ok(redis) => return Some(redis),
                Err(_) => taken.push(port),
            }
        }
        panic!("redis-server found every port taken: {taken:?}");
    }

    /// A `redis-server` on this port, once it is ready; `Err` with its output if the port
    /// is taken (it has exited then). Any other failure fails the test.
    fn start_on(port: u16) -> Result<RedisServer, Vec<String>> {
        let mut process = Guard::spawn(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                // `DEBUG SLEEP` stops Redis on demand (tests/streams.rs).
                .args(["--enable-debug-command", "local"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let log = forward_lines(process.take_stdout().expect("piped stdout"));
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.contains("Ready to accept connections");
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                // Its output closed: it exited.
                Err(mpsc::RecvTimeoutError::Disconnected)
                    if seen.iter().any(|l| l.contains("Address already in use")) =>
                {
                    process.wait();
                    return Err(seen);
                }
                Err(e) => panic!(
                    "redis-server on port {port} did not start ({e}):\n{}",
                    seen.join("\n")
                ),
            }
        }
        Ok(RedisServer {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _log: log,
        })
    }

    /// `redis://ADDR/CHANNEL`, for `--backplane`.
    pub fn url(&self, channel: &str) -> String {
        format!("redis://{}/{channel}", self.addr)
    }

    /// An in-process instance on this Redis's `channel`, with `--stats-udp` on (to see the
    /// backplane's state) and `tweak` applied, once its backplane is up.
    pub fn instance(&self, channel: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let url = self.url(channel);
        let url = pollchat::backplane::RedisUrl::parse(&url).expect("a test's Redis URL");
        let server = TestServer::with(|c| {
            c.stats_udp = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            c.backplane = Some(pollchat::backplane::BackplaneConfig::new(url));
            tweak(c);
        });
        server.wait_backplane("up");
        server
    }

    /// Kills this Redis (SIGKILL, by its PID: it goes without a word, as in a crash) and
    /// waits until it is gone.
    pub fn kill(&mut self) {
        self.process.signal("KILL");
        self.process.wait();
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) this Redis: a hang, with every connection open.
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Starts a fresh, empty Redis on the same port after [`RedisServer::kill`]. The port
    /// is free again only for as long as Redis is down; it lies outside the range the
    /// kernel gives port-0 binds and outgoing connections, and no other Redis of this test
    /// process is given it (see [`redis_port`]), so only another program choosing that very
    /// port in that moment can take it, and then this fails saying so.
    pub fn restart(&mut self) {
        let port = self.addr.port();
        *self = RedisServer::start_on(port).unwrap_or_else(|log| {
            panic!(
                "port {port} was taken while Redis was down:\n{}",
                log.join("\n")
            )
        });
    }
}

/// A port for a [`RedisServer`] to bind: chosen at random from ten thousand ports just below
/// the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 to 60999 by
/// default), where neither a port-0 bind (every other server in the tests) nor an outgoing
/// connection (every client) is given a port; never one this test process has given out
/// before, so two tests' Redis servers never meet on one port.
fn redis_port() -> u16 {
    use std::hash::BuildHasher;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let low: u16 = range
        .as_deref()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|low| low.parse().ok())
        .unwrap_or(32768);
    // Below the ephemeral range if there is room there, else anywhere above 1024 (the
    // retry on "Address already in use" still holds).
    let (from, span): (u16, u16) = if low >= 11024 {
        (low - 10000, 10000)
    } else {
        (1024, 64000)
    };
    // `RandomState` is seeded at random once per process and differs per instance.
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut port = from + (random % u64::from(span)) as u16;
    while given.contains(&port) {
        port = from + (port - from + 1) % span;
    }
    given.push(port);
    port
}

/// `pollchat-connect ...` as a real child process: its stdin is given by the test, its stdout
/// and stderr are forwarded line by line so the test can wait for a line with a deadline.
pub struct ClientProcess {
    /// Ends the process when the test ends, pass or fail.
    process: Guard,
    /// The write end of its stdin, when the test gave it a pipe.
    stdin: Option<std::process::ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl ClientProcess {
    /// `pollchat-connect ARGS` with stdin a pipe the test writes to ([`ClientProcess::send`]).
    pub fn start(args: &[&str]) -> ClientProcess {
        ClientProcess::start_with(args, Stdio::piped(), &[])
    }

    /// `pollchat-connect ARGS` with the given stdin and extra environment variables.
    pub fn start_with(args: &[&str], stdin: Stdio, env: &[(&str, &str)]) -> ClientProcess {
        let mut process = Guard::spawn(
            Command::new(env!("CARGO_BIN_EXE_pollchat-connect"))
                .args(args)
                .env_remove("NO_COLOR")
                .envs(env.iter().copied())
                .stdin(stdin)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        ClientProcess {
            stdin: process.take_stdin(),
            stdout: forward_lines(process.take_stdout().expect("piped stdout")),
            stderr: forward_lines(process.take_stderr().expect("piped stderr")),
            process,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `printf LINES | pollchat-connect ARGS`: the client's whole run on that input, to its
    /// exit.
    pub fn piped(args: &[&str], lines: &[&str]) -> ClientExit {
        let mut client = ClientProcess::start(args);
        let stdin = client
            .stdin
            .as_mut()
            .expect("stdin is a pipe the test holds");
        for line in lines {
            match stdin.write_all(format!("{line}\n").as_bytes()) {
                Ok(()) => {}
                // It exited before reading all its input (it could not connect, or its TLS
                // handshake failed), as `printf` in that pipeline would find: how it exited
                // is what the test checks. (Expecting the write to succeed failed one run in
                // ten of `.ci/run`, 2026-12-07.)
                Err(e) if e.kind() == ErrorKind::BrokenPipe => break,
                Err(e) => panic!("write to the client's stdin: {e}"),
            }
        }
        client.close_stdin();
        client.wait_exit()
    }

    /// Types one line (the newline is added).
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is a pipe the test holds");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the client's stdin");
    }

    /// Types one line into a client that may already have exited (one refusing a server): a
    /// broken pipe then means it is gone, as a shell's `printf` would find, and that is all.
    pub fn send_unless_gone(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is a pipe the test holds");
        match stdin.write_all(format!("{line}\n").as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {}
            Err(e) => panic!("write to the client's stdin: {e}"),
        }
    }

    /// Closes its stdin: what Ctrl-D is at a terminal.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Its stdout up to and including the first line containing `needle`.
    pub fn wait_for_output(&mut self, needle: &str) -> Vec<String> {
        wait_for_line(&self.stdout, needle)
    }

    /// Sends a signal with `kill(1)`.
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Waits for the process to exit (failing the test after [`DEADLINE`]) and returns its
    /// status with the stdout and stderr lines not read yet.
    pub fn wait_exit(&mut self) -> ClientExit {
        let status = self.process.wait();
        ClientExit {
            code: status.code(),
            stdout: lines_until_closed(&self.stdout),
            stderr: lines_until_closed(&self.stderr),
        }
    }
}

/// How a [`ClientProcess`] ended.
#[derive(Debug)]
pub struct ClientExit {
    /// `None` if a signal killed it.
    pub code: Option<i32>,
    /// Lines it wrote after the last one a `wait_for_output` returned.
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// Every line still coming from `lines` until its writer closes; fails after [`DEADLINE`].
fn lines_until_closed(lines: &Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return seen,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("output still open after the deadline:\n{}", seen.join("\n"))
            }
        }
    }
}

/// A directory of its own under the system's temporary directory, removed when dropped.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("pollchat-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    pub fn file(&self, name: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `openssl s_server` on a free loopback port, for one connection, as a TLS server to test
/// the client against. What it receives is on its stdout; what the test writes to its stdin
/// goes to the client; closing its stdin makes it close the connection. Killed when dropped.
pub struct OpensslServer {
    process: Interactive,
    pub addr: SocketAddr,
}

impl OpensslServer {
    /// `None`, after saying so loudly on stderr, if `openssl` is not installed.
    pub fn start(cert: &std::path::Path, key: &std::path::Path) -> Option<OpensslServer> {
        if !peer_present(Command::new("openssl").arg("version"), "openssl (s_server)") {
            return None;
        }
        let mut process = Interactive::spawn(
            Command::new("openssl")
                .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"])
                .arg("-cert")
                .arg(cert)
                .arg("-key")
                .arg(key),
        );
        let accept = process
            .wait_for_output("ACCEPT ")
            .pop()
            .expect("the ACCEPT line");
        let addr = accept
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {accept:?}"));
        Some(OpensslServer { process, addr })
    }
}

/// What the test writes to its stdin goes to the client (closing it makes s_server shut the
/// connection down: close_notify, then close); what the client sent is on its stdout.
impl std::ops::Deref for OpensslServer {
    type Target = Interactive;
    fn deref(&self) -> &Interactive {
        &self.process
    }
}

impl std::ops::DerefMut for OpensslServer {
    fn deref_mut(&mut self) -> &mut Interactive {
        &mut self.process
    }
}

/// Connects `total` clients from a thread, one after another, each reset at once (SO_LINGER
/// 0), but for every `keep_every`th, which stays. Returns the ones that stayed.
pub fn storm(addr: SocketAddr, total: usize, keep_every: usize) -> Vec<TcpStream> {
    thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut kept = Vec::new();
        for i in 0..total {
            assert!(Instant::now() < deadline, "storm took too long");
            let stream = TcpStream::connect(addr).expect("connect");
            if i % keep_every == 0 {
                kept.push(stream);
            } else {
                SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .expect("SO_LINGER");
            }
        }
        kept
    })
    .join()
    .expect("storm thread")
}

/// A process's heap (anonymous memory, `RssAnon`) in KiB, from /proc: what it allocated,
/// without the pages of its binary (which stay resident once run).
pub fn heap_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Whether a program a test drives (a peer pollchat's authors did not write) is here:
/// `check` is run and must succeed. If not, says so loudly, past the harness's capture, and
/// the test skips; in CI (`CI=true`) it fails instead, since `.ci/run` installs every peer
/// and a skip there would hide a broken install (as [`web::browser_kit`] does).
pub fn peer_present(check: &mut Command, what: &str) -> bool {
    let ran = check.stdout(Stdio::null()).stderr(Stdio::null()).status();
    if ran.is_ok_and(|status| status.success()) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "cannot run in CI: {what} is missing; .ci/run installs it"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: this test needs {what}, as .ci/run installs it ***\n"
    );
    false
}
