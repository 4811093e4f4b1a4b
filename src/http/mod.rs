//! HTTP/1.1, as much of it as `--http-bind` needs: a request head read with `httparse`, the
//! routes, the responses, and the WebSocket upgrade's accept key. No I/O and no state: the
//! transport of an HTTP connection (`transport/web.rs`) feeds it bytes and acts on what it
//! says.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the chat page ([`chat.html`](chat.html), built into the binary) |
//! | `GET /ws` with a WebSocket upgrade | `101 Switching Protocols`: the connection joins the chat |
//! | `GET /metrics` | the counters in Prometheus's text format (rendered by the loop, `metrics.rs`) |
//! | any other path | 404 |
//! | `HEAD` of any of these | the same status and headers (`Content-Length` too), no body |
//! | another method | 405 |
//! | HTTP/1.1 without `Host` | 400 (RFC 9112 section 3.2; HTTP/1.0 needs none) |
//! | `GET /ws` with a bad upgrade | 400 (426 for a WebSocket version other than 13) |
//! | a head that does not parse | 400 |
//! | a head over 8 KiB | 431 |
//!
//! Every answer but the upgrade says `Connection: close` and the connection closes once it is
//! written: there is no keep-alive, so a connection holds no state beyond its one request.

use std::rc::Rc;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::limits::{HTTP_HEAD_MAX, HTTP_HEADERS_MAX};

/// The chat page: HTML, CSS and script in one file, nothing loaded from anywhere else.
pub const PAGE: &str = include_str!("chat.html");

/// The GUID RFC 6455 appends to a client's key before hashing it (section 1.3).
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a request asks for, once its head is all in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the chat page.
    Page,
    /// `GET /metrics`: the server's counters.
    Metrics,
    /// `GET /ws`, a valid upgrade: the value of `Sec-WebSocket-Accept` for the 101.
    Upgrade { accept: String },
    /// An error answer, and why, in one sentence for the client.
    Refuse(Status, &'static str),
}

/// The statuses the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    SwitchingProtocols,
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    UpgradeRequired,
    HeadTooLarge,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::SwitchingProtocols => 101,
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::UpgradeRequired => 426,
            Status::HeadTooLarge => 431,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::SwitchingProtocols => "Switching Protocols",
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::UpgradeRequired => "Upgrade Required",
            Status::HeadTooLarge => "Request Header Fields Too Large",
        }
    }
}

/// How far a request head has come.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// Not all in yet (and under [`HTTP_HEAD_MAX`]): read more.
    Partial,
    /// All in, `len` bytes of it: what it asks for, and its request line for the log.
    /// `head_only`: a `HEAD` request, answered as `GET` without the body.
    Complete {
        route: Route,
        len: usize,
        request: String,
        head_only: bool,
    },
}

/// Reads the request head at the start of `buf`, everything received so far.
pub fn read_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; HTTP_HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let refuse = |status, why| Head::Complete {
        route: Route::Refuse(status, why),
        len: buf.len(),
        request: String::from("(unreadable request)"),
        head_only: buf.starts_with(b"HEAD "),
    };
    match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > HTTP_HEAD_MAX => {
            refuse(Status::HeadTooLarge, "the request head is over 8 KiB")
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(len)) if len > HTTP_HEAD_MAX => {
            refuse(Status::HeadTooLarge, "the request head is over 8 KiB")
        }
        Ok(httparse::Status::Complete(len)) => Head::Complete {
            route: route(&request),
            len,
            request: format!(
                "{} {}",
                request.method.unwrap_or("?"),
                request.path.unwrap_or("?")
            ),
            head_only: request.method == Some("HEAD"),
        },
        Err(httparse::Error::TooManyHeaders) => refuse(
            Status::HeadTooLarge,
            "the request has more headers than the server reads",
        ),
        Err(_) => refuse(Status::BadRequest, "the request is not valid HTTP/1.1"),
    }
}

/// Which route a complete request takes.
fn route(request: &httparse::Request<'_, '_>) -> Route {
    let path = request.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if request.version == Some(1) && header(request, "Host").is_none() {
        return Route::Refuse(
            Status::BadRequest,
            "an HTTP/1.1 request needs a Host header",
        );
    }
    let head = match request.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => {
            return Route::Refuse(
                Status::MethodNotAllowed,
                "only GET and HEAD are served here",
            );
        }
    };
    match path {
        "/" => Route::Page,
        "/metrics" => Route::Metrics,
        // HEAD is GET without the body: a good upgrade would be a 101, which has no body to
        // drop, so HEAD cannot upgrade (RFC 6455 says GET) and is told so.
        "/ws" => match upgrade(request) {
            Route::Upgrade { .. } if head => {
                Route::Refuse(Status::BadRequest, "a WebSocket upgrade is a GET request")
            }
            route => route,
        },
        _ => Route::Refuse(Status::NotFound, "no such page: try / or /ws or /metrics"),
    }
}

/// The value of header `name` in `request`, if it has one in UTF-8.
fn header<'r>(request: &'r httparse::Request<'_, '_>, name: &str) -> Option<&'r str> {
    request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// `GET /ws`: the checks of RFC 6455 section 4.2.1, then the accept key.
fn upgrade(request: &httparse::Request<'_, '_>) -> Route {
    let header = |name: &str| header(request, name);
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let bad = |why| Route::Refuse(Status::BadRequest, why);
    if request.version != Some(1) || header("Host").is_none() {
        return bad("a WebSocket upgrade needs HTTP/1.1 and a Host header");
    }
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return bad("this is the WebSocket endpoint: connect with a WebSocket client");
    }
    if header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Route::Refuse(
            Status::UpgradeRequired,
            "only WebSocket version 13 is spoken",
        );
    }
    let Some(key) = header("Sec-WebSocket-Key").map(str::trim) else {
        return bad("the upgrade has no Sec-WebSocket-Key");
    };
    if BASE64.decode(key).map(|k| k.len()) != Ok(16) {
        return bad("Sec-WebSocket-Key is not 16 bytes in base64");
    }
    Route::Upgrade {
        accept: accept_key(key),
    }
}

/// `Sec-WebSocket-Accept` for a client's key: base64 of the SHA-1 of the key and the GUID.
/// (SHA-1 here proves only that the server read the handshake, not secrecy: ring, which
/// rustls already builds, calls it `SHA1_FOR_LEGACY_USE_ONLY`.)
pub fn accept_key(key: &str) -> String {
    let input = format!("{key}{WEBSOCKET_GUID}");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, input.as_bytes());
    BASE64.encode(digest.as_ref())
}

/// A whole response: status line, headers (those given, then the ones every answer has),
/// then the body, unless `head_only` (a `HEAD` request: its `Content-Length` is still the
/// body's, as RFC 9110 section 9.3.2 says).
fn response(status: Status, headers: &[(&str, &str)], body: &[u8], head_only: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", status.code(), status.reason());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Connection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// The page's response, made once and shared by every request for it, as a chat line is by
/// its recipients (`head_only`: without the page).
pub fn page(head_only: bool) -> Rc<[u8]> {
    static PAGE_RESPONSE: LazyLock<Vec<u8>> = LazyLock::new(|| {
        // Nothing but the page itself, its own script and style, and a connection to where
        // it came from: even a bug in its escaping could not load or send anything elsewhere.
        let policy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";
        let headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Security-Policy", policy),
        ];
        response(Status::Ok, &headers, PAGE.as_bytes(), false)
    });
    let len = PAGE_RESPONSE.len() - if head_only { PAGE.len() } else { 0 };
    Rc::from(&PAGE_RESPONSE[..len])
}

/// `/metrics`: the counters as Prometheus reads them.
pub fn metrics(body: &str, head_only: bool) -> Rc<[u8]> {
    let headers = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")];
    Rc::from(response(Status::Ok, &headers, body.as_bytes(), head_only))
}

/// An error answer, its reason in the body.
pub fn refusal(status: Status, why: &str, head_only: bool) -> Rc<[u8]> {
    let mut headers = vec![("Content-Type", "text/plain; charset=utf-8")];
    match status {
        Status::MethodNotAllowed => headers.push(("Allow", "GET, HEAD")),
        Status::UpgradeRequired => headers.push(("Sec-WebSocket-Version", "13")),
        _ => {}
    }
    let body = format!("{why}\n");
    Rc::from(response(status, &headers, body.as_bytes(), head_only))
}

/// The upgrade's answer: the last bytes of HTTP on the connection before its frames.
pub fn switching_protocols(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}
