//! The loop's side sockets: the sources that are neither listeners, clients nor the bus, each
//! registered under a token of its own (see `Owner`). The signal pipe (the binary only),
//! the waker a [`ShutdownHandle`](super::ShutdownHandle) uses, the stats socket
//! (`--stats-udp`), and stderr when the loop writes the log. None of them is on a chat
//! line's path: each is an event now and then, and the loop decides what it means.

use std::net::SocketAddr;
use std::sync::Arc;

use mio::{Interest, Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::reader::Clients;
use super::{LOG, SIGNALS, STATS, WAKER, gauges};
use crate::config::Config;
use crate::error::Error;
use crate::logging::LogOutput;
use crate::stats::StatsSocket;

/// The side sockets, each `None` when not asked for.
pub(super) struct SideSockets {
    signals: Option<Signals>,
    pub waker: Arc<Waker>,
    stats: Option<StatsSocket>,
    /// stderr, written at the end of every turn without blocking (`logging.rs`).
    pub log: Option<LogOutput>,
}

impl SideSockets {
    pub fn open(config: &Config, poll: &Poll) -> Result<SideSockets, Error> {
        let registry = poll.registry();
        let signals = if config.handle_signals {
            // signal-hook's handler writes to a pipe that is registered here like any socket,
            // so a signal is one more event in the batch, not code run at a random moment.
            // SIGHUP is caught too: its default action ends the process, and a closed
            // terminal or a service manager's reload sends it.
            let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(Error::Poll)?;
            registry
                .register(&mut signals, SIGNALS, Interest::READABLE)
                .map_err(Error::Poll)?;
            Some(signals)
        } else {
            None
        };
        let stats = match config.stats_udp {
            Some(addr) => Some(
                StatsSocket::bind(addr, registry, STATS)
                    .map_err(|source| Error::Bind { addr, source })?,
            ),
            None => None,
        };
        let mut log = LogOutput::open().map_err(Error::Poll)?;
        if let Some(log) = &mut log {
            log.register(registry, LOG).map_err(Error::Poll)?;
        }
        let waker = Arc::new(Waker::new(registry, WAKER).map_err(Error::Poll)?);
        Ok(SideSockets {
            signals,
            waker,
            stats,
            log,
        })
    }

    /// Where `--stats-udp` answers, if it is on.
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.stats.as_ref().and_then(StatsSocket::local_addr)
    }

    /// Datagrams on the stats socket, each `stats` answered with the counters.
    pub fn answer_stats(&self, clients: &mut Clients) {
        let Clients {
            table,
            hub,
            scratch,
            ..
        } = clients;
        if let Some(socket) = &self.stats {
            socket.answer(scratch, || {
                table.stats.json(&gauges(table, &hub.chat, &*hub.bus))
            });
        }
    }

    /// The signals that arrived since the last call.
    pub fn signals(&mut self) -> Vec<i32> {
        self.signals
            .as_mut()
            .map_or_else(Vec::new, |signals| signals.pending().collect())
    }

    /// The log lines of this turn go to stderr as far as it takes them, after everything
    /// else: the log waits for the clients, never the other way round.
    pub fn write_log(&mut self) {
        if let Some(log) = &mut self.log {
            log.flush();
        }
    }
}
