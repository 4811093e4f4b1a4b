//! `--ca` as a pin: a server whose certificate is exactly one of those in the `--ca` file is
//! trusted, even where webpki's rules would refuse it.
//!
//! rustls checks certificates with webpki, which follows the rules of the Web PKI: a server's
//! certificate is issued by an authority, and trust runs along the chain from it to a root.
//! One rule on the way is that the server's own certificate is not an authority itself: one
//! marked `CA:TRUE` is refused (`CaUsedAsEndEntity`). But `openssl req -x509`, the usual way to
//! make a self-signed certificate, marks it `CA:TRUE` (OpenSSL's default `v3_ca` extensions),
//! and OpenSSL, curl and Python's `ssl` accept it when it is in their CA file: a certificate
//! the user handed over is trusted as itself, whatever it says about signing others.
//!
//! [`PinnedVerifier`] does the same, and no more:
//!
//! 1. **webpki first**, with the public CAs and the `--ca` certificates as roots. What it
//!    accepts is accepted, so a `--ca` file holding a real authority works as it always did.
//! 2. **If webpki refuses**, and the certificate the server sent is byte for byte one of the
//!    `--ca` certificates, it is accepted if it is valid for the name connected to and now is
//!    within its dates. Any other certificate keeps webpki's refusal, unchanged.
//!
//! What a pin stands in for is the chain: who issued the certificate, whether it may sign
//! others, what it may be used for, what its own signature is worth. The user vouched for
//! the certificate itself, so none of that adds anything. Three checks stay:
//!
//! - **The handshake signatures.** rustls asks the verifier for them apart from the
//!   certificate, and [`PinnedVerifier`] leaves them to webpki as they are. They prove that
//!   the server holds the private key of the certificate it sent. A certificate is public
//!   (anyone who ever connected has a copy), so without them a pin would prove nothing.
//! - **The name.** The user pinned a certificate for some host; the same certificate turning
//!   up at a host it does not name is a copied key or a mistyped address, and is refused, as
//!   curl and Python refuse it.
//! - **The dates.** Past its end date nobody promises that the key is still kept secret.
//!   OpenSSL (and so curl and Python) checks the dates of a trusted certificate too.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// webpki's verifier, and the certificates the user pinned. See the module documentation.
#[derive(Debug)]
pub struct PinnedVerifier {
    /// rustls's own verifier, with the public CAs and the `--ca` certificates as roots.
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates in the `--ca` file, as they were read (DER): the only ones accepted
    /// past a refusal from `webpki`.
    pinned: Vec<CertificateDer<'static>>,
}

impl PinnedVerifier {
    pub fn new(
        webpki: Arc<WebPkiServerVerifier>,
        pinned: Vec<CertificateDer<'static>>,
    ) -> PinnedVerifier {
        PinnedVerifier { webpki, pinned }
    }

    /// `certificate` is, byte for byte, one the user pinned. Bytes, not a key or a subject:
    /// another certificate with the same key or name is not what the user vouched for.
    fn is_pinned(&self, certificate: &CertificateDer<'_>) -> bool {
        self.pinned
            .iter()
            .any(|pin| pin.as_ref() == certificate.as_ref())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let webpki = &self.webpki;
        let verdict = webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        let refused = match verdict {
            Ok(verified) => return Ok(verified),
            Err(refused) => refused,
        };
        if !self.is_pinned(end_entity) {
            return Err(refused);
        }
        // Pinned: the pin stands in for the chain. webpki's refusal is not reported, since it
        // is about the chain (for an `openssl req -x509` certificate, `CaUsedAsEndEntity`);
        // if the certificate fails here, this says what is wrong with it.
        let certificate = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&certificate, server_name)?;
        within_dates(end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signatures, pinned or not, are webpki's (see the module documentation).

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.webpki.root_hint_subjects()
    }
}

/// `now` is within the certificate's dates (notBefore and notAfter, inclusive), with the
/// errors webpki gives for the same thing, so they read the same to the user.
fn within_dates(certificate: &[u8], now: UnixTime) -> Result<(), rustls::Error> {
    let (not_before, not_after) = validity(certificate).ok_or(CertificateError::BadEncoding)?;
    if now < not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before,
        }
        .into());
    }
    if now > not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after,
        }
        .into());
    }
    Ok(())
}

// Reading the two dates out of a certificate.
//
// webpki checks a certificate's dates only while it builds a chain, and keeps that code to
// itself; x509-parser would read them, at the price of a dozen more crates. What is needed is
// the path to one field, so it is here, in DER as RFC 5280 lays it out:
//
//   Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
//       version [0] (optional), serialNumber INTEGER, signature SEQUENCE, issuer SEQUENCE,
//       validity SEQUENCE { notBefore Time, notAfter Time }, ... }, ... }
//
// The bytes read are those of the user's own certificate (equal to the `--ca` file's), which
// webpki has parsed already for the name check. Anything malformed is `None` all the same,
// never a panic.

const SEQUENCE: u8 = 0x30;
/// `[0]`, constructed: the explicitly tagged version. Absent in a version 1 certificate.
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's notBefore and notAfter.
fn validity(certificate: &[u8]) -> Option<(UnixTime, UnixTime)> {
    let (certificate, _) = expect(SEQUENCE, certificate)?;
    let (mut tbs, _) = expect(SEQUENCE, certificate)?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    for _serial_signature_issuer in 0..3 {
        tbs = element(tbs)?.2;
    }
    let (validity, _) = expect(SEQUENCE, tbs)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

/// The element at the start of `input`, which must have `tag`: its contents, and what
/// follows it.
fn expect(tag: u8, input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = element(input)?;
    (found == tag).then_some((contents, rest))
}

/// The DER element at the start of `input`: its tag, its contents, and what follows it. The
/// length is one byte below 128, or else its low bits say how many bytes (here at most 4)
/// hold it, big-endian.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let length = bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    let (contents, rest) = rest.split_at_checked(length)?;
    Some((tag, contents, rest))
}

/// A Time at the start of `input`, and what follows it. RFC 5280 (4.1.2.5) allows two forms,
/// both in UTC with seconds: UTCTime `YYMMDDHHMMSSZ` (a year below 50 is 20YY, else 19YY)
/// until 2049, GeneralizedTime `YYYYMMDDHHMMSSZ` from 2050.
fn time(input: &[u8]) -> Option<(UnixTime, &[u8])> {
    let (tag, text, rest) = element(input)?;
    let (year, text) = match tag {
        UTC_TIME => {
            let (yy, text) = number(text, 2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text)
        }
        GENERALIZED_TIME => number(text, 4)?,
        _ => return None,
    };
    let (month, text) = number(text, 2)?;
    let (day, text) = number(text, 2)?;
    let (hour, text) = number(text, 2)?;
    let (minute, text) = number(text, 2)?;
    let (second, text) = number(text, 2)?;
    if text != b"Z" || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_since_1970(year, month, day)?;
    let seconds = ((days * 24 + hour) * 60 + minute) * 60 + second;
    Some((
        UnixTime::since_unix_epoch(Duration::from_secs(seconds)),
        rest,
    ))
}

/// The number written in the first `digits` bytes of `text` (ASCII digits only), and the rest.
fn number(text: &[u8], digits: usize) -> Option<(u64, &[u8])> {
    let (digits, rest) = text.split_at_checked(digits)?;
    let mut value = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
    }
    Some((value, rest))
}

/// Days from 1970-01-01 to the given date (`None` before 1970, which a `UnixTime` cannot
/// hold, or for a day the month does not have). Gregorian calendar: a leap year is one
/// divisible by 4, except by 100, except by 400.
fn days_since_1970(year: u64, month: u64, day: u64) -> Option<u64> {
    const BEFORE_MONTH: [u64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    const LENGTH: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let index = usize::try_from(month.checked_sub(1)?).ok()?;
    let length = LENGTH.get(index)? + u64::from(leap && month == 2);
    if day == 0 || day > length {
        return None;
    }
    let days_before_year = |year: u64| {
        let y = year - 1;
        y * 365 + y / 4 - y / 100 + y / 400
    };
    let leap_day_passed = u64::from(leap && month > 2);
    let days = days_before_year(year) + BEFORE_MONTH[index] + leap_day_passed + day - 1;
    days.checked_sub(days_before_year(1970))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]

    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, date_time_ymd};
    use rustls::RootCertStore;

    const DAY: u64 = 24 * 60 * 60;

    fn at(seconds: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(seconds))
    }

    /// A self-signed certificate for `localhost` marked `CA:TRUE`, as `openssl req -x509`
    /// makes it, valid from `not_before` to `not_after` (year, month, day).
    fn ca_certificate(
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    /// The verifier `--ca FILE` makes, FILE holding `pinned`.
    fn verifier(pinned: &[CertificateDer<'static>]) -> PinnedVerifier {
        let mut roots = RootCertStore::empty();
        for certificate in pinned {
            roots.add(certificate.clone()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        PinnedVerifier::new(webpki, pinned.to_vec())
    }

    fn verify(
        verifier: &PinnedVerifier,
        certificate: &CertificateDer<'_>,
        name: &str,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier.verify_server_cert(certificate, &[], &name, &[], now)
    }

    /// 2026-06-01, inside the dates the tests' certificates are made with.
    fn in_2026() -> UnixTime {
        at(days_since_1970(2026, 6, 1).unwrap() * DAY)
    }

    /// The dates are read as written, in both of RFC 5280's forms (rcgen writes UTCTime up
    /// to 2049 and GeneralizedTime from 2050, as the RFC says), leap days included.
    #[test]
    fn validity_reads_both_time_forms() {
        let cases = [
            ((1999, 12, 31), 946_598_400),
            ((2000, 2, 29), 951_782_400),
            ((2049, 12, 31), 2_524_521_600),
            ((2050, 1, 1), 2_524_608_000),
            ((4096, 1, 1), 67_090_118_400),
        ];
        for (date, seconds) in cases {
            let certificate = ca_certificate((1975, 1, 1), date);
            let (not_before, not_after) = validity(&certificate).unwrap();
            assert_eq!(not_before, at(157_766_400), "{date:?}");
            assert_eq!(not_after, at(seconds), "{date:?}");
        }
    }

    /// Every truncation of a certificate, and garbage, is `None`: never a panic.
    #[test]
    fn validity_of_malformed_input_is_none() {
        let certificate = ca_certificate((2020, 1, 1), (2030, 1, 1));
        for end in 0..certificate.len() {
            assert_eq!(validity(&certificate[..end]), None, "cut at {end}");
        }
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x80]), None);
        assert_eq!(days_since_1970(2023, 2, 29), None);
        assert_eq!(days_since_1970(1969, 12, 31), None);
        assert_eq!(days_since_1970(2024, 2, 29), Some(19_782));
    }

    /// A pinned `CA:TRUE` certificate is accepted for its name within its dates, which
    /// webpki alone refuses.
    #[test]
    fn pinned_ca_certificate_is_accepted_for_its_name() {
        let certificate = ca_certificate((2020, 1, 1), (2030, 1, 1));
        let pinned = verifier(std::slice::from_ref(&certificate));
        verify(&pinned, &certificate, "localhost", in_2026()).unwrap();
        let refused = pinned
            .webpki
            .verify_server_cert(
                &certificate,
                &[],
                &ServerName::try_from("localhost").unwrap(),
                &[],
                in_2026(),
            )
            .unwrap_err();
        assert!(
            refused.to_string().contains("CaUsedAsEndEntity"),
            "{refused}"
        );
    }

    /// Pinned, but for another name: refused for the name.
    #[test]
    fn pinned_certificate_for_another_name_is_refused() {
        let certificate = ca_certificate((2020, 1, 1), (2030, 1, 1));
        let pinned = verifier(std::slice::from_ref(&certificate));
        let refused = verify(&pinned, &certificate, "example.com", in_2026()).unwrap_err();
        assert!(
            matches!(
                refused,
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            ),
            "{refused:?}"
        );
    }

    /// Pinned, but outside its dates: refused as expired, or as not valid yet.
    #[test]
    fn pinned_certificate_outside_its_dates_is_refused() {
        let certificate = ca_certificate((2020, 1, 1), (2030, 1, 1));
        let pinned = verifier(std::slice::from_ref(&certificate));
        let after = at(days_since_1970(2030, 1, 2).unwrap() * DAY);
        let before = at(days_since_1970(2019, 12, 31).unwrap() * DAY);
        let expired = verify(&pinned, &certificate, "localhost", after).unwrap_err();
        assert!(
            matches!(
                expired,
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{expired:?}"
        );
        let early = verify(&pinned, &certificate, "localhost", before).unwrap_err();
        assert!(
            matches!(
                early,
                rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
            ),
            "{early:?}"
        );
    }

    /// A `CA:TRUE` certificate that is not the pinned one keeps webpki's refusal.
    #[test]
    fn certificate_not_pinned_keeps_webpkis_refusal() {
        let pin = ca_certificate((2020, 1, 1), (2030, 1, 1));
        let other = ca_certificate((2020, 1, 1), (2030, 1, 1));
        let pinned = verifier(&[pin]);
        let refused = verify(&pinned, &other, "localhost", in_2026()).unwrap_err();
        assert!(
            refused.to_string().contains("CaUsedAsEndEntity"),
            "{refused}"
        );
    }
}
