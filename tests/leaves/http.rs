//! `http`: the WebSocket accept key of the RFC, the routes and the status each wrong request
//! gets, a HEAD answer being the GET answer's head byte for byte, a head partial until its
//! blank line and refused past 8 KiB, and every answer but the upgrade closing with its length.

use pollchat::http::{Head, PAGE, Route, Status, accept_key, metrics, page, read_head, refusal};
use pollchat::limits::HTTP_HEAD_MAX;

fn route_of(head: &str) -> Route {
    match read_head(head.as_bytes()) {
        Head::Complete { route, .. } => route,
        Head::Partial => panic!("partial: {head:?}"),
    }
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn the_accept_key_is_the_one_in_the_rfc() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(
        route_of(UPGRADE),
        Route::Upgrade {
            accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string()
        }
    );
}

#[test]
fn routes_and_their_errors() {
    assert_eq!(route_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Page);
    assert_eq!(route_of("GET /?x=1 HTTP/1.0\r\n\r\n"), Route::Page);
    assert_eq!(route_of("HEAD /metrics HTTP/1.0\r\n\r\n"), Route::Metrics);
    let status = |head: &str| match route_of(head) {
        Route::Refuse(status, _) => status.code(),
        other => panic!("{other:?}"),
    };
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400, "HTTP/1.1 needs Host");
    assert_eq!(status("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
    assert_eq!(status("POST / HTTP/1.1\r\nHost: x\r\n\r\n"), 405);
    assert_eq!(status("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status(&UPGRADE.replace("GET", "HEAD")), 400);
    assert_eq!(status(&UPGRADE.replace("13", "8")), 426);
    assert_eq!(
        status(&UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
        400
    );
    assert_eq!(status("GET / HTTP/1.1\r\nbad header\r\n\r\n"), 400);
}

/// HEAD is GET's head: byte for byte, up to where the body would start.
#[test]
fn a_head_answer_is_the_get_answer_without_its_body() {
    let pairs = [
        (page(false), page(true)),
        (metrics("a 1\n", false), metrics("a 1\n", true)),
        (
            refusal(Status::NotFound, "no", false),
            refusal(Status::NotFound, "no", true),
        ),
    ];
    for (get, head) in pairs {
        let blank = get.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(
            &get[..blank],
            &head[..],
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
    assert!(matches!(
        read_head(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"),
        Head::Complete {
            head_only: true,
            ..
        }
    ));
}

#[test]
fn a_head_is_partial_until_its_blank_line_and_refused_past_8_kib() {
    assert_eq!(read_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(HTTP_HEAD_MAX));
    assert!(matches!(
        read_head(long.as_bytes()),
        Head::Complete {
            route: Route::Refuse(Status::HeadTooLarge, _),
            ..
        }
    ));
}

#[test]
fn every_answer_but_the_upgrade_closes_and_says_how_long_it_is() {
    let page = page(false);
    let text = String::from_utf8_lossy(&page);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("Connection: close\r\n"));
    assert!(text.contains(&format!("Content-Length: {}\r\n", PAGE.len())));
    let refused = refusal(Status::MethodNotAllowed, "no", false);
    assert!(String::from_utf8_lossy(&refused).contains("Allow: GET, HEAD\r\n"));
}
