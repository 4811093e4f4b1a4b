//! What the generator reads about processes from /proc: a server's memory and descriptors,
//! and CPU time, the server's and its own. Both scenarios judge the server by these, and the
//! tests tell a sleeping loop from a spinning one with [`process_cpu_secs`].

/// Resident memory of a process, in KiB, from /proc/PID/status.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time this process has used (all threads, user + system), in seconds.
pub(super) fn own_cpu_secs() -> f64 {
    cpu_secs_of("self").unwrap_or(0.0)
}

/// CPU time a process has used (user + system), in seconds: how the generator judges which
/// side was the limit, and how the tests tell a sleeping loop from a spinning one.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    cpu_secs_of(&pid.to_string())
}

/// From /proc/PROC/stat. Clock ticks are 1/100 s on Linux.
fn cpu_secs_of(proc: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{proc}/stat")).ok()?;
    // Fields after the command name (in parentheses, possibly with spaces) start at field 3;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// A process's anonymous memory in KiB (`RssAnon`: its heap, stacks and anonymous maps),
/// from /proc/PID/status. Unlike RSS it leaves out pages of files, the binary's code among
/// them, which stay resident once run: a first run through code that never ran before (TLS,
/// an error path) raises RSS for good without the process holding a byte more.
pub(super) fn anon_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A server's open descriptors and heap (anonymous memory) in KiB (`None` once it exited).
pub(super) fn resources(pid: u32) -> Option<(usize, u64)> {
    Some((open_fds(pid)?, anon_kib(pid)?))
}

/// Descriptors a process has open, from /proc/PID/fd.
fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}
