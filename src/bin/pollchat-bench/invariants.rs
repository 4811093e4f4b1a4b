//! The promises the chaos scenario checks, as pure functions over what the well-behaved
//! clients recorded, so each check can be shown to fail on a crafted record (see the tests
//! below) and not only to pass against a working server.
//!
//! A chatter's record is the list of chatter lines it received live, in arrival order, each
//! named by `(sender, seq)`: the sender's chatter number and the line's number among that
//! sender's lines. Every chatter is in one room (`rooms[c]` names chatter `c`'s), and pollchat
//! does not echo a line to its sender, so a chatter's record holds every line of every *other*
//! chatter of its room, and nothing of any other room. What a chatter was replayed as history
//! when it entered its room is not in its record: [`replays_follow`] judges it apart.

use std::collections::{BTreeMap, HashMap};

/// One chatter line: `(sender, seq)`.
pub type LineId = (u32, u64);

/// Every line of every chatter reached every other chatter of its room exactly once.
/// `sent[s]` is how many lines chatter `s` sent (numbered `0..sent[s]`); `rooms[c]` is chatter
/// `c`'s room and `received[c]` its record. Lines from another room's chatters are left to
/// [`rooms_apart`].
pub fn exactly_once(sent: &[u64], rooms: &[&str], received: &[Vec<LineId>]) -> Result<(), String> {
    for (chatter, record) in received.iter().enumerate() {
        let room = rooms.get(chatter).copied().unwrap_or_default();
        let same_room = |s: usize| s != chatter && rooms.get(s) == Some(&room);
        // Per sender, how many times each of its lines arrived here.
        let mut seen: Vec<Vec<u32>> = sent
            .iter()
            .map(|&n| vec![0; usize::try_from(n).unwrap_or(0)])
            .collect();
        for &(sender, seq) in record {
            let sender_at = usize::try_from(sender).unwrap_or(usize::MAX);
            if sender_at != chatter && rooms.get(sender_at).is_some_and(|&r| r != room) {
                continue;
            }
            let count = Some(sender_at)
                .filter(|&s| same_room(s))
                .and_then(|s| seen.get_mut(s))
                .and_then(|lines| lines.get_mut(usize::try_from(seq).ok()?));
            match count {
                Some(count) => *count += 1,
                None => {
                    return Err(format!(
                        "chatter {chatter} received line {seq} of chatter {sender}, which was \
                         never sent to it"
                    ));
                }
            }
        }
        for (sender, lines) in seen.iter().enumerate().filter(|&(s, _)| same_room(s)) {
            if let Some((seq, &n)) = lines.iter().enumerate().find(|&(_, &n)| n != 1) {
                let what = if n == 0 { "never" } else { "more than once" };
                return Err(format!(
                    "chatter {chatter} received line {seq} of chatter {sender} {what} \
                     ({n} times)"
                ));
            }
        }
    }
    Ok(())
}

/// No chatter received a line of a chatter in another room. `rooms[c]` is chatter `c`'s
/// room, `received[c]` its record.
pub fn rooms_apart(rooms: &[&str], received: &[Vec<LineId>]) -> Result<(), String> {
    for (chatter, record) in received.iter().enumerate() {
        let room = rooms.get(chatter).copied().unwrap_or_default();
        let stray = record.iter().find_map(|&(sender, seq)| {
            let theirs = rooms.get(usize::try_from(sender).ok()?)?;
            (*theirs != room).then_some((sender, seq, theirs))
        });
        if let Some((sender, seq, theirs)) = stray {
            return Err(format!(
                "chatter {chatter} in {room} received line {seq} of chatter {sender}, \
                 said in {theirs}"
            ));
        }
    }
    Ok(())
}

/// There is one order of all the lines that every chatter's record follows, and it keeps
/// each sender's lines in the order they were sent.
///
/// Each record, and each sender's own sequence, says "this line came before that one". A
/// single order agreeing with all of them exists exactly when those precedences have no
/// cycle, which a topological sort (Kahn's algorithm) finds in time linear in the records.
/// Comparing the records two by two would not be enough: three chatters can each agree
/// with each other on the lines they share and still describe a cycle.
pub fn one_global_order(sent: &[u64], received: &[Vec<LineId>]) -> Result<(), String> {
    let mut index: HashMap<LineId, usize> = HashMap::new();
    let mut names: Vec<LineId> = Vec::new();
    let mut id = |line: LineId, names: &mut Vec<LineId>| {
        *index.entry(line).or_insert_with(|| {
            names.push(line);
            names.len() - 1
        })
    };
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for (sender, &n) in sent.iter().enumerate() {
        let sender = u32::try_from(sender).unwrap_or(u32::MAX);
        for seq in 1..n {
            edges.push((
                id((sender, seq - 1), &mut names),
                id((sender, seq), &mut names),
            ));
        }
    }
    for record in received {
        for pair in record.windows(2) {
            edges.push((id(pair[0], &mut names), id(pair[1], &mut names)));
        }
    }
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    let mut before_count = vec![0usize; names.len()];
    for &(a, b) in &edges {
        after[a].push(b);
        before_count[b] += 1;
    }
    let mut free: Vec<usize> = (0..names.len()).filter(|&n| before_count[n] == 0).collect();
    let mut placed = 0;
    while let Some(line) = free.pop() {
        placed += 1;
        for &next in &after[line] {
            before_count[next] -= 1;
            if before_count[next] == 0 {
                free.push(next);
            }
        }
    }
    if placed == names.len() {
        return Ok(());
    }
    // Name one line caught in a cycle, for the report.
    let stuck = (0..names.len()).find(|&n| before_count[n] > 0).unwrap_or(0);
    let (sender, seq) = names.get(stuck).copied().unwrap_or((0, 0));
    Err(format!(
        "the chatters disagree on the order: {} of {} lines cannot be placed in one order \
         (line {seq} of chatter {sender} among them)",
        names.len() - placed,
        names.len()
    ))
}

/// What a client was replayed on entering a room, as far as the lines were said by the
/// chatters whose records [`replays_follow`] is given: those lines, in the order replayed.
#[derive(Debug)]
pub struct Replay<'a> {
    /// Who got it, for the report: "chatter 3", "pinger".
    pub who: &'a str,
    /// The room it entered.
    pub room: &'a str,
    pub lines: Vec<LineId>,
}

/// The replays a round's clients got on entering a room agree with what the previous round's
/// chatters said there: `sent`, `rooms` and `records` are that round's (as for
/// [`exactly_once`]), `emptied` the rooms nobody was in since.
///
/// - A room that emptied replays none of those lines: its history went with it.
/// - A replay holds only lines said in the room entered.
/// - Of each sender, a replay holds its *last* lines, in the order sent: a room's history is
///   its latest lines, and each sender's lines reach the room in order, so whatever the
///   window keeps of one sender is the end of what it said.
/// - Across senders, the replays follow the order the room's chatters saw live: one order
///   must hold for the records and the replays together ([`one_global_order`]), so a replay
///   that swapped two lines, or held one twice, breaks it.
pub fn replays_follow(
    sent: &[u64],
    rooms: &[&str],
    records: &[Vec<LineId>],
    replays: &[Replay],
    emptied: &[&str],
) -> Result<(), String> {
    for replay in replays {
        let Some(&(sender, seq)) = replay.lines.first() else {
            continue;
        };
        if emptied.contains(&replay.room) {
            return Err(format!(
                "{} entering {} was replayed line {seq} of chatter {sender}, said before the \
                 room emptied",
                replay.who, replay.room
            ));
        }
        last_lines_of_the_room(sent, rooms, replay)?;
    }
    let mut together = records.to_vec();
    together.extend(replays.iter().map(|r| r.lines.clone()));
    one_global_order(sent, &together)
        .map_err(|e| format!("the replays and what the chatters saw live: {e}"))
}

/// Every line of `replay` was said in its room, and of each sender it holds the last lines,
/// in the order sent.
fn last_lines_of_the_room(sent: &[u64], rooms: &[&str], replay: &Replay) -> Result<(), String> {
    let mut held: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for &(sender, seq) in &replay.lines {
        let said_in = usize::try_from(sender).ok().and_then(|s| rooms.get(s));
        if said_in != Some(&replay.room) {
            let said_in = said_in.copied().unwrap_or("no room");
            return Err(format!(
                "{} entering {} was replayed line {seq} of chatter {sender}, said in {said_in}",
                replay.who, replay.room
            ));
        }
        held.entry(sender).or_default().push(seq);
    }
    for (sender, seqs) in held {
        let total = usize::try_from(sender)
            .ok()
            .and_then(|s| sent.get(s))
            .copied()
            .unwrap_or(0);
        let first = total.saturating_sub(seqs.len() as u64);
        if !seqs.iter().copied().eq(first..total) {
            return Err(format!(
                "{} entering {} was replayed lines {seqs:?} of chatter {sender}, not its last \
                 {} of {total} in order",
                replay.who,
                replay.room,
                seqs.len()
            ));
        }
    }
    Ok(())
}

/// What a terminal would show of a relayed line is exactly what was meant: valid UTF-8
/// (checked before it gets here) with no control character but tab. Checked independently of
/// the server's own sanitiser, so a bug there cannot hide itself.
///
/// Eight bytes at a time first: the chaos run's well-behaved clients check every line they
/// get, flood lines of 4 KB included, and in the debug build `cargo test` runs, a walk over
/// the characters took three quarters of their thread's time, which on a busy machine was
/// more than it got. A control character is a byte under 0x20 or 0x7F (C0, DEL) or, in
/// UTF-8, 0xC2 then 0x80 to 0x9F (C1): a line whose words have none of those bytes, nor
/// 0xC2 at all, is clean; any other goes through the characters.
pub fn is_clean_text(line: &str) -> bool {
    let mut words = line.as_bytes().chunks_exact(8);
    let suspect = words
        .by_ref()
        .any(|word| may_hold_control(u64::from_le_bytes(word.try_into().unwrap_or([0; 8]))));
    if suspect
        || words
            .remainder()
            .iter()
            .any(|&b| b < 0x20 || b == 0x7f || b == 0xc2)
    {
        return !line.chars().any(|c| c.is_control() && c != '\t');
    }
    true
}

/// Whether any byte of `word` is under 0x20, 0x7F or 0xC2 (tab is under 0x20: a line with
/// one is walked). The classic tests for a byte under n and for a zero byte, on all eight
/// at once.
fn may_hold_control(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let under_0x20 = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    under_0x20 | zero(word ^ (ONES * 0x7f)) | zero(word ^ (ONES * 0xc2)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` chatters, two lines each, relayed in one order: 0, 1, ..., n-1, then again.
    fn fair(n: u32) -> (Vec<u64>, Vec<Vec<LineId>>) {
        let order: Vec<LineId> = (0..2)
            .flat_map(|seq| (0..n).map(move |s| (s, seq)))
            .collect();
        let records = (0..n)
            .map(|me| order.iter().copied().filter(|&(s, _)| s != me).collect())
            .collect();
        (vec![2; n as usize], records)
    }

    /// Everyone in one room.
    fn one_room(sent: &[u64]) -> Vec<&'static str> {
        vec!["#lobby"; sent.len()]
    }

    /// Chatters 0 to 2 in #lobby and 3 to 5 in #chaos, two lines each, each room's relayed
    /// in one order.
    fn two_rooms() -> (Vec<u64>, Vec<&'static str>, Vec<Vec<LineId>>) {
        let (sent, lobby) = fair(3);
        let chaos = lobby
            .iter()
            .map(|record| record.iter().map(|&(s, seq)| (s + 3, seq)).collect());
        let rooms = [["#lobby"; 3], ["#chaos"; 3]].concat();
        (
            [sent.clone(), sent].concat(),
            rooms,
            lobby.iter().cloned().chain(chaos).collect(),
        )
    }

    #[test]
    fn a_fair_relay_passes_both_checks() {
        let (sent, records) = fair(3);
        assert_eq!(exactly_once(&sent, &one_room(&sent), &records), Ok(()));
        assert_eq!(one_global_order(&sent, &records), Ok(()));
    }

    #[test]
    fn a_lost_duplicated_or_echoed_line_fails_exactly_once() {
        let (sent, mut records) = fair(3);
        records[0].pop();
        assert!(
            exactly_once(&sent, &one_room(&sent), &records)
                .unwrap_err()
                .contains("never")
        );

        let (sent, mut records) = fair(3);
        records[1].push((0, 1));
        assert!(
            exactly_once(&sent, &one_room(&sent), &records)
                .unwrap_err()
                .contains("more than once")
        );

        let (sent, mut records) = fair(3);
        records[2].push((2, 0));
        assert!(
            exactly_once(&sent, &one_room(&sent), &records)
                .unwrap_err()
                .contains("never sent")
        );

        let (sent, mut records) = fair(3);
        records[2].push((0, 7));
        assert!(exactly_once(&sent, &one_room(&sent), &records).is_err());
    }

    #[test]
    fn two_chatters_seeing_two_lines_swapped_fails_the_order() {
        // Chatters 2 and 3 both see (0,0) then (1,0); chatter 3 now sees them swapped. (With
        // three chatters no two see both lines of two other senders, so a swap there would be
        // a different, equally valid, order.)
        let (sent, mut records) = fair(4);
        assert_eq!(records[3][..2], [(0, 0), (1, 0)]);
        records[3].swap(0, 1);
        assert!(one_global_order(&sent, &records).is_err());
        // Everyone still got everything once: only the order check can catch this.
        assert_eq!(exactly_once(&sent, &one_room(&sent), &records), Ok(()));
    }

    #[test]
    fn a_cycle_no_pair_of_chatters_can_see_fails_the_order() {
        // Each chatter sends one line and sees the other two. Any two chatters share one
        // line, so two by two they cannot disagree; yet no single order satisfies all three.
        let sent = vec![1, 1, 1];
        let records = vec![
            vec![(1, 0), (2, 0)],
            vec![(2, 0), (0, 0)],
            vec![(0, 0), (1, 0)],
        ];
        assert_eq!(exactly_once(&sent, &one_room(&sent), &records), Ok(()));
        assert!(one_global_order(&sent, &records).is_err());
    }

    #[test]
    fn a_sender_overtaking_itself_fails_the_order() {
        // Everyone agrees, but a sender's second line came before its first.
        let sent = vec![2, 0];
        let records = vec![vec![], vec![(0, 1), (0, 0)]];
        assert!(one_global_order(&sent, &records).is_err());
    }

    #[test]
    fn each_room_is_judged_on_its_own_lines() {
        let (sent, rooms, records) = two_rooms();
        assert_eq!(exactly_once(&sent, &rooms, &records), Ok(()));
        assert_eq!(rooms_apart(&rooms, &records), Ok(()));
        // One room's order says nothing of the other's: the two can interleave any way.
        assert_eq!(one_global_order(&sent, &records), Ok(()));

        // A line of #chaos that reached #lobby breaks the rooms apart, and only that.
        let (sent, rooms, mut records) = two_rooms();
        records[0].push((4, 1));
        let apart = rooms_apart(&rooms, &records).unwrap_err();
        assert!(
            apart.contains("chatter 0 in #lobby received line 1 of chatter 4"),
            "{apart}"
        );
        assert!(apart.ends_with("said in #chaos"), "{apart}");
        assert_eq!(exactly_once(&sent, &rooms, &records), Ok(()));

        // A line lost in #chaos is still missed there.
        let (sent, rooms, mut records) = two_rooms();
        records[5].pop();
        let once = exactly_once(&sent, &rooms, &records).unwrap_err();
        assert!(
            once.starts_with("chatter 5 received") && once.contains("never"),
            "{once}"
        );
    }

    /// The previous round of [`fair`]`(4)`, its last lines replayed to someone entering
    /// #lobby: `lines` of the relayed order, which ends (0,1), (1,1), (2,1), (3,1).
    fn replayed(lines: &[LineId]) -> Replay<'static> {
        Replay {
            who: "chatter 0",
            room: "#lobby",
            lines: lines.to_vec(),
        }
    }

    #[test]
    fn a_replay_of_the_rooms_last_lines_in_its_order_passes() {
        let (sent, records) = fair(4);
        let rooms = one_room(&sent);
        let replays = [
            replayed(&[(2, 1), (3, 1)]),
            replayed(&[(0, 1), (1, 1), (2, 1), (3, 1)]),
            replayed(&[(3, 0), (0, 1), (1, 1), (2, 1), (3, 1)]),
            replayed(&[]),
        ];
        assert_eq!(
            replays_follow(&sent, &rooms, &records, &replays, &[]),
            Ok(())
        );
    }

    #[test]
    fn a_replay_out_of_order_stale_doubled_or_from_elsewhere_fails() {
        let (sent, records) = fair(4);
        let rooms = one_room(&sent);
        let fails = |lines: &[LineId], says: &str| {
            let err = replays_follow(&sent, &rooms, &records, &[replayed(lines)], &[])
                .expect_err("a bad replay");
            assert!(err.contains(says), "{lines:?}: {err}");
        };
        // Chatter 1's first line without its second: not the room's latest.
        fails(&[(1, 0), (2, 1)], "not its last 1 of 2 in order");
        // The same sender's lines swapped.
        fails(&[(3, 1), (3, 0)], "not its last 2 of 2 in order");
        // Two senders' last lines swapped: every chatter saw (1,1) before (2,1).
        fails(
            &[(2, 1), (1, 1)],
            "the replays and what the chatters saw live",
        );
        // A line twice.
        fails(&[(3, 1), (3, 1)], "in order");
        // A line of a chatter this run does not have, and one of another room.
        fails(&[(9, 0)], "said in no room");
        let rooms = ["#lobby", "#lobby", "#lobby", "#chaos"];
        let err = replays_follow(&sent, &rooms, &records, &[replayed(&[(3, 1)])], &[])
            .expect_err("a line of #chaos replayed in #lobby");
        assert!(err.ends_with("said in #chaos"), "{err}");
    }

    #[test]
    fn a_room_that_emptied_replays_nothing_said_before() {
        let (sent, records) = fair(4);
        let rooms = one_room(&sent);
        let replays = [replayed(&[(3, 1)])];
        let err = replays_follow(&sent, &rooms, &records, &replays, &["#lobby"]).unwrap_err();
        assert!(err.contains("said before the room emptied"), "{err}");
        let nothing = [replayed(&[])];
        assert_eq!(
            replays_follow(&sent, &rooms, &records, &nothing, &["#lobby"]),
            Ok(())
        );
    }

    #[test]
    fn control_characters_are_not_clean_but_tabs_are() {
        assert!(is_clean_text("<guest-1> hello\tworld \u{fffd}"));
        assert!(!is_clean_text("<guest-1> \u{1b}[2J"));
        assert!(!is_clean_text("a\rb"));
        assert!(!is_clean_text("\u{9b}31m"));
        assert!(!is_clean_text("nul\0"));
        // The word-at-a-time test agrees with a walk over the characters, whichever byte of
        // a word (or of the rest after the words) holds what.
        let walk = |line: &str| !line.chars().any(|c| c.is_control() && c != '\t');
        let bad = [
            "\0", "\x1f", "\t", "\x7f", "\u{80}", "\u{9f}", "\u{a0}", "é", "\u{fffd}", " ",
        ];
        for len in 0..20 {
            for at in 0..len {
                for b in bad {
                    let line = format!("{}{b}{}", "x".repeat(at), "y".repeat(len - at));
                    assert_eq!(is_clean_text(&line), walk(&line), "{line:?}");
                }
            }
        }
    }
}
