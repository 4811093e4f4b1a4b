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

/// The system part of [`own_cpu_secs`]: time in the kernel on this process's behalf.
pub(super) fn own_sys_secs() -> f64 {
    ticks_of("self").map_or(0.0, |(_, sys)| sys as f64 / 100.0)
}

/// CPU time a process has used (user + system), in seconds: how the generator judges which
/// side was the limit, and how the tests tell a sleeping loop from a spinning one.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    cpu_secs_of(&pid.to_string())
}

/// User + system time from /proc/PROC/stat, in seconds. Clock ticks are 1/100 s on Linux.
fn cpu_secs_of(proc: &str) -> Option<f64> {
    let (user, sys) = ticks_of(proc)?;
    Some((user + sys) as f64 / 100.0)
}

/// User and system clock ticks from /proc/PROC/stat.
fn ticks_of(proc: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{proc}/stat")).ok()?;
    // Fields after the command name (in parentheses, possibly with spaces) start at field 3;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((ticks(11)?, ticks(12)?))
}

/// A server's open descriptors and RSS in KiB (`None` once it has exited).
pub(super) fn resources(pid: u32) -> Option<(usize, u64)> {
    Some((open_fds(pid)?, rss_kib(pid)?))
}

/// Descriptors a process has open, from /proc/PID/fd.
fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}
