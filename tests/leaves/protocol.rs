//! `protocol`: what a client's line means (text, each command with its arguments, the errors
//! of bad ones), the rules for nicks and room names, and the server's own lines.

use pollchat::limits::{LIST_LINE, MAX_NICK, MAX_ROOM_NAME};
use pollchat::protocol::{
    BACKPLANE_BACK, BACKPLANE_DOWN, BYE, Command, HELP, HISTORY_END, ParseError, SERVER_FULL,
    SHUTTING_DOWN, TOO_MANY_FROM_ADDRESS, already_in, history_header, is_valid_nick, is_valid_room,
    joined, left, line_too_long, now_in, parse, renamed, room_key, rooms, too_many_rooms, welcome,
    who,
};

#[test]
fn plain_text_is_said() {
    assert_eq!(parse("hello"), Ok(Some(Command::Say("hello"))));
    assert_eq!(parse("  "), Ok(None));
    assert_eq!(parse("//shrug"), Ok(Some(Command::Say("/shrug"))));
}

#[test]
fn commands_parse_with_their_arguments() {
    assert_eq!(parse("/nick Bob_2"), Ok(Some(Command::Nick("Bob_2"))));
    assert_eq!(parse("/NICK bob"), Ok(Some(Command::Nick("bob"))));
    assert_eq!(parse("/me waves"), Ok(Some(Command::Me("waves"))));
    assert_eq!(parse("/who"), Ok(Some(Command::Who)));
    assert_eq!(parse("/join #Rust"), Ok(Some(Command::Join("#Rust"))));
    assert_eq!(parse("/part"), Ok(Some(Command::Part)));
    assert_eq!(parse("/list"), Ok(Some(Command::List)));
    assert_eq!(parse("/help"), Ok(Some(Command::Help)));
    assert_eq!(parse("/quit"), Ok(Some(Command::Quit(None))));
    assert_eq!(parse("/quit  gone "), Ok(Some(Command::Quit(Some("gone")))));
    assert_eq!(
        parse("/msg bob  hi  there"),
        Ok(Some(Command::Msg {
            to: "bob",
            text: "hi  there"
        }))
    );
}

#[test]
fn bad_commands_say_what_is_wrong() {
    assert_eq!(parse("/frob x"), Err(ParseError::Unknown("frob")));
    assert_eq!(parse("/msg bob"), Err(ParseError::Usage("/msg NICK TEXT")));
    assert_eq!(parse("/me"), Err(ParseError::Usage("/me ACTION")));
    assert_eq!(parse("/nick a b"), Err(ParseError::BadNick("a b")));
    assert_eq!(parse("/join"), Err(ParseError::Usage("/join #ROOM")));
    assert_eq!(parse("/join rust"), Err(ParseError::BadRoom("rust")));
    assert_eq!(
        ParseError::BadRoom("#a b").to_string(),
        "invalid room name \"#a b\": use # and 1-32 of the characters A-Z a-z 0-9 _ -"
    );
    assert_eq!(
        ParseError::Unknown("frob").to_string(),
        "unknown command: /frob (try /help)"
    );
}

#[test]
fn nicks_follow_the_rules() {
    assert!(is_valid_nick("a"));
    assert!(is_valid_nick(&"x".repeat(MAX_NICK)));
    assert!(!is_valid_nick(&"x".repeat(MAX_NICK + 1)));
    assert!(!is_valid_nick(""));
    assert!(!is_valid_nick("é"));
    assert!(!is_valid_nick("<a>"));
}

#[test]
fn room_names_follow_the_rules() {
    assert!(is_valid_room("#a") && is_valid_room("#Rust_2-b"));
    assert!(is_valid_room(&format!("#{}", "x".repeat(MAX_ROOM_NAME))));
    assert!(!is_valid_room(&format!(
        "#{}",
        "x".repeat(MAX_ROOM_NAME + 1)
    )));
    for bad in ["", "#", "rust", "##a", "#a b", "#é", "#a,b"] {
        assert!(!is_valid_room(bad), "{bad:?}");
    }
    assert_eq!(room_key("#Rust"), room_key("#rUST"));
}

#[test]
fn a_long_room_list_goes_on_over_several_lines() {
    assert_eq!(
        rooms(&mut [("#rust", 2), ("#lobby", 4), ("#Ops", 2)]),
        "*** 3 rooms: #lobby (4), #Ops (2), #rust (2)\n"
    );
    let names: Vec<String> = (0..100).map(|i| format!("#room-{i:03}")).collect();
    let mut list: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let text = rooms(&mut list);
    assert!(text.lines().count() > 1, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("*** ") && l.len() < LIST_LINE + 40)
    );
    let listed = text.matches(" (1)").count();
    assert_eq!(listed, 100, "every room listed once");
}

#[test]
fn every_server_line_starts_with_the_marker() {
    for line in [
        welcome("a"),
        joined("a"),
        left("a", "quit"),
        renamed("a", "b"),
        who("#lobby", &mut ["b", "A"]),
        now_in("#a", 1),
        already_in("#a"),
        too_many_rooms("#a", 1),
        history_header("#a", 2),
        HISTORY_END.to_string(),
        rooms(&mut [("#a", 1)]),
        line_too_long(1),
        BYE.to_string(),
        SERVER_FULL.to_string(),
        TOO_MANY_FROM_ADDRESS.to_string(),
        SHUTTING_DOWN.to_string(),
        BACKPLANE_DOWN.to_string(),
        BACKPLANE_BACK.to_string(),
    ] {
        assert!(line.starts_with("*** ") && line.ends_with('\n'), "{line:?}");
    }
    assert!(HELP.lines().all(|l| l.starts_with("*** ")));
    assert_eq!(
        who("#lobby", &mut ["b", "A"]),
        "*** 2 users in #lobby: A, b\n"
    );
}
