//! The promises the chaos scenario checks, as pure functions over what the well-behaved
//! clients recorded, so each check can be shown to fail on a crafted record (see the tests
//! below) and not only to pass against a working server.
//!
//! A chatter's record is the list of chatter lines it received, in arrival order, each named
//! by `(sender, seq)`: the sender's chatter number and the line's number among that sender's
//! lines. pollchat does not echo a line to its sender, so a chatter's record holds every line
//! of every *other* chatter.

use std::collections::HashMap;

/// One chatter line: `(sender, seq)`.
pub type LineId = (u32, u64);

/// Every line of every chatter reached every other chatter exactly once. `sent[s]` is how
/// many lines chatter `s` sent (numbered `0..sent[s]`); `received[c]` is chatter `c`'s record.
pub fn exactly_once(sent: &[u64], received: &[Vec<LineId>]) -> Result<(), String> {
    for (chatter, record) in received.iter().enumerate() {
        // Per sender, how many times each of its lines arrived here.
        let mut seen: Vec<Vec<u32>> = sent
            .iter()
            .map(|&n| vec![0; usize::try_from(n).unwrap_or(0)])
            .collect();
        for &(sender, seq) in record {
            let count = usize::try_from(sender)
                .ok()
                .filter(|&s| s != chatter)
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
        for (sender, lines) in seen.iter().enumerate().filter(|&(s, _)| s != chatter) {
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

/// What a terminal would show of a relayed line is exactly what was meant: valid UTF-8
/// (checked before it gets here) with no control character but tab. Checked independently of
/// the server's own sanitiser, so a bug there cannot hide itself.
pub fn is_clean_text(line: &str) -> bool {
    !line.chars().any(|c| c.is_control() && c != '\t')
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

    #[test]
    fn a_fair_relay_passes_both_checks() {
        let (sent, records) = fair(3);
        assert_eq!(exactly_once(&sent, &records), Ok(()));
        assert_eq!(one_global_order(&sent, &records), Ok(()));
    }

    #[test]
    fn a_lost_duplicated_or_echoed_line_fails_exactly_once() {
        let (sent, mut records) = fair(3);
        records[0].pop();
        assert!(exactly_once(&sent, &records).unwrap_err().contains("never"));

        let (sent, mut records) = fair(3);
        records[1].push((0, 1));
        assert!(
            exactly_once(&sent, &records)
                .unwrap_err()
                .contains("more than once")
        );

        let (sent, mut records) = fair(3);
        records[2].push((2, 0));
        assert!(
            exactly_once(&sent, &records)
                .unwrap_err()
                .contains("never sent")
        );

        let (sent, mut records) = fair(3);
        records[2].push((0, 7));
        assert!(exactly_once(&sent, &records).is_err());
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
        assert_eq!(exactly_once(&sent, &records), Ok(()));
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
        assert_eq!(exactly_once(&sent, &records), Ok(()));
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
    fn control_characters_are_not_clean_but_tabs_are() {
        assert!(is_clean_text("<guest-1> hello\tworld \u{fffd}"));
        assert!(!is_clean_text("<guest-1> \u{1b}[2J"));
        assert!(!is_clean_text("a\rb"));
        assert!(!is_clean_text("\u{9b}31m"));
        assert!(!is_clean_text("nul\0"));
    }
}
