//! Rooms and history as a well-behaved chaos client sees them: where the server says it is
//! (`*** you are now in #room (N users)`), and the history it is replayed on entering a room:
//! `*** last N lines in #room:`, the lines, `*** end of history`.
//!
//! Replayed lines were said before the client came in, most of them in the previous round.
//! They are not deliveries of this round, so they never reach a chatter's record: counted
//! there, the lobby's history made round 2's chatters receive round 1's lines "more than
//! once". Each replay is kept instead ([`Replayed`]) and judged once the round is over
//! ([`judge`]): framed as its header said, and, of the lines the previous round's chatters
//! said ([`Said`]), holding only the room's latest lines in the order the room saw them live
//! (`invariants::replays_follow`). Other replayed lines (the flooders', garbage, lines from
//! before the run) are counted and not judged: nothing records what they were.
//!
//! That judgement is of whatever chatter lines a replay holds. A second, exact one comes after
//! every round: a silent witness in each room keeps the room's last chat lines as the server
//! relayed them live ([`Witnessed`]: flooders' and garbage lines included, and only what was
//! relayed, not what the strangers sent), and once the round's chatters have gone (and, with
//! `--restarts`, the server has been restarted) a new client, a checker, enters each room:
//! its replay must be exactly those lines, as many as `--history` (fewer if the room heard
//! fewer), in the order the room heard them ([`kept_whole`]).

use std::collections::VecDeque;
use std::fmt::Write as _;

use serde::Serialize;

use super::client::Client;
use super::roles::Role;
use super::rooms::SECOND_ROOM;
use super::round::Context;
use crate::invariants::{self, LineId, Replay};
use crate::wire::{self, Stamp};
use pollchat::protocol;

/// One replay a well-behaved client got, as it arrived.
pub(super) struct Replayed {
    /// Who got it, as the report names it: "chatter 3", "tls-pinger".
    who: String,
    /// Where the server had said the client was when the replay began.
    entering: String,
    /// The room the header named, and how many lines it announced.
    named: String,
    announced: usize,
    /// Lines between the header and the footer.
    lines: usize,
    /// Those of them that were chatter lines, in the order replayed.
    said: Vec<Stamp>,
    /// The lines themselves, for a checker only (the others' are judged by `said`).
    text: Vec<Vec<u8>>,
    /// The footer came.
    ended: bool,
}

/// What a round's chatters said and heard live, kept to judge the next round's replays.
pub(super) struct Said {
    /// When each chatter sent each of its lines (nanoseconds since the round's start, as
    /// stamped on the line): a replayed line is the previous round's if its sender, number
    /// and time all match, which no line of an earlier round or run does by chance.
    pub(super) sent_at: Vec<Vec<u64>>,
    pub(super) records: Vec<Vec<LineId>>,
}

/// The round's replays, for the report (summed over the rounds in it).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Replays {
    pub replays: u64,
    pub lines: u64,
    /// Of `lines`, the chatter lines of the round before, which were judged.
    pub said_the_round_before: u64,
    /// Lines the checkers were replayed after the round, each the same as its witness heard.
    pub checked: u64,
    /// Restarts of the server before the checkers came (`--restarts`).
    pub restarts: u64,
}

impl std::ops::AddAssign for Replays {
    fn add_assign(&mut self, other: Replays) {
        self.replays += other.replays;
        self.lines += other.lines;
        self.said_the_round_before += other.said_the_round_before;
        self.checked += other.checked;
        self.restarts += other.restarts;
    }
}

/// A room's last chat lines as its witness heard them live, at most `--history` of them, and
/// how many it heard in all.
pub(super) struct Witnessed {
    pub(super) room: &'static str,
    pub(super) last: VecDeque<Vec<u8>>,
    pub(super) heard: u64,
    /// Of `heard`, the chatters' lines: once it has them all, it has everything said before.
    pub(super) said: u64,
}

impl Witnessed {
    pub(super) fn new(room: &'static str) -> Witnessed {
        Witnessed {
            room,
            last: VecDeque::new(),
            heard: 0,
            said: 0,
        }
    }
}

/// The witness of room `n` heard `line` live: a chat line (`<nick> ...`, `* nick ...`, what a
/// room keeps in its history) is kept, the oldest going past `--history`.
pub(super) fn witness(n: u32, line: &[u8], ctx: &mut Context) {
    let chat = line.starts_with(b"<") || line.starts_with(b"* ");
    let keep = ctx.history;
    let Some(w) = ctx.witnessed.get_mut(n as usize).filter(|_| chat) else {
        return;
    };
    w.heard += 1;
    w.said += u64::from(stamp(line).is_some());
    w.last.push_back(line.to_vec());
    while w.last.len() > keep {
        w.last.pop_front();
    }
}

/// The checkers' replays against what the witnesses heard: for each room, the checker that
/// entered it was replayed exactly the witness's lines (framed as announced, in order), or,
/// for a room that heard none, nothing. `history` is the server's `--history`, which bounds
/// what a witness keeps; `Ok` holds the lines checked.
pub(super) fn kept_whole(
    witnessed: &[Witnessed],
    replays: &[Replayed],
    history: usize,
) -> Result<u64, String> {
    let mut checked = 0;
    for w in witnessed {
        let who = format!("checker in {}", w.room);
        let mine: Vec<&Replayed> = replays
            .iter()
            .filter(|r| r.who == who && r.entering.eq_ignore_ascii_case(w.room))
            .collect();
        let want = w.last.len();
        let replay = match (mine.as_slice(), want) {
            ([], 0) => continue,
            ([], _) => {
                return Err(format!(
                    "{who} was replayed no history, where the room's last {want} lines (of {} \
                     it heard) were due",
                    w.heard
                ));
            }
            ([replay], _) => replay,
            _ => return Err(format!("{who} was replayed {} histories", mine.len())),
        };
        framed(replay)?;
        if replay.text.len() != want {
            return Err(format!(
                "{who} was replayed {} lines, where the room had heard {} and keeps {history} \
                 (--history): {want} were due",
                replay.text.len(),
                w.heard
            ));
        }
        if let Some(i) = (0..want).find(|&i| replay.text[i] != w.last[i]) {
            let shown = |line: &[u8]| -> String { lossy_start(line) };
            let mut why = format!(
                "line {} of the {want} replayed to {who} was {:?}, where the room heard {:?}",
                i + 1,
                shown(&replay.text[i]),
                shown(&w.last[i])
            );
            let mut sorted_replay = replay.text.clone();
            let mut sorted_heard: Vec<Vec<u8>> = w.last.iter().cloned().collect();
            sorted_replay.sort();
            sorted_heard.sort();
            if sorted_replay == sorted_heard {
                why.push_str(" (the same lines, in another order)");
            }
            return Err(why);
        }
        checked += want as u64;
    }
    Ok(checked)
}

/// The start of a line, as text, for a message.
fn lossy_start(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(48).collect()
}

impl Replays {
    /// What a pass of "history replayed" says was kept.
    pub(super) fn kept(self) -> String {
        let Replays {
            replays,
            lines,
            said_the_round_before: said,
            ..
        } = self;
        if replays == 0 {
            return "no client entering a room was replayed any history".into();
        }
        let mut kept = format!("{replays} replays of {lines} lines, each framed as announced");
        if self.checked > 0 {
            let _ = write!(
                kept,
                "; after each round{}, a newcomer to each room was replayed exactly its last \
                 lines as a witness heard them, in order ({} lines)",
                if self.restarts > 0 {
                    " and a restart of the server"
                } else {
                    ""
                },
                self.checked
            );
        }
        if said > 0 {
            let _ = write!(
                kept,
                "; the {said} chatter lines of the round before were their room's last, in \
                 its order"
            );
        }
        kept
    }
}

/// Takes a line about rooms or history off a well-behaved client's hands: `true` if it was
/// one (a history header, a line of a replay, its footer, or where the client now is), so
/// the caller does not record it as live.
pub(super) fn on_line(client: &mut Client, line: &[u8], ctx: &mut Context) -> bool {
    if let Some(open) = client.replay {
        let Some(replay) = ctx.replays.get_mut(open) else {
            client.replay = None;
            return false;
        };
        if line == protocol::HISTORY_END.trim_end().as_bytes() {
            replay.ended = true;
            client.replay = None;
        } else {
            replay.lines += 1;
            replay.said.extend(stamp(line));
            if matches!(client.role, Role::Checker(_)) {
                replay.text.push(line.to_vec());
            }
        }
        return true;
    }
    // Both lines looked for here are the server's own: the flood is not.
    if !line.starts_with(b"*** ") {
        return false;
    }
    let text = String::from_utf8_lossy(line);
    if let Some((announced, room)) = header(&text) {
        client.replay = Some(ctx.replays.len());
        ctx.replays.push(Replayed {
            who: client.name(),
            entering: client.room.clone(),
            named: room.to_string(),
            announced,
            lines: 0,
            said: Vec::new(),
            text: Vec::new(),
            ended: false,
        });
        return true;
    }
    if let Some(room) = now_in(&text) {
        client.room = room.to_string();
        return true;
    }
    false
}

/// The chatter line's stamp, if `line` is one (read in place: most lines the well-behaved
/// clients get are 4 KB flood lines, which are not).
pub(super) fn stamp(line: &[u8]) -> Option<Stamp> {
    wire::chat_stamp(line)
}

/// `*** last N lines in #room:` ([`protocol::history_header`]): N and the room.
fn header(text: &str) -> Option<(usize, &str)> {
    let rest = text.strip_prefix("*** last ")?.strip_suffix(':')?;
    let (count, rest) = rest.split_once(' ')?;
    let (_, room) = rest.split_once(" in ")?;
    Some((count.parse().ok()?, room))
}

/// `*** you are now in #room (N users)` ([`protocol::now_in`]): the room.
fn now_in(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("*** you are now in ")?;
    Some(rest.split_once(" (")?.0)
}

/// The round's replays judged, and their figures. Each must have been framed as its header
/// said, for the room being entered. With the previous round's record (`earlier`), the lines
/// it said must be what `invariants::replays_follow` requires; [`SECOND_ROOM`] counts as
/// emptied, since all its chatters quit at the end of every round.
pub(super) fn judge(
    replays: &[Replayed],
    earlier: Option<&Said>,
    rooms: &[&str],
) -> (Result<(), String>, Replays) {
    let mut figures = Replays::default();
    let mut judged = Vec::new();
    let mut broken = None;
    for replay in replays {
        figures.replays += 1;
        figures.lines += replay.lines as u64;
        if let Err(why) = framed(replay) {
            broken.get_or_insert(why);
            continue;
        }
        let lines: Vec<LineId> = earlier.map_or_else(Vec::new, |said| {
            replay.said.iter().filter_map(|s| said.line(s)).collect()
        });
        figures.said_the_round_before += lines.len() as u64;
        judged.push(Replay {
            who: &replay.who,
            room: &replay.entering,
            lines,
        });
    }
    let verdict = match (broken, earlier) {
        (Some(why), _) => Err(why),
        (None, None) => Ok(()),
        (None, Some(said)) => {
            let sent: Vec<u64> = said.sent_at.iter().map(|s| s.len() as u64).collect();
            invariants::replays_follow(&sent, rooms, &said.records, &judged, &[SECOND_ROOM])
        }
    };
    (verdict, figures)
}

/// The replay ended, held as many lines as its header announced, and was the history of the
/// room being entered.
fn framed(replay: &Replayed) -> Result<(), String> {
    let Replayed { who, entering, .. } = replay;
    if !replay.ended {
        return Err(format!("{who}'s replay of {} never ended", replay.named));
    }
    if !replay.named.eq_ignore_ascii_case(entering) {
        return Err(format!(
            "{who} entering {entering} was replayed the history of {}",
            replay.named
        ));
    }
    if replay.lines != replay.announced {
        return Err(format!(
            "{who} entering {entering} was announced {} lines and replayed {}",
            replay.announced, replay.lines
        ));
    }
    Ok(())
}

impl Said {
    /// The line `stamp` names, if the round this is the record of said it.
    fn line(&self, stamp: &Stamp) -> Option<LineId> {
        let sent_at = self
            .sent_at
            .get(usize::try_from(stamp.sender).ok()?)?
            .get(usize::try_from(stamp.seq).ok()?)?;
        (*sent_at == stamp.sent_at_ns).then_some((stamp.sender, stamp.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_texts_are_read_back_as_written() {
        let header_text = protocol::history_header("#chaos", 1);
        assert_eq!(header(header_text.trim_end()), Some((1, "#chaos")));
        let header_text = protocol::history_header("#lobby", 20);
        assert_eq!(header(header_text.trim_end()), Some((20, "#lobby")));
        let moved = protocol::now_in("#chaos", 3);
        assert_eq!(now_in(moved.trim_end()), Some("#chaos"));
        assert_eq!(header("<guest-1> *** last 3 lines in #x:"), None);
        assert_eq!(now_in(protocol::welcome("guest-1").trim_end()), None);
    }

    fn replayed(announced: usize, lines: usize, ended: bool) -> Replayed {
        Replayed {
            who: "chatter 0".into(),
            entering: "#lobby".into(),
            named: "#lobby".into(),
            announced,
            lines,
            said: Vec::new(),
            text: Vec::new(),
            ended,
        }
    }

    #[test]
    fn a_replay_must_be_framed_as_announced() {
        assert_eq!(framed(&replayed(2, 2, true)), Ok(()));
        let short = framed(&replayed(3, 2, true)).unwrap_err();
        assert!(
            short.contains("announced 3 lines and replayed 2"),
            "{short}"
        );
        let open = framed(&replayed(2, 2, false)).unwrap_err();
        assert!(open.contains("never ended"), "{open}");
        let mut elsewhere = replayed(2, 2, true);
        elsewhere.named = SECOND_ROOM.into();
        let elsewhere = framed(&elsewhere).unwrap_err();
        assert!(elsewhere.contains("the history of #chaos"), "{elsewhere}");
    }

    /// A room's witness that heard `lines` (the last of them kept), and the checker's replay
    /// of that room: `replayed`, or none.
    fn checked(lines: &[&str], replay: Option<&[&str]>) -> Result<u64, String> {
        let mut witnessed = Witnessed::new("#lobby");
        for line in lines {
            witnessed.heard += 1;
            witnessed.last.push_back(line.as_bytes().to_vec());
        }
        let replays: Vec<Replayed> = replay
            .map(|text| {
                let mut replay = replayed(text.len(), text.len(), true);
                replay.who = "checker in #lobby".into();
                replay.text = text.iter().map(|l| l.as_bytes().to_vec()).collect();
                replay
            })
            .into_iter()
            .collect();
        kept_whole(&[witnessed], &replays, 20)
    }

    #[test]
    fn a_checker_must_be_replayed_exactly_what_the_witness_heard_last() {
        let heard = ["<a> 1", "<b> 2", "* c waves"];
        assert_eq!(checked(&heard, Some(&heard)), Ok(3));
        // A room that heard nothing replays nothing.
        assert_eq!(checked(&[], None), Ok(0));
        let lost = checked(&heard, None).unwrap_err();
        assert!(lost.contains("replayed no history"), "{lost}");
        let reversed = checked(&heard, Some(&["* c waves", "<b> 2", "<a> 1"])).unwrap_err();
        assert!(reversed.contains("line 1 of the 3"), "{reversed}");
        assert!(reversed.contains("in another order"), "{reversed}");
        let short = checked(&heard, Some(&heard[1..])).unwrap_err();
        assert!(short.contains("replayed 2 lines"), "{short}");
        let other = checked(&heard, Some(&["<a> 1", "<b> 2", "<x> cut"])).unwrap_err();
        assert!(other.contains("line 3 of the 3"), "{other}");
        assert!(!other.contains("another order"), "{other}");
        let ghost = checked(&[], Some(&["<a> 1"])).unwrap_err();
        assert!(ghost.contains("replayed 1 lines"), "{ghost}");
    }

    #[test]
    fn only_lines_the_round_before_said_are_judged() {
        let said = Said {
            sent_at: vec![vec![10, 20], vec![15]],
            records: vec![vec![(1, 0)], vec![(0, 0), (0, 1)]],
        };
        let mut replay = replayed(3, 3, true);
        // Chatter 0's last line, then one with the right names but another time (an earlier
        // run's), then chatter 1's only line.
        replay.said = [(0, 1, 20), (0, 0, 99), (1, 0, 15)]
            .map(|(sender, seq, sent_at_ns)| Stamp {
                sender,
                seq,
                sent_at_ns,
            })
            .into();
        let rooms = ["#lobby", "#lobby"];
        let (verdict, figures) = judge(&[replay], Some(&said), &rooms);
        assert_eq!(verdict, Ok(()));
        assert_eq!((figures.lines, figures.said_the_round_before), (3, 2));
    }
}
