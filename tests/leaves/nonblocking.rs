//! `nonblocking`: what a read result means, how a write budget stops a writer, and that a
//! writer taking nothing is broken rather than full.

use std::io::{self, Write};

/// A writer that takes 0 bytes and says nothing: broken, not full (for the tests of the
/// write loops here and in `write_queue.rs`).
pub(crate) struct TakesNothing;

impl Write for TakesNothing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Ok(0)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
