//! The chat page in a real browser: Debian's chromium, headless, driven by playwright-core
//! (`tests/browser/chat.mjs`), chatting with an `nc`-style client through one server. Skips
//! loudly where chromium, Node.js or playwright-core is missing, except in CI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap in a test is a failed test, with its message"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::TestServer;
use common::tls::TestCert;
use common::web::{BrowserKit, browser_kit};
use pollchat::config::{HttpSettings, Motd};

/// The servers' message of the day, which the page must show (`tests/browser/chat.mjs`).
const MOTD: &str = "the browser test's message of the day";

/// How long the browser has for all its steps: chromium's start is the slow part, on a
/// loaded machine several seconds.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

/// A browser user and an `nc` user in one room: the page sets a nick, its line reaches the
/// `nc` client, the `nc` client's line (with HTML in it) is shown in the page as text, the
/// up arrow brings back what was typed, the MOTD and the topic the `nc` client sets are shown,
/// and a screenshot is saved.
#[test]
fn browser_page_chats_with_an_nc_client_and_shows_html_as_text() {
    let Some(kit) = browser_kit() else {
        return;
    };
    let server = TestServer::with(|c| {
        c.http = Some(HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 0))));
        c.motd = Some(Motd::Text(MOTD.to_string()));
    });
    let url = format!("http://{}/", server.http_addr.unwrap());
    chat_in_the_browser(&kit, &server, &url, "browser-chat.png");
}

/// The same over `--https-bind`: the page loaded over `https://` (the test certificate
/// trusted by the browser), so it can only open `wss://`, and chats with an `nc` client.
#[test]
fn browser_page_over_https_chats_over_wss_with_an_nc_client() {
    let Some(kit) = browser_kit() else {
        return;
    };
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |c| {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut web = HttpSettings::new(loopback);
        web.bind.clear();
        web.https_bind = vec![loopback];
        c.http = Some(web);
        c.motd = Some(Motd::Text(MOTD.to_string()));
    });
    let url = format!("https://localhost:{}/", server.https_addr.unwrap().port());
    chat_in_the_browser(&kit, &server, &url, "browser-chat-https.png");
}

/// Runs `tests/browser/chat.mjs` against the page at `url`, with an `nc` client of `server`
/// as the other user, and checks every step passed.
fn chat_in_the_browser(kit: &BrowserKit, server: &TestServer, url: &str, shot: &str) {
    let mut nc = server.connect();
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(shot);
    let _ = std::fs::remove_file(&screenshot);
    // Ended when the test ends, pass or fail: SIGTERM first, on which playwright closes the
    // chromium it started, then SIGKILL if node is still there. (Chromium runs in a process
    // group of its own; after a SIGKILL to node it exits only because its pipe to node
    // closes, which it did within 3 s in a trial, 2026-12-07.)
    let mut browser = common::Guard::spawn(
        Command::new(&kit.node)
            .arg(&kit.script)
            .arg(url)
            .arg(&screenshot)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .term_first(Duration::from_secs(5));
    // The browser's steps, as it prints them; the channel closes when it exits.
    let (tx, steps) = mpsc::channel();
    let stdout = browser.take_stdout().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    nc.read_until(|l| l == "<webby> hello from chromium");
    nc.send("this is <b>not bold</b> & <img src=x onerror=alert(1)>");
    // A topic set by the nc client: the page shows the change, and `/topic` typed there.
    nc.send("/topic set by nc");

    let deadline = Instant::now() + BROWSER_DEADLINE;
    let mut printed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match steps.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "the browser did not finish in time:\n{}",
                    printed.join("\n")
                );
            }
        }
    }
    let status = browser.wait();
    let printed = printed.join("\n");
    assert!(status.success(), "the browser test failed:\n{printed}");
    assert!(printed.contains("step: HTML shown as text"), "{printed}");
    assert!(printed.contains("step: MOTD shown"), "{printed}");
    assert!(printed.contains("step: topic shown"), "{printed}");
    assert!(screenshot.exists(), "no screenshot:\n{printed}");
}
