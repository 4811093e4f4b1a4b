//! What a TLS failure means for the person at the terminal: one sentence that says what
//! went wrong and what to do about it.
//!
//! rustls's own `Display` is written for programmers: much of it is `Debug` of the enums
//! inside (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`,
//! `received fatal alert: HandshakeFailure`). So every error the client can meet is matched
//! here and given a sentence of its own, and none is passed through as rustls prints it.
//! (rustls's enums are `#[non_exhaustive]`, so each match ends in a general sentence, for
//! errors added after this was written.)

use rustls::{AlertDescription, CertificateError, Error};

use super::args::Target;

/// `TLS with HOST:PORT failed: ...`, the line the client ends with (status 5).
pub fn explain_tls(error: &Error, target: &Target) -> String {
    format!("TLS with {target} failed: {}", why(error, target))
}

/// The sentence after `failed: `.
fn why(error: &Error, target: &Target) -> String {
    match error {
        Error::InvalidCertificate(error) => certificate(error, target),
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. } => {
            "the server did not answer in TLS: is that a plain-text port? (pollchat serves \
             TLS on its --tls-bind port, 7879 unless told otherwise; drop --tls for a plain \
             one)"
                .to_string()
        }
        Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server asks for a client certificate, which pollchat-connect cannot send: \
             connect with a client that has one, or ask the server's operator"
                .to_string()
        }
        Error::AlertReceived(alert) => format!(
            "the server refused the TLS session (with a \"{}\" alert): its log says why",
            alert_words(*alert)
        ),
        Error::PeerIncompatible(_) => "the server and this client have no TLS version or \
             cipher suite in common (this client speaks TLS 1.2 and 1.3 with current suites): \
             the server's TLS needs updating"
            .to_string(),
        Error::PeerMisbehaved(_) => "the server broke the TLS protocol, so the session was \
             ended: tell the server's operator"
            .to_string(),
        Error::NoCertificatesPresented => {
            "the server sent no certificate: tell the server's operator".to_string()
        }
        Error::DecryptError | Error::PeerSentOversizedRecord => {
            "a record from the server did not decrypt, so the session was ended: something \
             between here and the server changed it; try again"
                .to_string()
        }
        Error::FailedToGetCurrentTime => "this machine's clock could not be read, and \
             certificates cannot be checked without it: set the clock"
            .to_string(),
        _ => "rustls failed in a way this client does not expect: try again, and report it \
              if it happens again"
            .to_string(),
    }
}

/// Why the server's certificate was refused, and what to do.
/// The name connected to is not one the certificate presents: which names it does.
fn not_valid_for(host: &str, presented: &[String]) -> String {
    let names: Vec<&str> = presented.iter().filter_map(|n| presented_name(n)).collect();
    let listed = match names.as_slice() {
        // webpki looks only at subjectAltName, never at the subject's CN.
        [] => " (it names no host in subjectAltName, and the CN does not count)".to_string(),
        names => format!(" (it is for {})", names.join(", ")),
    };
    format!(
        "the server's certificate is not valid for {host}{listed}: connect with a name it is \
         for, or give the server a certificate for {host}"
    )
}

fn certificate(error: &CertificateError, target: &Target) -> String {
    let host = &target.host;
    match error {
        CertificateError::UnknownIssuer => "the server's certificate is not signed by an \
             authority this client trusts (for a self-signed server, pass its certificate with \
             --ca PEM)"
            .to_string(),
        CertificateError::NotValidForName => format!(
            "the server's certificate is not valid for {host}: connect with a name it is \
             for, or give the server a certificate for {host}"
        ),
        CertificateError::NotValidForNameContext { presented, .. } => {
            not_valid_for(host, presented)
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired: the server needs a new one (or this \
             machine's clock is wrong)"
                .to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet: check this machine's clock (or the \
             server's certificate was dated in the future)"
                .to_string()
        }
        CertificateError::BadEncoding => "the server's certificate is not valid DER: the \
             server needs a new one"
            .to_string(),
        // webpki checked the signature with the key of the trusted certificate named as the
        // issuer, and it is not that key's (of another kind, the second case: RSA for an ECDSA
        // signature). Most often --ca holds a different authority made with the same name.
        CertificateError::BadSignature
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "the server's certificate is not signed by the authority this client trusts under \
             its issuer's name (a different certificate with the same name, or the server's \
             was altered): pass the certificate that signed it with --ca PEM, and do not \
             trust this server until it checks"
                .to_string()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not for TLS servers (its extended key usage lacks \
             serverAuth): the server needs one that is"
                .to_string()
        }
        CertificateError::UnsupportedSignatureAlgorithmContext { .. } => {
            "the server's certificate is signed with an algorithm this client does not \
             accept (it takes RSA, ECDSA and Ed25519 with SHA-2): the server needs a new one"
                .to_string()
        }
        CertificateError::Other(other) if is_ca_used_as_end_entity(other) => {
            "the server's certificate is marked as an authority (CA:TRUE, which \
             `openssl req -x509` sets), and such a certificate is trusted only as itself: \
             pass that exact certificate with --ca PEM"
                .to_string()
        }
        _ => format!(
            "the server's certificate breaks a rule this client checks: look at it with \
             `openssl s_client -connect {target} -showcerts`; if it is the server's own, \
             pass it with --ca PEM"
        ),
    }
}

/// webpki refused a certificate marked `CA:TRUE` as the server's own (rustls passes that
/// refusal on as webpki's error inside an `OtherError`).
fn is_ca_used_as_end_entity(other: &rustls::OtherError) -> bool {
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

/// A name as webpki lists the certificate's names (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`), as the user would type it; `None` for the other kinds.
fn presented_name(presented: &str) -> Option<&str> {
    if let Some(dns) = presented.strip_prefix("DnsName(\"") {
        return dns.strip_suffix("\")");
    }
    presented.strip_prefix("IpAddress(")?.strip_suffix(')')
}

/// An alert's name in words: `HandshakeFailure` is "handshake failure", `UnknownCA`
/// "unknown ca" (a new word where a capital follows a small letter).
fn alert_words(alert: AlertDescription) -> String {
    let mut words = String::new();
    let mut after_small = false;
    for c in format!("{alert:?}").chars() {
        if c.is_ascii_uppercase() && after_small {
            words.push(' ');
        }
        after_small = c.is_ascii_lowercase();
        words.push(c.to_ascii_lowercase());
    }
    words
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]

    use super::*;

    /// Alerts are named in words, not as the enum's `Debug`.
    #[test]
    fn alert_names_read_as_words() {
        assert_eq!(
            alert_words(AlertDescription::HandshakeFailure),
            "handshake failure"
        );
        assert_eq!(alert_words(AlertDescription::UnknownCA), "unknown ca");
    }

    /// A certificate with no subjectAltName (a CN only, which webpki does not look at) is
    /// said to name no host, rather than to be "for" nothing.
    #[test]
    fn a_certificate_naming_no_host_says_the_cn_does_not_count() {
        let target = Target {
            host: "localhost".to_string(),
            port: 7879,
        };
        let error = CertificateError::NotValidForNameContext {
            expected: rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            presented: vec![],
        };
        assert_eq!(
            certificate(&error, &target),
            "the server's certificate is not valid for localhost (it names no host in \
             subjectAltName, and the CN does not count): connect with a name it is for, or \
             give the server a certificate for localhost"
        );
    }

    /// webpki's names for a certificate's names, as the user would type them.
    #[test]
    fn presented_names_read_as_typed() {
        assert_eq!(presented_name("DnsName(\"localhost\")"), Some("localhost"));
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), Some("127.0.0.1"));
        assert_eq!(presented_name("DirectoryName"), None);
    }
}
