//! The client's TLS, apart from its connection: the rustls configuration that `--tls`,
//! `--ca` and `--insecure` ask for, and one read of TLS records turned into plaintext.
//!
//! The chaos run's TLS clients (in `pollchat-bench`) use the same two steps, so that they
//! trust a certificate exactly as this client does. A binary cannot use another binary's
//! modules, and this is not the server's code, so it does not go in the library either:
//! `pollchat-bench` compiles this file, and `pinned.rs` that it needs, into itself too (with
//! `#[path]`, in its `main.rs`). Both binaries declare the two at their root, so the paths
//! below (`crate::pinned`) mean the same in each.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::pinned::PinnedVerifier;
use pollchat::error::describe_pem;
use pollchat::nonblocking::ReadOutcome;

/// What went wrong on the connection: the two kinds end the client with different statuses.
#[derive(Debug)]
pub enum TransportError {
    /// The socket failed (reset by the server, ...).
    Io(
        #[allow(
            dead_code,
            reason = "read by pollchat-connect's messages; pollchat-bench, which compiles this \
                      file too, only tells the two kinds apart"
        )]
        io::Error,
    ),
    /// TLS failed: the certificate was not trusted, the handshake failed, a record was bad.
    Tls(rustls::Error),
}

impl From<io::Error> for TransportError {
    fn from(error: io::Error) -> TransportError {
        TransportError::Io(error)
    }
}

/// One `read_tls` from `socket`, then every byte of plaintext it completes handed to
/// `deliver`. Shared with the chaos generator's TLS clients (pollchat-bench's
/// `chaos/client.rs`), which call it until the socket has no more.
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

/// A rustls client configuration with the ring provider that trusts the public CAs and the
/// certificates in the PEM file `ca` (as authorities, and each as itself: see
/// [`PinnedVerifier`]), or (`insecure`) any certificate at all. Shared with the chaos
/// generator's `--tls-ca`; `flag` is the option that named `ca`, for the messages.
pub fn client_config(
    ca: Option<&Path>,
    flag: &str,
    insecure: bool,
) -> Result<ClientConfig, String> {
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
            format!(
                "{flag} {} holds a certificate that is not valid X.509: give the server's \
                 certificate or its CA's, in PEM",
                path.display()
            )
        })?;
    }
    // With --ca, webpki's verifier inside one that also takes the --ca certificates as pins
    // (`pinned.rs`). `dangerous()` is only rustls's way to plug a verifier in: what
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
pub fn setup_bug() -> String {
    "cannot start TLS: rustls refused pollchat's built-in settings, which should not happen; \
     please report it"
        .to_string()
}

/// Every certificate in the PEM file at `path` (at least one).
fn read_pem_certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let unreadable = |why: String| format!("cannot read {flag} {}: {why}", path.display());
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable(describe_pem(&e)))?;
    if certificates.is_empty() {
        return Err(format!(
            "{flag} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the \
             server's certificate or its CA's, in PEM",
            path.display()
        ));
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
