//! The web for the tests: plain HTTP requests read to the close, a WebSocket client that
//! speaks through the shared [`Client`] (a `tungstenite` socket, each line a text message),
//! and a raw WebSocket that sends frames byte by byte as the test writes them, for the
//! framing rules a well-behaved library would never break.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use pollchat::transport::websocket::frame::client_frame;
use tungstenite::{Message, WebSocket};

use super::{Client, DEADLINE};

/// A WebSocket handshake request for `/ws`, with the RFC's sample key.
pub const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// An HTTP response, read until the server closed the connection.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    /// The value of header `name`, if the response has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` as it is and reads the answer to the end: the server must close.
pub fn http(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP listener");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request).expect("send the request");
    read_response(&mut stream)
}

/// `GET path`, as a browser would ask.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n\r\n").as_bytes(),
    )
}

/// Everything until the close, as a response. A reset after the response counts as a close.
pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !bytes.is_empty() => break,
            Err(e) => panic!("no complete answer from the server: {e} (got {bytes:?})"),
        }
    }
    let text = String::from_utf8(bytes).expect("a text answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A `tungstenite` socket as lines: each line written is a text message, each text message
/// read is a line. The server's close frame reads as the end of the stream.
struct WsLines<S: Read + Write> {
    ws: WebSocket<S>,
    unread: Vec<u8>,
    unsent: Vec<u8>,
}

impl<S: Read + Write> Read for WsLines<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.unread.is_empty() {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    self.unread.extend_from_slice(text.as_bytes());
                    self.unread.push(b'\n');
                }
                Ok(Message::Close(_)) => return Ok(0),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) => return Err(e),
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(0);
                }
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.unread.len());
        buf[..n].copy_from_slice(&self.unread[..n]);
        self.unread.drain(..n);
        Ok(n)
    }
}

impl<S: Read + Write> Write for WsLines<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.unsent.extend_from_slice(buf);
        while let Some(end) = self.unsent.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.unsent.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]).into_owned();
            self.ws
                .send(Message::text(text))
                .map_err(std::io::Error::other)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.ws.flush().map_err(std::io::Error::other)
    }
}

/// A WebSocket client through `tungstenite`, as a [`Client`] that has read its welcome.
pub fn ws_client(addr: SocketAddr) -> Client {
    let mut client = ws_raw_client(addr);
    client.read_welcome();
    client
}

/// A WebSocket [`Client`] that has read nothing yet.
pub fn ws_raw_client(addr: SocketAddr) -> Client {
    ws_client_over(TcpStream::connect(addr).expect("connect to the HTTP listener"))
}

/// A `wss://` client: WebSocket over TLS, trusting `cert`, through `tungstenite` over a
/// rustls stream, as a [`Client`] that has read nothing yet.
pub fn wss_raw_client(addr: SocketAddr, cert: &super::tls::TestCert) -> Client {
    let socket = TcpStream::connect(addr).expect("connect to the HTTPS listener");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let tls = rustls::ClientConnection::new(cert.client_config(), name).expect("TLS client");
    let stream = rustls::StreamOwned::new(tls, socket.try_clone().unwrap());
    upgraded(socket, stream, "wss")
}

/// A WebSocket [`Client`] over a socket the test connected itself, nothing read yet.
pub fn ws_client_over(socket: TcpStream) -> Client {
    let stream = socket.try_clone().unwrap();
    upgraded(socket, stream, "ws")
}

/// `stream` (`socket`, or TLS over it) upgraded at `/ws` through `tungstenite`, as lines.
fn upgraded<S: Read + Write + Send + 'static>(
    socket: TcpStream,
    stream: S,
    scheme: &str,
) -> Client {
    let addr = socket.peer_addr().unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let url = format!("{scheme}://{addr}/ws");
    let (ws, response) = tungstenite::client(url, stream).expect("WebSocket handshake");
    assert_eq!(response.status().as_u16(), 101);
    let lines = WsLines {
        ws,
        unread: Vec::new(),
        unsent: Vec::new(),
    };
    Client::over(socket, Box::new(lines))
}

/// A WebSocket spoken by hand: the upgrade, then frames exactly as the test builds them.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read past the last frame taken.
    buf: Vec<u8>,
}

/// The masking key every raw frame uses.
const MASK: [u8; 4] = [0x1f, 0x8b, 0x35, 0xc4];

impl RawWs {
    /// Connects, upgrades, and checks the `101`.
    pub fn connect(addr: SocketAddr) -> RawWs {
        let mut ws = RawWs::upgrade(addr);
        let head = ws.read_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        ws
    }

    /// Connects and sends the upgrade request; the answer is left unread.
    pub fn upgrade(addr: SocketAddr) -> RawWs {
        let mut stream = TcpStream::connect(addr).expect("connect to the HTTP listener");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(UPGRADE.as_bytes()).unwrap();
        RawWs {
            stream,
            buf: Vec::new(),
        }
    }

    /// The response head (through its blank line), leaving what follows in the buffer.
    pub fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8(head).unwrap();
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("the server closed the connection; had {:?}", self.buf),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("nothing from the server: {e}"),
        }
    }

    /// A frame as a client sends it, masked.
    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&client_frame(fin, opcode, payload, MASK));
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(true, 0x1, text.as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the server");
    }

    /// The next frame from the server: its first byte (FIN and opcode) and its payload.
    /// Server frames are never masked.
    pub fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((first, payload, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return (first, payload);
            }
            self.fill();
        }
    }

    /// The next text message, as a string.
    pub fn text(&mut self) -> String {
        let (first, payload) = self.frame();
        assert_eq!(first, 0x81, "not an unfragmented text frame: {payload:?}");
        String::from_utf8(payload).expect("UTF-8 text")
    }

    /// Text messages until one satisfies `pred`; returns it.
    pub fn text_until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let text = self.text();
            if pred(&text) {
                return text;
            }
        }
    }

    /// Frames until a close frame, whose status code it returns; then the server must close
    /// the TCP connection.
    pub fn expect_close(&mut self) -> u16 {
        loop {
            let (first, payload) = self.frame();
            if first == 0x88 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                self.expect_eof();
                return code;
            }
        }
    }

    /// The server closes the TCP connection (a reset counts).
    pub fn expect_eof(&mut self) {
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("the server did not close the connection: {e}"),
            }
        }
    }
}

/// One whole unmasked frame at the start of `buf`: (first byte, payload, bytes used).
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    assert_eq!(second & 0x80, 0, "the server masked a frame");
    let (len, start) = match second & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        len => (usize::from(len), 2),
    };
    let payload = buf.get(start..start + len)?.to_vec();
    Some((first, payload, start + len))
}

/// What the browser test needs: Node.js, `playwright-core` installed beside its script
/// (`npm ci --prefix tests/browser`, as `.ci/run` does) and Debian's chromium.
pub struct BrowserKit {
    pub node: std::path::PathBuf,
    pub script: std::path::PathBuf,
}

/// The kit, or `None` after saying loudly what is missing. In CI (`CI=true`) a missing
/// piece fails the test instead: `.ci/run` installs all three, so a skip there would hide a
/// broken install.
pub fn browser_kit() -> Option<BrowserKit> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    let node = std::process::Command::new("node").arg("--version").output();
    let mut missing = Vec::new();
    if node.is_err() {
        missing.push("node (apt-get install nodejs)");
    }
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("playwright-core (npm ci --prefix tests/browser)");
    }
    if !std::path::Path::new(&chromium).exists() {
        missing.push("chromium (apt-get install chromium)");
    }
    if missing.is_empty() {
        return Some(BrowserKit {
            node: "node".into(),
            script: dir.join("chat.mjs"),
        });
    }
    let what = missing.join(", ");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the browser test cannot run in CI: missing {what}; .ci/run installs them"
    );
    // Straight to the process's stderr, past the test harness's capture: a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: the browser test needs {what}, as .ci/run installs them ***\n"
    );
    None
}

/// `promtool check metrics` (Prometheus's own parser and linter) run on `text`: its status and
/// what it said. The caller checks first that promtool is there (`peer_present`).
pub fn promtool(text: &str) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin.write_all(text.as_bytes()).expect("write to promtool");
    drop(stdin);
    child.wait_with_output().expect("promtool's verdict")
}
