//! TLS for the tests: a self-signed certificate made on the spot (rcgen, or `openssl req
//! -x509` as a user would make one), written where the server can load it, and a rustls
//! client that speaks through the shared [`Client`].

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{Client, TempDir, TestServer};

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files in a temporary
/// directory of its own (removed when dropped).
pub struct TestCert {
    dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    der: CertificateDer<'static>,
}

impl TestCert {
    pub fn new() -> TestCert {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).expect("make a certificate");
        let dir = TempDir::new();
        let cert = dir.file("cert.pem", made.cert.pem().as_bytes());
        let key = dir.file("key.pem", made.signing_key.serialize_pem().as_bytes());
        TestCert {
            dir,
            cert,
            key,
            der: made.cert.der().clone(),
        }
    }

    /// A certificate marked as an authority (`CA:TRUE`, as `openssl req -x509` marks them)
    /// for `localhost` and 127.0.0.1, that expired at the start of 2001.
    pub fn expired_authority() -> TestCert {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = rcgen::CertificateParams::new(names).expect("certificate names");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let key = rcgen::KeyPair::generate().expect("make a key");
        let made = params.self_signed(&key).expect("make a certificate");
        let dir = TempDir::new();
        let cert = dir.file("cert.pem", made.pem().as_bytes());
        let key = dir.file("key.pem", key.serialize_pem().as_bytes());
        TestCert {
            dir,
            cert,
            key,
            der: made.der().clone(),
        }
    }

    /// The certificate a new user makes, the usual way:
    /// `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -addext
    /// subjectAltName=NAMES`, with OpenSSL's default extensions, which mark it `CA:TRUE`.
    /// `None`, after saying so loudly on stderr, if `openssl` is not installed.
    pub fn openssl_req_x509(names: &str) -> Option<TestCert> {
        if !super::peer_present(Command::new("openssl").arg("version"), "openssl (req)") {
            return None;
        }
        let dir = TempDir::new();
        let cert = dir.path.join("cert.pem");
        let key = dir.path.join("key.pem");
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=localhost", "-days", "30"])
            .arg("-addext")
            .arg(format!("subjectAltName={names}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl req");
        assert!(status.success(), "openssl req -x509 failed");
        let der = CertificateDer::from_pem_file(&cert).expect("read openssl's certificate");
        Some(TestCert {
            dir,
            cert,
            key,
            der,
        })
    }

    /// The certificate's extensions say `CA:TRUE` (asked of `openssl x509`).
    pub fn says_ca_true(&self) -> bool {
        let output = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "basicConstraints", "-in"])
            .arg(&self.cert)
            .output()
            .expect("run openssl x509");
        String::from_utf8_lossy(&output.stdout).contains("CA:TRUE")
    }

    /// The directory the files are in, for tests that write more files there.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// A client configuration that trusts this certificate and nothing else.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.der.clone())
            .expect("trust the test certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl TestServer {
    /// A server with a plain listener and a TLS one presenting `cert`, both on ephemeral
    /// loopback ports, after `tweak`.
    pub fn with_tls(cert: &TestCert, tweak: impl FnOnce(&mut pollchat::Config)) -> TestServer {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let settings = pollchat::config::TlsSettings::new(&cert.cert, &cert.key, loopback);
        TestServer::with(|config| {
            config.tls = Some(settings);
            tweak(config);
        })
    }
}

impl Client {
    /// Connects over TLS, trusting `cert`, without reading anything. The handshake happens
    /// on the first read or write, as with any rustls stream.
    pub fn raw_tls(addr: SocketAddr, cert: &TestCert) -> Client {
        let socket = TcpStream::connect(addr).expect("connect to test server");
        Client::tls_over(socket, cert)
    }

    /// [`Client::raw_tls`] over a socket the test set up itself (a small receive buffer...).
    pub fn tls_over(socket: TcpStream, cert: &TestCert) -> Client {
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = ClientConnection::new(cert.client_config(), name).expect("TLS client");
        let stream = StreamOwned::new(tls, socket.try_clone().expect("clone stream"));
        Client::over(socket, Box::new(stream))
    }

    /// Connects over TLS and reads the welcome line.
    pub fn connect_tls(addr: SocketAddr, cert: &TestCert) -> Client {
        let mut client = Client::raw_tls(addr, cert);
        client.read_welcome();
        client
    }
}
