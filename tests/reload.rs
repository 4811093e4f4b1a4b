//! SIGHUP reloads the `--config` file, through the built binary (signals need a process of
//! its own): a good file applied live (limits, MOTD, the certificate for new handshakes), a
//! bad one changing nothing with one error line, keys only a restart applies warned about,
//! and every reload counted. The MOTD itself is tested in process.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is a failed test, with its message"
)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::tls::TestCert;
use common::web::{get, ws_client};
use common::{Client, ServerProcess, TempDir, TestServer};
use pollchat::config::Motd;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A server whose `--config` is `dir/pollchat.toml`, holding `toml`, with `args` on top.
fn start(dir: &TempDir, toml: &str, args: &[&str]) -> (ServerProcess, PathBuf) {
    let path = dir.file("pollchat.toml", toml.as_bytes());
    let mut all = vec!["--config", path.to_str().unwrap()];
    all.extend(args);
    (ServerProcess::start(&all), path)
}

/// Writes `toml` over the file, sends SIGHUP, and returns the log up to the reload's last
/// line (`configuration reloaded`, or the refusal).
fn reload(server: &mut ServerProcess, path: &Path, toml: &str) -> Vec<String> {
    std::fs::write(path, toml).unwrap();
    server.signal("HUP");
    let mut log = Vec::new();
    while !log
        .last()
        .is_some_and(|l: &String| l.contains("reload refused") || l.contains("reloaded"))
    {
        log.extend(server.log_until("reload"));
    }
    log
}

/// The address a listener speaking `what` (`(TLS)`, `(HTTP`) reports in the start-up log.
fn listening(server: &mut ServerProcess, what: &str) -> SocketAddr {
    let line = server.wait_for_log(what);
    let addr = line.split("listening on ").nth(1).unwrap();
    addr.split(' ').next().unwrap().parse().unwrap()
}

/// The lines a new client gets after its welcome, up to the answer to `/who`.
fn after_welcome(addr: SocketAddr) -> Vec<String> {
    let mut client = Client::connect(addr);
    client.sync()
}

/// A changed limit and MOTD apply at once to whoever comes next, and the reload is counted
/// in `/metrics`.
#[test]
fn reload_good_file_applies_limits_and_motd_live() {
    let dir = TempDir::new();
    let args = ["--http-bind", "127.0.0.1:0"];
    let (mut server, path) = start(&dir, "motd = \"first\"\n", &args);
    let http = listening(&mut server, "(HTTP");
    let mut first = Client::connect(server.addr);
    assert_eq!(first.sync(), ["*** first"]);
    let log = reload(&mut server, &path, "motd = \"second\"\nmax-clients = 1\n");
    assert!(
        log.last()
            .unwrap()
            .contains("[INFO] reload: configuration reloaded")
    );
    first.send("/motd");
    first.expect("*** second");
    let mut full = Client::raw(server.addr);
    assert_eq!(full.read_to_eof(), ["*** server full, try again later"]);
    // The page takes a chat slot too: the one slot is given back for it.
    first.send("/quit");
    first.read_to_eof();
    let metrics = get(http, "/metrics").body;
    assert!(metrics.contains("pollchat_reloads_total{result=\"ok\"} 1\n"));
    assert!(metrics.contains("pollchat_reloads_total{result=\"error\"} 0\n"));
}

/// A file that does not parse, a value refused, an unreadable MOTD file, a certificate that
/// does not load: each is one error line, the server keeps serving with the settings it had,
/// and each is counted in `--stats-udp`'s report.
#[test]
fn reload_bad_file_changes_nothing_and_says_why_once() {
    let dir = TempDir::new();
    let good = "motd = \"old\"\nmax-clients = 1\n";
    let (mut server, path) = start(&dir, good, &["--stats-udp", "127.0.0.1:0"]);
    let stats = server.stats_addr();
    let mut resident = Client::connect(server.addr);
    let bad = [
        ("max-clients = [\n", "line 1: is not valid TOML"),
        ("max-clients = -3\n", "max-clients = -3 is refused"),
        (
            "motd-file = \"/nonexistent/motd\"\n",
            "motd-file /nonexistent/motd cannot be read",
        ),
        (
            "tls-cert = \"/nonexistent.pem\"\ntls-key = \"/nonexistent.pem\"\n",
            "certificate",
        ),
    ];
    for (n, (toml, why)) in bad.iter().enumerate() {
        let log = reload(&mut server, &path, toml);
        let refusal = log.last().unwrap();
        assert!(
            refusal.contains("[ERROR] reload refused, nothing changed: "),
            "{refusal}"
        );
        assert!(refusal.contains(why), "{refusal}");
        resident.send("/motd");
        resident.expect("*** old");
        let refused = Client::raw(server.addr).read_to_eof();
        assert_eq!(
            refused,
            ["*** server full, try again later"],
            "max-clients changed"
        );
        // From the refusal to that client's, nothing else was an error.
        let log = server.log_until("refused: server full");
        assert!(!log.iter().any(|l| l.contains("[ERROR]")), "{log:?}");
        let report = ask_stats(stats);
        let counted = format!("\"reloads\":{{\"error\":{},\"ok\":0}}", n + 1);
        assert!(report.contains(&counted), "{report}");
    }
}

/// A key only a restart applies is named in one warning, and the rest of the file applies.
#[test]
fn reload_restart_only_key_is_warned_and_the_rest_applies() {
    let dir = TempDir::new();
    let (mut server, path) = start(&dir, "motd = \"a\"\n", &[]);
    let toml = "motd = \"b\"\nhttp-bind = [\"127.0.0.1:0\"]\nbackplane-nick-ttl = 3\nbackplane = \"redis://127.0.0.1:1\"\n";
    let log = reload(&mut server, &path, toml);
    let warned: Vec<&String> = log.iter().filter(|l| l.contains("[WARN]")).collect();
    assert_eq!(warned.len(), 1, "{log:?}");
    assert!(
        warned[0].contains("reload: http-bind, backplane changed, which only a restart applies"),
        "{}",
        warned[0]
    );
    assert_eq!(after_welcome(server.addr), ["*** b"]);
}

/// The log level changes live: at `warn`, the reload's warning is logged (a `log-file` needs
/// a restart) but a client's connection is not; back at `info`, it is.
#[test]
fn reload_changes_the_log_level() {
    let dir = TempDir::new();
    let (mut server, path) = start(&dir, "", &[]);
    std::fs::write(&path, "log-level = \"warn\"\nlog-file = \"/dev/null\"\n").unwrap();
    server.signal("HUP");
    server.wait_for_log("[WARN] reload: log-file changed");
    let mut quiet = Client::connect(server.addr);
    quiet.sync();
    let log = reload(&mut server, &path, "log-level = \"info\"\n");
    assert!(!log.iter().any(|l| l.contains("connected as")), "{log:?}");
    Client::connect(server.addr);
    server.wait_for_log("connected as");
}

/// A certificate swapped by SIGHUP is what the next handshake gets, while a session
/// established before keeps working on the old one.
#[test]
fn reload_swaps_the_certificate_for_new_handshakes_only() {
    let (old, new) = (TestCert::new(), TestCert::new());
    let dir = TempDir::new();
    let toml = |cert: &TestCert| {
        let (cert, key) = (cert.cert.display(), cert.key.display());
        format!("tls-cert = \"{cert}\"\ntls-key = \"{key}\"\ntls-bind = \"127.0.0.1:0\"\n")
    };
    let (mut server, path) = start(&dir, &toml(&old), &[]);
    let tls = listening(&mut server, "(TLS)");
    let mut before = Client::connect_tls(tls, &old);
    assert_eq!(peer_certificate(tls, &[&old, &new]), der(&old));
    reload(&mut server, &path, &toml(&new));
    assert_eq!(peer_certificate(tls, &[&old, &new]), der(&new));
    let mut after = Client::connect_tls(tls, &new);
    after.send("still here?");
    let said = format!("<{}> still here?", after.nick);
    before.read_until(|line| line == said);
    before.send("yes");
    after.read_until(|line| line.ends_with("> yes"));
}

fn der(cert: &TestCert) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(&cert.cert).unwrap()
}

/// The certificate a new TLS handshake with the server gets, trusting `trusted`.
fn peer_certificate(addr: SocketAddr, trusted: &[&TestCert]) -> CertificateDer<'static> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add(der(cert)).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut stream = StreamOwned::new(tls, socket);
    let mut welcome = [0u8; 4];
    std::io::Read::read_exact(&mut stream, &mut welcome).unwrap();
    stream.conn.peer_certificates().unwrap()[0].clone()
}

/// `--motd-file` is read again on SIGHUP; one over the size bound is refused then (the old
/// MOTD stays), and an unreadable one stops start-up with one sentence.
#[test]
fn reload_rereads_the_motd_file() {
    let dir = TempDir::new();
    let motd = dir.file("motd.txt", b"one\n");
    let toml = format!("motd-file = \"{}\"\n", motd.display());
    let (mut server, path) = start(&dir, &toml, &[]);
    assert_eq!(after_welcome(server.addr), ["*** one"]);
    std::fs::write(&motd, "two\n\nthree\n").unwrap();
    reload(&mut server, &path, &toml);
    assert_eq!(after_welcome(server.addr), ["*** two", "*** ", "*** three"]);
    std::fs::write(&motd, "x".repeat(pollchat::limits::MAX_MOTD + 1)).unwrap();
    let log = reload(&mut server, &path, &toml);
    let refusal = log.last().unwrap();
    assert!(refusal.contains("over the 4096 bytes allowed"), "{refusal}");
    assert_eq!(after_welcome(server.addr), ["*** two", "*** ", "*** three"]);

    let missing = dir.path.join("missing.txt");
    let output = common::guard::output(
        Command::new(env!("CARGO_BIN_EXE_pollchat"))
            .args(["--bind", "127.0.0.1:0", "--motd-file"])
            .arg(&missing),
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "pollchat: motd-file {} cannot be read: no such file or directory\n",
            missing.display()
        )
    );
}

/// The MOTD comes right after the welcome and again on `/motd`, cleaned like chat (no escape
/// sequence reaches a terminal), to WebSocket clients too; without one, `/motd` says so.
#[test]
fn motd_is_shown_after_the_welcome_and_on_motd() {
    let text = "Welcome!\n\u{1b}[31mno colours\u{7}\r\nbye\n\n";
    let server = TestServer::with(|config| {
        config.motd = Some(Motd::Text(text.to_string()));
        config.http = Some(pollchat::config::HttpSettings::new(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))));
    });
    let lines = ["*** Welcome!", "*** [31mno colours", "*** bye"];
    let mut client = server.connect();
    assert_eq!(client.sync(), lines);
    client.send("/motd");
    for line in lines {
        client.expect(line);
    }
    let mut web = ws_client(server.http_addr.unwrap());
    assert_eq!(web.sync(), lines);

    let without = TestServer::start();
    let mut plain = without.connect();
    assert_eq!(plain.sync(), Vec::<String>::new());
    plain.send("/motd");
    plain.expect("*** there is no message of the day");
}

fn ask_stats(addr: SocketAddr) -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(common::DEADLINE)).unwrap();
    socket.send_to(b"stats", addr).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The operators are reloaded with the rest: one whose name left the table is an operator no
/// more, and one added can `/oper` at once.
#[test]
fn reload_replaces_the_operators() {
    let hash = pollchat::operators::hash_password("s3cret").unwrap();
    let dir = TempDir::new();
    let table = |name: &str| format!("[operators]\n{name} = \"{hash}\"\n");
    let (mut server, path) = start(&dir, &table("ann"), &[]);
    let mut ann = Client::connect(server.addr);
    ann.sync();
    ann.send("/oper ann s3cret");
    ann.expect("*** you are now an operator (ann)");
    let log = reload(&mut server, &path, &table("bob"));
    assert!(
        log.last().unwrap().contains("configuration reloaded"),
        "{log:?}"
    );
    ann.send("/kick nobody");
    ann.expect("*** /kick is for operators only");
    ann.send("/oper bob s3cret");
    ann.expect("*** you are now an operator (bob)");
}

/// The bans file is read again on SIGHUP: a ban an operator wrote into it sends its match
/// away, and a file that no longer parses refuses the reload and keeps the bans in force.
#[test]
fn reload_reads_the_bans_file_and_keeps_the_old_bans_when_it_is_corrupt() {
    let dir = TempDir::new();
    let bans = dir.file("bans", b"");
    let toml = format!("bans-file = \"{}\"\n", bans.display());
    let (mut server, path) = start(&dir, &toml, &[]);
    let mut mallory = Client::connect(server.addr);
    mallory.sync();
    mallory.send("/nick mallory");
    mallory.expect("*** guest-1 is now known as mallory");
    std::fs::write(&bans, "mallory never root spam\n").unwrap();
    let log = reload(&mut server, &path, &toml);
    assert!(
        log.last().unwrap().contains("configuration reloaded"),
        "{log:?}"
    );
    mallory.expect("*** banned: spam");
    std::fs::write(&bans, "mallory tomorrow root spam\n").unwrap();
    let log = reload(&mut server, &path, &toml);
    let last = log.last().unwrap();
    assert!(
        last.contains("reload refused") && last.contains("line 1"),
        "{log:?}"
    );
    let mut again = Client::connect(server.addr);
    again.sync();
    again.send("/nick mallory");
    again.expect("*** nick \"mallory\" is banned");
}
