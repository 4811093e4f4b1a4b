//! Every process a test starts is held by a [`Guard`], which ends it when the test ends, pass
//! or fail.
//!
//! A `std::process::Child` that is dropped is not killed: a test that panics (a failed
//! assertion, a deadline) while its server runs leaves that server listening after the test
//! binary has exited, for as long as the machine runs (one did for 37 minutes, 2026-12-07).
//! A panic unwinds the test's stack and drops its locals, so a guard's `Drop` runs on every
//! way out of a test but an abort.
//!
//! The guard signals by PID only while it still holds the child unreaped: a process that has
//! exited keeps its PID (as a zombie) until it is waited for, so the PID cannot have gone to
//! someone else's process when the guard signals it.

use std::io::Read;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Output};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::DEADLINE;

/// How often [`Guard::wait_timeout`] looks whether the process has exited.
const POLL: Duration = Duration::from_millis(10);

/// A spawned process, ended (and reaped) when the guard is dropped if it has not exited yet.
pub struct Guard {
    /// `None` once reaped: by a wait that saw it exit, or by `Drop`.
    child: Option<Child>,
    pid: u32,
    /// What the process is, for messages ("pollchat", "redis-server").
    what: String,
    /// How `Drop` ends it: `None` for SIGKILL at once; `Some(grace)` for SIGTERM, then SIGKILL
    /// if it is still running after `grace` (for a process that must clean up after itself).
    term_grace: Option<Duration>,
}

impl Guard {
    /// Spawns `command`; the test fails if it cannot be started.
    pub fn spawn(command: &mut Command) -> Guard {
        let what = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        Guard {
            pid: child.id(),
            child: Some(child),
            what,
            term_grace: None,
        }
    }

    /// Ends the process with SIGTERM when dropped, and SIGKILL only if it is still running
    /// after `grace`: for a process that ends children of its own on SIGTERM but cannot on
    /// SIGKILL (node ends the chromium that playwright started, which runs in a process group
    /// of its own).
    pub fn term_first(mut self, grace: Duration) -> Guard {
        self.term_grace = Some(grace);
        self
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn child(&mut self) -> &mut Child {
        let what = &self.what;
        self.child
            .as_mut()
            .unwrap_or_else(|| panic!("{what} was already waited for"))
    }

    /// Its stdin, if it was piped and not taken yet.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child().stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child().stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child().stderr.take()
    }

    /// Sends a signal with `kill(1)`, failing the test if it fails. Only while the guard
    /// holds the process unreaped, so the PID is still this process's.
    pub fn signal(&self, name: &str) {
        assert!(self.child.is_some(), "{} was already waited for", self.what);
        super::send_signal(self.pid, name);
    }

    /// Whether it has exited, without waiting; `Some` reaps it.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let what = self.what.clone();
        let status = self
            .child()
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for {what}: {e}"));
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Its exit status once it has exited, or `None` if it is still running after `timeout`.
    /// (Polls every few milliseconds: std has no wait with a timeout.)
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for it to exit; fails the test after [`DEADLINE`] (and the drop then ends it).
    pub fn wait(&mut self) -> ExitStatus {
        match self.wait_timeout(DEADLINE) {
            Some(status) => status,
            None => panic!("{} did not exit in time", self.what),
        }
    }

    /// Ends it now, as the drop would, and reaps it.
    fn end(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        if matches!(child.try_wait(), Ok(None))
            && let Some(grace) = self.term_grace
        {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status();
            let deadline = Instant::now() + grace;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(POLL);
            }
        }
        // On a process that has exited (a zombie until the wait below) this does nothing.
        let _ = child.kill();
        let _ = child.wait();
        self.child = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.end();
    }
}

/// Runs `command` to its exit, its stdout and stderr captured, as `Command::output` does, but
/// guarded and with a deadline: a program that should exit at once and does not (a server
/// that started when it should have refused its arguments) fails the test after [`DEADLINE`]
/// instead of hanging it, and is ended.
pub fn output(command: &mut Command) -> Output {
    use std::process::Stdio;
    let mut guard = Guard::spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = read_all(guard.take_stdout().expect("piped stdout"));
    let stderr = read_all(guard.take_stderr().expect("piped stderr"));
    let status = guard.wait();
    // Both pipes close when the process exits (unless it left a child holding them, which
    // the deadline catches).
    let collect = |rx: mpsc::Receiver<Vec<u8>>, name: &str| {
        rx.recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{} still open on {}", name, guard.what))
    };
    Output {
        status,
        stdout: collect(stdout, "stdout"),
        stderr: collect(stderr, "stderr"),
    }
}

/// Reads `pipe` to its end from a thread; the bytes arrive on the returned channel.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = pipe.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    rx
}
