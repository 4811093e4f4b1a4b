//! The operator (`--oper NAME=PASSWORD`): one more well-behaved client a round, who
//! `/oper`s and deals with misbehaving clients by nick as they misbehave, and the five
//! promises about it ([`CHECKS`]).
//!
//! The operator connects in the join phase with the chatters, `/oper`s, asks `/bans` and
//! joins [`SECOND_ROOM`], where it watches. During the chaos phase, one *troll* at a time
//! connects, learns its nick from its welcome, joins the room and floods (long `/msg` lines
//! to itself as fast as the server reads them, so that nothing of the flood reaches the
//! room, which must hear only its chatters). As soon as the operator hears the troll's join
//! announced, it acts on it by nick, in the order of [`PLAN`]: a `/kick` with a reason, a
//! `/ban` of the nick for [`BAN_FOR`], a kick again, and a `/ban` of the troll's address:
//! that troll connects from [`TROLL_ADDRESS`], 127.0.0.2, never from 127.0.0.1, which every
//! well-behaved client uses (so only with a target on 127.0.0.1; otherwise the plan has no
//! address ban). After the nick ban the operator tries to take the banned nick itself;
//! after the address ban one more client, the *ban evader*, connects from the banned
//! address. A troll the server turned away as full (a connect storm) is replaced
//! [`RETRY_AFTER`] later, up to [`REPLACED`] times a round. Once the plan is done (after the chaos phase if the machine was
//! slow: [`wind_up`]), the operator lifts every ban it placed and asks `/bans` again, so the
//! next round starts with the bans the server had before.
//!
//! The trolls go to the second room, not the lobby, so that the room's view can be checked
//! exactly: the lobby's leave notices come by the dozen under the chaos and are said as one
//! line (`*** 12 left: a (...), b (...), c (...) and 9 more`, the server's `notices.rs`), so a
//! kick there may be announced without its nick. In the second room the troll's leave is the
//! only one, said on its own line, which every member must hear.
//!
//! The operator's own lines (welcome, answers, the join it waits for) are taken in
//! [`heard`], the trolls' and the evader's too; [`act`] runs each loop turn and moves the
//! plan on: it opens the next troll, and does what follows a ban. Without `--oper` there is no
//! operator, no troll, and the checks are skipped.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{Client, PushStr, write_out};
use super::event_loop::Chaos;
use super::report::{Check, Outcome};
use super::roles::{Role, nick_in_welcome};
use super::rooms::SECOND_ROOM;
use super::round::Phase;
use crate::BenchArgs;
use crate::args::OperLogin;

/// Where the troll of the address ban and the ban evader connect from: a loopback address
/// none of the others use, so that banning it bans them alone.
pub(super) const TROLL_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// What the operator does to a troll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sanction {
    /// `/kick NICK REASON`.
    Kick,
    /// `/ban NICK 30s REASON`, then `/nick NICK` by the operator, which must be refused.
    NickBan,
    /// `/ban 127.0.0.2 30s REASON`, then a connection from there, which must be refused.
    AddressBan,
}

impl Sanction {
    /// The troll's line in the role table.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Sanction::Kick => "troll (kick)",
            Sanction::NickBan => "troll (nick ban)",
            Sanction::AddressBan => "troll (addr ban)",
        }
    }
}

/// A round's sanctions, one troll after the other.
const PLAN: [Sanction; 4] = [
    Sanction::Kick,
    Sanction::NickBan,
    Sanction::Kick,
    Sanction::AddressBan,
];

/// How long the bans are placed for: longer than a round, so only `/unban` lifts them
/// before the next, and short enough that a run cut short leaves none for long.
const BAN_FOR: &str = "30s";

/// A troll turned away by a full server (a connect storm) is replaced this much later, and at
/// most this many times a round. A storm holds the server full for up to a second (its
/// clients stay 0.3 to 1 s), and there are two a round: replaced at once, a troll was turned
/// away up to 8 times in a row in the chaos test, where three tries a step would soon have
/// run out.
const RETRY_AFTER: Duration = Duration::from_millis(100);
const REPLACED: usize = 40;

/// How long a step may take, from its troll's connect to its last answer: on a quiet
/// machine a fraction of a second.
const STEP_LIMIT: Duration = Duration::from_secs(8);

/// How long the plan may go on once the chaos phase is over, and how long the operator
/// waits for the answers to its `/unban`s and `/bans`.
const WIND_UP_LIMIT: Duration = Duration::from_secs(15);
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// Bytes of padding in a troll's line, and how much output it keeps queued.
const TROLL_LINE: usize = 400;
const TROLL_AHEAD: usize = 8 * 1024;

/// The checks, each judged in every round.
pub(super) const CHECKS: [&str; 5] = [
    "operator opered",
    "kicks told and closed",
    "bans told and enforced",
    "moderation announced",
    "bans lifted",
];

/// What the operator did and heard in a round, and what happened to its trolls.
#[derive(Default)]
pub(super) struct Desk {
    /// `--oper`: without it, no operator.
    login: Option<OperLogin>,
    /// The round's sanctions: [`PLAN`], without the address ban unless the target is
    /// 127.0.0.1.
    plan: Vec<Sanction>,
    /// The operator's nick, from its welcome: kicks are said to be by it.
    nick: String,
    /// The server's answer to `/oper`.
    opered: Option<String>,
    /// The first line of the server's answers to `/bans`: after `/oper`, and at the end once
    /// the bans are lifted.
    bans_before: Option<String>,
    bans_after: Option<String>,
    steps: Vec<Step>,
    /// The well-behaved members of the second room, as the report names them: who must hear
    /// each kick and ban announced.
    members: Vec<String>,
    /// Each announcement of a kick or a ban a well-behaved client heard: the line, and who.
    heard: Vec<(String, String)>,
    /// The masks the server said it placed bans on, in order.
    placed: Vec<String>,
    /// The answers to the `/unban`s.
    lifted: Vec<String>,
    /// The `/unban`s are sent: the next `/bans` answer is the one after.
    unbanning: bool,
    /// Answers that refused what the operator asked (`*** no such nick: ...`).
    refusals: Vec<String>,
}

/// One troll and what became of it.
struct Step {
    sanction: Sanction,
    /// The troll's client (its serial).
    troll: u64,
    opened: Instant,
    /// The troll's nick, from its welcome.
    nick: String,
    reason: String,
    /// The server was full: another troll takes the step. When it said so.
    refused: bool,
    refused_at: Option<Instant>,
    /// The operator has sent its command.
    ordered: bool,
    /// The troll's `*** kicked by` or `*** banned:` line, and the lines it got after it.
    told: Option<String>,
    after: u32,
    /// The server closed the troll; the troll's client is gone (closed by anyone).
    closed: bool,
    gone: bool,
    /// What follows the ban was done: the operator asked for the nick, or the evader was sent.
    followed: bool,
    /// After a nick ban: the server's answer to the operator's `/nick NICK`.
    nick_answer: Option<String>,
    /// After an address ban: the client that came back from the banned address.
    evader: Option<Evader>,
    /// [`STEP_LIMIT`] passed before the step was over.
    timed_out: bool,
}

/// A client connecting from a banned address.
struct Evader {
    serial: u64,
    told: Option<String>,
    welcomed: bool,
    closed: bool,
    gone: bool,
}

impl Step {
    /// The operator acted on the troll, and the troll was told.
    fn dealt_with(&self) -> bool {
        self.ordered && self.told.is_some()
    }

    /// Nothing more will happen in this step.
    fn over(&self) -> bool {
        if self.refused || self.timed_out {
            return true;
        }
        if !self.gone {
            return false;
        }
        // A troll not dealt with was not sanctioned: nothing follows.
        if !self.dealt_with() {
            return true;
        }
        match self.sanction {
            Sanction::Kick => true,
            Sanction::NickBan => self.nick_answer.is_some(),
            Sanction::AddressBan => self.evader.as_ref().is_some_and(|e| e.gone),
        }
    }

    /// The operator's command for this troll.
    fn command(&self) -> String {
        match self.sanction {
            Sanction::Kick => format!("/kick {} {}\n", self.nick, self.reason),
            Sanction::NickBan => format!("/ban {} {BAN_FOR} {}\n", self.nick, self.reason),
            Sanction::AddressBan => format!("/ban {TROLL_ADDRESS} {BAN_FOR} {}\n", self.reason),
        }
    }

    /// The troll's last line, as the protocol says it.
    fn told_as(&self, operator: &str) -> String {
        match self.sanction {
            Sanction::Kick => format!("*** kicked by {operator}: {}", self.reason),
            _ => format!("*** banned: {}", self.reason),
        }
    }

    /// What the room hears of it.
    fn announced_as(&self, operator: &str) -> String {
        match self.sanction {
            Sanction::Kick => format!(
                "*** {} was kicked by {operator} ({})",
                self.nick, self.reason
            ),
            _ => format!("*** {} left (banned: {})", self.nick, self.reason),
        }
    }

    /// How the report names the troll.
    fn who(&self) -> String {
        let nick = if self.nick.is_empty() {
            "never welcomed"
        } else {
            &self.nick
        };
        format!("troll {} ({nick})", self.troll)
    }
}

impl Desk {
    /// A round's desk: the operator's login, and the plan for the target.
    pub(super) fn new(args: &BenchArgs) -> Desk {
        let on_localhost = args
            .target
            .first()
            .is_some_and(|t| t.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST));
        let plan = PLAN
            .into_iter()
            .filter(|&s| s != Sanction::AddressBan || on_localhost)
            .collect();
        Desk {
            login: args.oper.clone(),
            plan,
            ..Desk::default()
        }
    }

    /// `/oper` was answered as it is for the login.
    fn granted(&self) -> bool {
        let Some(login) = &self.login else {
            return false;
        };
        self.opered.as_deref() == Some(&format!("*** you are now an operator ({})", login.name))
    }

    /// The sanction the next troll is for, if the plan is not done.
    fn next_sanction(&self) -> Option<Sanction> {
        let done = self.steps.iter().filter(|s| !s.refused).count();
        if self.steps.len() - done >= REPLACED {
            return None;
        }
        self.plan.get(done).copied()
    }

    /// Nothing more will happen: the plan is done, or the operator is not one.
    fn plan_over(&self) -> bool {
        if self.opered.is_some() && !self.granted() {
            return true;
        }
        self.granted() && self.next_sanction().is_none() && self.steps.last().is_none_or(Step::over)
    }

    fn step_of(&mut self, troll: u64) -> Option<&mut Step> {
        self.steps.iter_mut().find(|s| s.troll == troll)
    }

    fn evader_of(&mut self, serial: u64) -> Option<&mut Evader> {
        let mut evaders = self.steps.iter_mut().filter_map(|s| s.evader.as_mut());
        evaders.find(|e| e.serial == serial)
    }
}

/// Each loop turn: notes which trolls are gone, does what follows a ban once its troll is,
/// and opens the next troll once the step before is over (in the chaos phase).
pub(super) fn act(chaos: &mut Chaos) {
    if !chaos.ctx.desk.granted() {
        return;
    }
    let here = |serial: u64| {
        chaos
            .clients
            .iter()
            .any(|(_, c)| c.serial == serial && !c.role.well_behaved())
    };
    let mut evade = false;
    let mut ask_nick = None;
    if let Some(step) = chaos.ctx.desk.steps.last_mut() {
        step.gone = step.gone || !here(step.troll);
        if let Some(evader) = &mut step.evader {
            evader.gone = evader.gone || !here(evader.serial);
        }
        if step.gone && step.dealt_with() && !step.followed {
            step.followed = true;
            match step.sanction {
                Sanction::Kick => {}
                Sanction::NickBan => ask_nick = Some(step.nick.clone()),
                Sanction::AddressBan => evade = true,
            }
        }
        if !step.over() && step.opened.elapsed() > STEP_LIMIT {
            step.timed_out = true;
        }
    }
    if let Some(nick) = ask_nick {
        to_operator(chaos, &format!("/nick {nick}\n"));
    }
    if evade {
        chaos.open(Role::BanEvader);
        let serial = chaos.started;
        if let Some(step) = chaos.ctx.desk.steps.last_mut() {
            step.evader = Some(Evader {
                serial,
                told: None,
                welcomed: false,
                closed: false,
                gone: false,
            });
        }
    }
    let desk = &chaos.ctx.desk;
    // After a troll the server turned away, the next waits a moment: the storm may last.
    let ready = desk
        .steps
        .last()
        .is_none_or(|s| s.over() && s.refused_at.is_none_or(|at| at.elapsed() >= RETRY_AFTER));
    if chaos.ctx.phase != Phase::Chaos || !ready {
        return;
    }
    let Some(sanction) = desk.next_sanction() else {
        return;
    };
    let members = chaos
        .clients
        .iter()
        .filter(|(_, c)| c.role.well_behaved() && c.home == SECOND_ROOM)
        .map(|(_, c)| c.name())
        .collect();
    chaos.open(Role::Troll(sanction));
    let desk = &mut chaos.ctx.desk;
    desk.members = members;
    let number = desk.steps.len() + 1;
    let what = match sanction {
        Sanction::Kick => "kick",
        Sanction::NickBan | Sanction::AddressBan => "ban",
    };
    desk.steps.push(Step {
        sanction,
        troll: chaos.started,
        opened: Instant::now(),
        nick: String::new(),
        reason: format!("flooding {SECOND_ROOM} ({what} {number})"),
        refused: false,
        refused_at: None,
        ordered: false,
        told: None,
        after: 0,
        closed: false,
        gone: false,
        followed: false,
        nick_answer: None,
        evader: None,
        timed_out: false,
    });
}

/// Queues `line` on the operator's client and writes it out.
fn to_operator(chaos: &mut Chaos, line: &str) {
    let operator = chaos
        .clients
        .iter_mut()
        .find(|(_, c)| c.role == Role::Operator);
    if let Some((_, client)) = operator {
        client.output.extend_from_slice(line.as_bytes());
        let _ = write_out(client);
    }
}

/// After the chaos phase: lets the plan finish (up to [`WIND_UP_LIMIT`]), then lifts every ban
/// placed and asks `/bans`, and waits for the answers (up to [`ANSWER_LIMIT`]).
pub(super) fn wind_up(chaos: &mut Chaos) {
    if chaos.ctx.desk.login.is_none() {
        return;
    }
    chaos.run_until(WIND_UP_LIMIT, |c| c.ctx.desk.plan_over());
    let desk = &mut chaos.ctx.desk;
    desk.unbanning = true;
    let mut lines = String::new();
    for mask in &desk.placed {
        let _ = writeln!(lines, "/unban {mask}");
    }
    lines.push_str("/bans\n");
    to_operator(chaos, &lines);
    chaos.run_until(ANSWER_LIMIT, |c| c.ctx.desk.bans_after.is_some());
}

/// A line from the server to any client: the operator's answers, what the trolls and the
/// evader are told, and the announcements the well-behaved hear.
pub(super) fn heard(client: &mut Client, line: &[u8], desk: &mut Desk) {
    let text = String::from_utf8_lossy(line);
    if client.role.well_behaved()
        && text.starts_with("*** ")
        && (text.contains(" was kicked by ") || text.contains(" left (banned: "))
    {
        desk.heard.push((text.to_string(), client.name()));
    }
    match client.role {
        Role::Operator => operator_heard(client, &text, desk),
        Role::Troll(_) => troll_heard(client, &text, desk),
        Role::BanEvader => {
            if let Some(evader) = desk.evader_of(client.serial) {
                if text.starts_with("*** welcome") {
                    evader.welcomed = true;
                } else if text.starts_with("*** banned: ") {
                    evader.told.get_or_insert_with(|| text.to_string());
                }
            }
        }
        _ => {}
    }
}

/// The operator's lines: its welcome (it `/oper`s, asks `/bans`, joins), its answers, and
/// the join of the troll it waits for (it acts).
fn operator_heard(client: &mut Client, text: &str, desk: &mut Desk) {
    if text.starts_with("*** welcome") {
        desk.nick = nick_in_welcome(text.as_bytes());
        if let Some(login) = &desk.login {
            let out = &mut PushStr(&mut client.output);
            let _ = writeln!(out, "/oper {} {}", login.name, login.password);
        }
        let _ = writeln!(PushStr(&mut client.output), "/bans\n/join {SECOND_ROOM}");
        return;
    }
    let answers_oper = [
        "you are now an operator",
        "wrong operator",
        "too many wrong",
        "/oper ",
    ];
    let said = text.strip_prefix("*** ").unwrap_or_default();
    if answers_oper.iter().any(|a| said.starts_with(a)) {
        desk.opered.get_or_insert_with(|| text.to_string());
    } else if text == "*** no bans" || is_bans_header(text) || text.starts_with("*** /bans ") {
        let answer = if desk.unbanning {
            &mut desk.bans_after
        } else {
            &mut desk.bans_before
        };
        answer.get_or_insert_with(|| text.to_string());
    } else if let Some(rest) = text.strip_prefix("*** ban on ") {
        if let Some((mask, _)) = rest.split_once(" placed (") {
            desk.placed.push(mask.to_string());
        } else {
            desk.lifted.push(text.to_string());
        }
    } else if text.starts_with("*** no ban on ") {
        desk.lifted.push(text.to_string());
    } else if text.starts_with("*** nick \"") || text.contains(" is now known as ") {
        let asked = desk.steps.iter_mut().rev().find(|s| s.followed);
        if let Some(step) = asked.filter(|s| s.sanction == Sanction::NickBan) {
            step.nick_answer.get_or_insert_with(|| text.to_string());
        }
    } else if text.starts_with("*** no such nick")
        || text.starts_with("*** not placed")
        || text.contains(" is for operators only")
        || text.contains(" is neither a nick nor an address")
    {
        desk.refusals.push(text.to_string());
    } else if let Some(nick) = text
        .strip_prefix("*** ")
        .and_then(|t| t.strip_suffix(" joined"))
        && let Some(step) = desk.steps.last_mut()
        && !step.ordered
        && step.nick == nick
    {
        step.ordered = true;
        client.output.extend_from_slice(step.command().as_bytes());
    }
}

/// `*** 1 ban:`, `*** 3 bans:`: the first line of `/bans` when there are some.
fn is_bans_header(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("*** ") else {
        return false;
    };
    let (count, noun) = rest.split_once(' ').unwrap_or_default();
    count.parse::<usize>().is_ok() && (noun == "ban:" || noun == "bans:")
}

/// A troll's lines: its welcome (it joins the second room), being there (it floods, see
/// [`flood`]), and what it is told (it stops).
fn troll_heard(client: &mut Client, text: &str, desk: &mut Desk) {
    let Some(step) = desk.step_of(client.serial) else {
        return;
    };
    if step.told.is_some() {
        step.after += 1;
    } else if text.starts_with("*** welcome") {
        client.nick = nick_in_welcome(text.as_bytes());
        step.nick.clone_from(&client.nick);
        let _ = writeln!(PushStr(&mut client.output), "/join {SECOND_ROOM}");
    } else if text.starts_with(&format!("*** you are now in {SECOND_ROOM} ")) {
        client.room = SECOND_ROOM.to_string();
    } else if text.starts_with("*** kicked by ") || text.starts_with("*** banned: ") {
        step.told = Some(text.to_string());
        client.leaving = true;
    } else if text.starts_with("*** server full") || text.starts_with("*** too many connections") {
        step.refused = true;
        step.refused_at = Some(Instant::now());
    }
}

/// A troll in the second room tops its output up with long `/msg` lines to itself, far past
/// the rate limit, until it is told to go.
pub(super) fn flood(client: &mut Client) {
    if client.room != SECOND_ROOM || client.leaving {
        return;
    }
    while client.output.len() < TROLL_AHEAD {
        let out = &mut PushStr(&mut client.output);
        let _ = write!(
            out,
            "/msg {} T {} {} ",
            client.nick, client.serial, client.seq
        );
        client.output.extend_from_slice(&[b't'; TROLL_LINE]);
        client.output.push(b'\n');
        client.seq += 1;
    }
}

/// The server closed a client: a troll's or the evader's close is noted.
pub(super) fn closed(client: &Client, desk: &mut Desk) {
    match client.role {
        Role::Troll(_) => {
            if let Some(step) = desk.step_of(client.serial) {
                step.closed = true;
            }
        }
        Role::BanEvader => {
            if let Some(evader) = desk.evader_of(client.serial) {
                evader.closed = true;
            }
        }
        _ => {}
    }
}

/// What the operator did in a round (in the JSON report, summed over the rounds).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Figures {
    /// Trolls told they were kicked, banned by nick, banned by address.
    pub kicks: u64,
    pub nick_bans: u64,
    pub address_bans: u64,
    /// Clients from a banned address told so.
    pub evaders_refused: u64,
    /// Trolls the server turned away as full, replaced by another.
    pub trolls_replaced: u64,
    /// Bans lifted with `/unban`.
    pub unbans: u64,
}

impl std::ops::AddAssign for Figures {
    fn add_assign(&mut self, other: Figures) {
        self.kicks += other.kicks;
        self.nick_bans += other.nick_bans;
        self.address_bans += other.address_bans;
        self.evaders_refused += other.evaders_refused;
        self.trolls_replaced += other.trolls_replaced;
        self.unbans += other.unbans;
    }
}

/// One verdict per check of [`CHECKS`], in that order: `Err` says how it was broken.
pub(super) type Verdicts = [Result<(), String>; CHECKS.len()];

impl Desk {
    /// The round's verdicts (`None` without `--oper`) and figures.
    pub(super) fn judge(&self) -> (Option<Verdicts>, Figures) {
        let steps = || self.steps.iter().filter(|s| !s.refused);
        let told = |sanction| {
            steps()
                .filter(|s| s.sanction == sanction && s.dealt_with())
                .count() as u64
        };
        let figures = Figures {
            kicks: told(Sanction::Kick),
            nick_bans: told(Sanction::NickBan),
            address_bans: told(Sanction::AddressBan),
            evaders_refused: steps()
                .filter_map(|s| s.evader.as_ref())
                .filter(|e| e.told.is_some())
                .count() as u64,
            trolls_replaced: self.steps.iter().filter(|s| s.refused).count() as u64,
            unbans: self
                .lifted
                .iter()
                .filter(|l| l.ends_with(" lifted"))
                .count() as u64,
        };
        if self.login.is_none() {
            return (None, figures);
        }
        let verdicts = if self.granted() {
            [
                Ok(()),
                self.told_and_closed(&[Sanction::Kick]),
                self.told_and_closed(&[Sanction::NickBan, Sanction::AddressBan]),
                self.announced(),
                self.lifted(),
            ]
        } else {
            let why = match &self.opered {
                Some(answer) => format!("/oper was answered {answer:?}"),
                None => "/oper was never answered".to_string(),
            };
            let nothing = || Err(format!("nothing done: {why}"));
            [Err(why.clone()), nothing(), nothing(), nothing(), nothing()]
        };
        (Some(verdicts), figures)
    }

    /// Every troll of these sanctions in the plan was told its line as its last and closed by
    /// the server; after a nick ban the nick was refused to the operator, after an address
    /// ban a client from there was told and closed before any welcome. The operator's
    /// commands were not refused.
    fn told_and_closed(&self, sanctions: &[Sanction]) -> Result<(), String> {
        let mut broken = Vec::new();
        let planned = self.plan.iter().filter(|s| sanctions.contains(s)).count();
        let steps: Vec<&Step> = (self.steps.iter())
            .filter(|s| !s.refused && sanctions.contains(&s.sanction))
            .collect();
        if steps.len() < planned {
            broken.push(format!(
                "{} of the {planned} trolls planned were dealt with (the others never came: \
                 {} turned away as the server was full)",
                steps.len(),
                self.steps.iter().filter(|s| s.refused).count()
            ));
        }
        for step in steps {
            let expected = step.told_as(&self.nick);
            let who = step.who();
            if let Some(told) = step.told.as_ref().filter(|_| !step.ordered) {
                // Turned away before the operator did anything: a ban still in force.
                broken.push(format!("{who} was told {told:?} before the operator acted"));
                continue;
            }
            match &step.told {
                None if !step.ordered => broken.push(format!(
                    "{who}: the operator never heard it join {SECOND_ROOM}, and did nothing"
                )),
                None => broken.push(format!("{who} was never told {expected:?}")),
                Some(told) if *told != expected => {
                    broken.push(format!("{who} was told {told:?}, not {expected:?}"));
                }
                Some(_) if step.after > 0 => {
                    broken.push(format!("{who} got {} lines after {expected:?}", step.after));
                }
                Some(_) if !step.closed => {
                    broken.push(format!("{who} was not disconnected after {expected:?}"));
                }
                Some(_) => {}
            }
            if step.told.is_none() {
                continue;
            }
            if step.sanction == Sanction::NickBan {
                let refused = format!("*** nick \"{}\" is banned", step.nick);
                match &step.nick_answer {
                    Some(answer) if *answer == refused => {}
                    Some(answer) => broken.push(format!(
                        "/nick {} while banned was answered {answer:?}, not {refused:?}",
                        step.nick
                    )),
                    None => broken.push(format!("/nick {} was never answered", step.nick)),
                }
            }
            if step.sanction == Sanction::AddressBan {
                match &step.evader {
                    None => broken.push(format!("no client came back from {TROLL_ADDRESS}")),
                    Some(e) if e.welcomed => broken.push(format!(
                        "a client from the banned {TROLL_ADDRESS} was welcomed"
                    )),
                    Some(Evader { told: None, .. }) => broken.push(format!(
                        "a client from the banned {TROLL_ADDRESS} was never told {expected:?}"
                    )),
                    Some(Evader {
                        told: Some(told), ..
                    }) if *told != expected => broken.push(format!(
                        "a client from the banned {TROLL_ADDRESS} was told {told:?}, not \
                         {expected:?}"
                    )),
                    Some(e) if !e.closed => broken.push(format!(
                        "a client from the banned {TROLL_ADDRESS} was not disconnected"
                    )),
                    Some(_) => {}
                }
            }
        }
        broken.extend(
            self.refusals
                .iter()
                .map(|r| format!("the operator was told {r:?}")),
        );
        if broken.is_empty() {
            Ok(())
        } else {
            Err(broken.join("; "))
        }
    }

    /// Every kick and ban done (its troll told) was announced once to every well-behaved
    /// member of the second room, and to nobody else.
    fn announced(&self) -> Result<(), String> {
        let mut broken = Vec::new();
        for step in self.steps.iter().filter(|s| s.dealt_with()) {
            let line = step.announced_as(&self.nick);
            let times = |member: &String| {
                (self.heard.iter())
                    .filter(|(l, who)| *l == line && who == member)
                    .count()
            };
            let never: Vec<&str> = (self.members.iter())
                .filter(|m| times(m) == 0)
                .map(String::as_str)
                .collect();
            if !never.is_empty() {
                broken.push(format!(
                    "{line:?} never reached {} of the {} members of {SECOND_ROOM}: {}",
                    never.len(),
                    self.members.len(),
                    never.join(", ")
                ));
            }
            for member in self.members.iter().filter(|m| times(m) > 1) {
                broken.push(format!("{member} heard {line:?} {} times", times(member)));
            }
        }
        let strangers = (self.heard.iter()).filter(|(_, who)| !self.members.contains(who));
        for (line, who) in strangers {
            broken.push(format!("{who}, not in {SECOND_ROOM}, heard {line:?}"));
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(broken.join("; "))
        }
    }

    /// Every ban placed was lifted with `/unban`, and `/bans` then answered as before the
    /// round.
    fn lifted(&self) -> Result<(), String> {
        let mut broken = Vec::new();
        let bans = (self.steps.iter())
            .filter(|s| s.dealt_with() && s.sanction != Sanction::Kick)
            .count();
        if self.placed.len() < bans {
            broken.push(format!(
                "{bans} trolls were banned, and {} bans said placed",
                self.placed.len()
            ));
        }
        for mask in &self.placed {
            let lifted = format!("*** ban on {mask} lifted");
            if !self.lifted.contains(&lifted) {
                broken.push(format!("/unban {mask} was not answered {lifted:?}"));
            }
        }
        match (&self.bans_before, &self.bans_after) {
            (Some(before), Some(after)) if before == after => {}
            (Some(before), Some(after)) => broken.push(format!(
                "/bans said {after:?} after the round, {before:?} before"
            )),
            (before, after) => broken.push(format!(
                "/bans went unanswered (before the round: {before:?}, after: {after:?})"
            )),
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(broken.join("; "))
        }
    }
}

/// The checks of [`CHECKS`] over the rounds (`None` in a round without `--oper`): each
/// skipped without an operator, failed naming each round that broke it, or passed saying
/// what was kept (from `figures`, summed over the rounds).
pub(super) fn checks(rounds: &[Option<&Verdicts>], figures: Figures) -> Vec<Check> {
    if rounds.iter().any(Option::is_none) {
        return CHECKS
            .map(|name| Check {
                name,
                outcome: Outcome::Skipped,
                detail: "needs --oper NAME=PASSWORD, an operator the server knows".into(),
            })
            .into();
    }
    let Figures {
        kicks,
        nick_bans,
        address_bans,
        evaders_refused,
        unbans,
        ..
    } = figures;
    let kept = [
        format!(
            "the operator's /oper was answered \"*** you are now an operator (NAME)\" in each \
             of the {} rounds",
            rounds.len()
        ),
        format!(
            "{kicks} trolls kicked, each told \"*** kicked by OPERATOR: REASON\" as its last \
             line and disconnected"
        ),
        format!(
            "{nick_bans} trolls banned by nick and {address_bans} by address, each told \
             \"*** banned: REASON\" as its last line and disconnected; each banned nick \
             refused to the operator, and {evaders_refused} clients from a banned address \
             told so and closed before a welcome"
        ),
        format!(
            "each of the {} kicks and bans announced once to every member of {SECOND_ROOM} \
             (\"*** NICK was kicked by OPERATOR (REASON)\", \"*** NICK left (banned: \
             REASON)\") and to nobody else",
            kicks + nick_bans + address_bans
        ),
        format!(
            "{unbans} bans lifted with /unban at the end of their round, /bans answering as \
             before it"
        ),
    ];
    (CHECKS.iter().zip(kept).enumerate())
        .map(|(i, (&name, kept))| {
            let broken: Vec<String> = (1..)
                .zip(rounds)
                .filter_map(|(r, verdicts)| {
                    let why = verdicts.and_then(|v| v[i].as_ref().err())?;
                    Some(format!("round {r}: {why}"))
                })
                .collect();
            if broken.is_empty() {
                Check {
                    name,
                    outcome: Outcome::Pass,
                    detail: kept,
                }
            } else {
                Check {
                    name,
                    outcome: Outcome::Fail,
                    detail: broken.join("; "),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator's nick in the crafted rounds.
    const OP: &str = "guest-1";

    /// A troll dealt with as it must be, but not yet told.
    fn step(sanction: Sanction, troll: u64, nick: &str) -> Step {
        Step {
            sanction,
            troll,
            opened: Instant::now(),
            nick: nick.into(),
            reason: format!("flooding #chaos (step {troll})"),
            refused: false,
            refused_at: None,
            ordered: true,
            told: None,
            after: 0,
            closed: true,
            gone: true,
            followed: true,
            nick_answer: None,
            evader: None,
            timed_out: false,
        }
    }

    /// A round in which the operator kept every promise: two kicks, a nick ban and an
    /// address ban, each announced to the two members of #chaos, the bans lifted.
    fn kept() -> Desk {
        let members = vec!["chatter 10".to_string(), "operator".to_string()];
        let mut steps = vec![
            step(Sanction::Kick, 1, "guest-2"),
            step(Sanction::NickBan, 2, "guest-3"),
            step(Sanction::Kick, 3, "guest-4"),
            step(Sanction::AddressBan, 4, "guest-5"),
        ];
        for s in &mut steps {
            s.told = Some(s.told_as(OP));
        }
        steps[1].nick_answer = Some("*** nick \"guest-3\" is banned".into());
        steps[3].evader = Some(Evader {
            serial: 5,
            told: Some(steps[3].told_as(OP)),
            welcomed: false,
            closed: true,
            gone: true,
        });
        let heard = (steps.iter())
            .flat_map(|s| members.iter().map(|m| (s.announced_as(OP), m.clone())))
            .collect();
        Desk {
            login: Some("chaos=pw".parse().unwrap()),
            plan: PLAN.to_vec(),
            nick: OP.into(),
            opered: Some("*** you are now an operator (chaos)".into()),
            bans_before: Some("*** no bans".into()),
            bans_after: Some("*** no bans".into()),
            steps,
            members,
            heard,
            placed: vec!["guest-3".into(), "127.0.0.2".into()],
            lifted: vec![
                "*** ban on guest-3 lifted".into(),
                "*** ban on 127.0.0.2 lifted".into(),
            ],
            unbanning: true,
            refusals: Vec::new(),
        }
    }

    /// The one check `desk` fails, and why (every other must pass).
    fn only_broken(desk: &Desk, check: &str) -> String {
        let (verdicts, _) = desk.judge();
        let verdicts = verdicts.expect("an operator");
        let mut why = None;
        for (name, verdict) in CHECKS.iter().zip(verdicts) {
            match verdict {
                Err(e) if *name == check => why = Some(e),
                Err(e) => panic!("{name} failed too: {e}"),
                Ok(()) => {}
            }
        }
        why.unwrap_or_else(|| panic!("{check} passed"))
    }

    #[test]
    fn a_round_that_kept_every_promise_passes_with_its_figures() {
        let (verdicts, figures) = kept().judge();
        assert!(verdicts.unwrap().iter().all(Result::is_ok));
        assert_eq!(
            (figures.kicks, figures.nick_bans, figures.address_bans),
            (2, 1, 1)
        );
        assert_eq!((figures.evaders_refused, figures.unbans), (1, 2));
        let round = kept().judge().0.unwrap();
        let checks = checks(&[Some(&round)], figures);
        assert!(checks.iter().all(|c| c.outcome == Outcome::Pass));
    }

    #[test]
    fn without_oper_the_checks_are_skipped() {
        let desk = Desk::default();
        assert!(desk.judge().0.is_none());
        let checks = checks(&[None], Figures::default());
        assert_eq!(checks.len(), CHECKS.len());
        assert!(checks.iter().all(|c| c.outcome == Outcome::Skipped));
    }

    #[test]
    fn an_operator_never_granted_fails_every_check() {
        for answer in [Some("*** wrong operator name or password"), None] {
            let mut desk = kept();
            desk.opered = answer.map(String::from);
            let verdicts = desk.judge().0.unwrap();
            assert!(verdicts.iter().all(Result::is_err));
            let why = verdicts[0].as_ref().unwrap_err();
            assert!(why.starts_with("/oper was"), "{why}");
        }
    }

    #[test]
    fn a_kicked_troll_told_another_reason_fails() {
        let mut desk = kept();
        desk.steps[0].told = Some(format!("*** kicked by {OP}: spam"));
        let why = only_broken(&desk, "kicks told and closed");
        assert!(
            why.contains("was told \"*** kicked by guest-1: spam\", not"),
            "{why}"
        );
    }

    #[test]
    fn a_kicked_troll_that_heard_more_or_was_not_closed_fails() {
        let mut desk = kept();
        desk.steps[2].after = 3;
        let why = only_broken(&desk, "kicks told and closed");
        assert!(why.contains("got 3 lines after"), "{why}");
        let mut desk = kept();
        desk.steps[2].closed = false;
        let why = only_broken(&desk, "kicks told and closed");
        assert!(why.contains("was not disconnected"), "{why}");
    }

    #[test]
    fn a_troll_turned_away_before_the_operator_acted_fails() {
        // A ban left from the round before refuses it at accept, with the same reason.
        let mut desk = kept();
        desk.steps[3].ordered = false;
        desk.placed.pop();
        desk.lifted.pop();
        let why = only_broken(&desk, "bans told and enforced");
        assert!(why.contains("before the operator acted"), "{why}");
    }

    #[test]
    fn a_banned_nick_taken_or_a_banned_address_welcomed_fails() {
        let mut desk = kept();
        desk.steps[1].nick_answer = Some(format!("*** {OP} is now known as guest-3"));
        let why = only_broken(&desk, "bans told and enforced");
        assert!(
            why.contains("/nick guest-3 while banned was answered"),
            "{why}"
        );
        let mut desk = kept();
        if let Some(evader) = &mut desk.steps[3].evader {
            evader.welcomed = true;
        }
        let why = only_broken(&desk, "bans told and enforced");
        assert!(
            why.contains("from the banned 127.0.0.2 was welcomed"),
            "{why}"
        );
    }

    #[test]
    fn a_plan_cut_short_fails() {
        let mut desk = kept();
        desk.steps.pop();
        desk.placed.pop();
        desk.lifted.pop();
        let why = only_broken(&desk, "bans told and enforced");
        assert!(why.starts_with("1 of the 2 trolls planned"), "{why}");
    }

    #[test]
    fn an_announcement_missed_repeated_or_heard_elsewhere_fails() {
        let kick = kept().steps[0].announced_as(OP);
        let mut desk = kept();
        desk.heard
            .retain(|(l, who)| !(*l == kick && who == "operator"));
        let why = only_broken(&desk, "moderation announced");
        assert!(
            why.contains("never reached 1 of the 2 members of #chaos: operator"),
            "{why}"
        );
        let mut desk = kept();
        desk.heard.push((kick.clone(), "chatter 10".into()));
        let why = only_broken(&desk, "moderation announced");
        assert!(
            why.contains("chatter 10 heard") && why.ends_with("2 times"),
            "{why}"
        );
        let mut desk = kept();
        desk.heard.push((kick, "chatter 0".into()));
        let why = only_broken(&desk, "moderation announced");
        assert!(why.starts_with("chatter 0, not in #chaos, heard"), "{why}");
    }

    #[test]
    fn bans_left_in_force_fail() {
        let mut desk = kept();
        desk.lifted.clear();
        desk.bans_after = Some("*** 2 bans:".into());
        let why = only_broken(&desk, "bans lifted");
        assert!(why.contains("/unban 127.0.0.2 was not answered"), "{why}");
        assert!(
            why.ends_with("/bans said \"*** 2 bans:\" after the round, \"*** no bans\" before")
        );
    }

    #[test]
    fn a_failure_names_its_round() {
        let good = kept().judge().0.unwrap();
        let mut desk = kept();
        desk.steps[0].closed = false;
        let bad = desk.judge().0.unwrap();
        let checks = checks(&[Some(&good), Some(&bad)], Figures::default());
        let kicks = checks
            .iter()
            .find(|c| c.name == "kicks told and closed")
            .unwrap();
        assert_eq!(kicks.outcome, Outcome::Fail);
        assert!(
            kicks.detail.starts_with("round 2: troll 1 (guest-2)"),
            "{}",
            kicks.detail
        );
    }

    #[test]
    fn the_bans_answer_is_read_back_as_written() {
        assert!(is_bans_header("*** 1 ban:"));
        assert!(is_bans_header("*** 12 bans:"));
        assert!(!is_bans_header(
            "***   guest-3 by chaos, 29s left: flooding"
        ));
        assert!(!is_bans_header("*** no bans"));
    }
}
