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

use std::fmt::Write as _;

use serde::Serialize;

use super::client::Client;
use super::rooms::SECOND_ROOM;
use super::round::Context;
use crate::invariants::{self, LineId, Replay};
use crate::wire::{self, Incoming, Proto, Stamp};
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
}

impl std::ops::AddAssign for Replays {
    fn add_assign(&mut self, other: Replays) {
        self.replays += other.replays;
        self.lines += other.lines;
        self.said_the_round_before += other.said_the_round_before;
    }
}

impl Replays {
    /// What a pass of "history replayed" says was kept.
    pub(super) fn kept(self) -> String {
        let Replays {
            replays,
            lines,
            said_the_round_before: said,
        } = self;
        if replays == 0 {
            return "no client entering a room was replayed any history".into();
        }
        let mut kept = format!("{replays} replays of {lines} lines, each framed as announced");
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
        }
        return true;
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

/// The chatter line's stamp, if `line` is one.
pub(super) fn stamp(line: &[u8]) -> Option<Stamp> {
    let mut framed = line.to_vec();
    framed.push(b'\n');
    match wire::decode(Proto::Pollchat, &framed) {
        Some((Incoming::Line(stamp), _)) => Some(stamp),
        _ => None,
    }
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
