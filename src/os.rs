//! What the server asks of the operating system before the loop starts: listening sockets
//! set up the way a busy server needs, and as many file descriptors as it may have.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::limits::LISTEN_BACKLOG;

/// A non-blocking listening socket.
///
/// Built with `socket2` rather than `mio::net::TcpListener::bind` for two settings mio does not
/// expose: a listen backlog of [`LISTEN_BACKLOG`] (mio uses 128, and a connection storm
/// overflows that before the loop gets to `accept`), and `IPV6_V6ONLY` on IPv6 sockets, so
/// `--bind 0.0.0.0:7878 --bind [::]:7878` is two listeners instead of a clash over the port.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Lets a restarted server bind again while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Raises the soft open-file limit to the hard limit and returns the new soft limit. Every
/// client costs one descriptor, and the soft limit is often only 1024.
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}
