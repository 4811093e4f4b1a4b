//! What the generator reads from /proc: a server's memory and descriptors, the kernel's memory
//! for sockets (slab caches, TCP buffers), and CPU time, the server's and its own. Both
//! scenarios judge the server by these, and the tests tell a sleeping loop from a spinning one
//! with [`process_cpu_secs`].

/// Resident memory of a process, in KiB, from /proc/PID/status.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A process's write system calls so far (`write`, `writev` and the like) and the bytes they
/// passed, from /proc/PID/io (`syscw`, `wchar`). Over a fan-out their ratio to the deliveries
/// is the server's batching: how many lines one `writev` carries. Any server, Redis too.
pub(super) fn write_calls(pid: u32) -> Option<WriteCalls> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = io.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().parse().ok()
    };
    Some(WriteCalls {
        calls: field("syscw:")?,
        bytes: field("wchar:")?,
    })
}

/// Write system calls and their bytes (see [`write_calls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCalls {
    pub calls: u64,
    pub bytes: u64,
}

impl WriteCalls {
    /// What was written between `before` and this reading.
    pub fn since(self, before: WriteCalls) -> WriteCalls {
        WriteCalls {
            calls: self.calls.saturating_sub(before.calls),
            bytes: self.bytes.saturating_sub(before.bytes),
        }
    }
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

/// Time the machine's virtual CPUs waited for the host, all CPUs together, in seconds
/// (/proc/stat's `steal`): on a shared virtual machine, the time a run lost to its
/// neighbours. Clock ticks are 1/100 s.
pub(super) fn steal_secs() -> f64 {
    let read = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
        // cpu user nice system idle iowait irq softirq steal ...
        let steal: u64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
        Some(steal as f64 / 100.0)
    };
    read().unwrap_or(0.0)
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

/// Size of a page, for the counts in pages below (4 KiB on every Linux this runs on; the
/// generator reads /proc and is for Linux only).
const PAGE: u64 = 4096;

/// The kernel's memory that sockets draw on, machine-wide: what a connection costs beyond
/// the server's own RSS (its socket, the socket's inode and file, an epoll entry...). Read
/// before the connections and again while they sit idle; the growth, over the connections,
/// is their kernel cost.
#[derive(Debug, Clone, Default)]
pub(super) struct KernelMemory {
    /// Bytes of pages held by each slab cache, by name, from /proc/slabinfo (readable by
    /// root only; without it, one entry, `Slab`, from /proc/meminfo).
    slab: Vec<(String, u64)>,
    /// Bytes of TCP socket buffers, from /proc/net/sockstat ("mem", in pages).
    pub tcp_buffers: u64,
}

/// The slab caches an idle TCP connection's end draws on: the socket itself (`TCP`, with
/// its `struct sock`), its inode with the `struct socket` (`sock_inode_cache`), the file and
/// dentry that make it a descriptor, and the epoll entry that watches it. Other caches move
/// with whatever else the machine does (a compiler fills `dentry` and `kmalloc-*` too, but
/// by far less than the connections do while they are made).
const SOCKET_CACHES: [&str; 7] = [
    "TCP",
    "TCPv6",
    "sock_inode_cache",
    "filp",
    "dentry",
    "eventpoll_epi",
    "eventpoll_pwq",
];

/// How much the kernel's memory grew between two readings.
#[derive(Debug, Clone, Default)]
pub struct KernelGrowth {
    /// The caches of [`SOCKET_CACHES`] together, in bytes.
    pub sockets: i64,
    /// All slab caches together, in bytes (negative if they shrank): machine-wide, so other
    /// work moves it too.
    pub slab: i64,
    pub tcp_buffers: i64,
    /// The caches that grew most, largest first, in bytes.
    pub caches: Vec<(String, i64)>,
}

impl KernelMemory {
    pub(super) fn read() -> Option<KernelMemory> {
        let slab = slab_caches().or_else(meminfo_slab)?;
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
        let tcp = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
        let mut words = tcp.split_whitespace();
        words.find(|&w| w == "mem")?;
        let pages: u64 = words.next()?.parse().ok()?;
        Some(KernelMemory {
            slab,
            tcp_buffers: pages * PAGE,
        })
    }

    /// What grew from `before` to this reading; the (at most six) caches that grew most are
    /// named.
    pub(super) fn growth_since(&self, before: &KernelMemory) -> KernelGrowth {
        let was = |name: &str| {
            before
                .slab
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |&(_, b)| b)
        };
        let mut caches: Vec<(String, i64)> = self
            .slab
            .iter()
            .map(|(name, bytes)| (name.clone(), *bytes as i64 - was(name) as i64))
            .collect();
        let total = |m: &KernelMemory| m.slab.iter().map(|&(_, b)| b as i64).sum::<i64>();
        let sockets = caches
            .iter()
            .filter(|(name, _)| SOCKET_CACHES.contains(&name.as_str()))
            .map(|&(_, grew)| grew)
            .sum();
        caches.retain(|&(_, grew)| grew > 0);
        caches.sort_by_key(|&(_, grew)| std::cmp::Reverse(grew));
        caches.truncate(6);
        KernelGrowth {
            sockets,
            slab: total(self) - total(before),
            tcp_buffers: self.tcp_buffers as i64 - before.tcp_buffers as i64,
            caches,
        }
    }
}

/// Pages per slab cache from /proc/slabinfo: `name active num objsize objperslab
/// pagesperslab : tunables ... : slabdata active_slabs num_slabs sharedavail`.
fn slab_caches() -> Option<Vec<(String, u64)>> {
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let caches = text
        .lines()
        .skip(2)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let pages_per_slab: u64 = fields.get(5)?.parse().ok()?;
            let slabs: u64 = fields.get(14)?.parse().ok()?;
            Some((fields[0].to_string(), slabs * pages_per_slab * PAGE))
        })
        .collect();
    Some(caches)
}

/// /proc/meminfo's `Slab:` total, as one cache.
fn meminfo_slab() -> Option<Vec<(String, u64)>> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("Slab:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(vec![("Slab".to_string(), kib * 1024)])
}
