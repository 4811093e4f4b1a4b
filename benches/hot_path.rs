//! Benchmarks of the two in-memory halves of a chat line's path, so a change to the hot path
//! shows up as a number: `cargo bench`.
//!
//! - `framing`: bytes as `read` returns them (16 KiB at a time) into sanitised lines, for
//!   clean ASCII chat and for hostile input (escape sequences, invalid UTF-8) that takes the
//!   slow path.
//! - `fanout`: one chat line allocated once and queued to N recipients' write queues, then
//!   each queue flushed with `writev` into `io::sink()`: the per-recipient cost of a
//!   broadcast without the system call itself. (The room's own loop adds a slab walk and a
//!   flush-list push per recipient; the socket write is measured by the load generator.)

use std::hint::black_box;
use std::io;
use std::rc::Rc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pollchat::framing::{Frame, LineFramer};
use pollchat::write_queue::WriteQueue;

const READ_CHUNK: usize = 16 * 1024;

/// `lines` lines of about `len` bytes each, built by `make`.
fn corpus(lines: usize, make: impl Fn(usize) -> String) -> Vec<u8> {
    (0..lines).flat_map(|n| make(n).into_bytes()).collect()
}

fn framing(c: &mut Criterion) {
    let clean = corpus(16_384, |n| {
        format!("message number {n:>8} from a well-behaved client\n")
    });
    let hostile = corpus(16_384, |n| {
        format!("\x1b[31mred {n:>8}\x1b[0m caf\u{e9} \u{9b}2J and some text\r\n")
    });
    let mut hostile = hostile;
    // Sprinkle invalid UTF-8 as well.
    for i in (7..hostile.len()).step_by(97) {
        if hostile[i] != b'\n' {
            hostile[i] = 0xff;
        }
    }
    let mut group = c.benchmark_group("framing");
    for (name, input) in [("clean_ascii", &clean), ("hostile", &hostile)] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| {
                let mut framer = LineFramer::new(4096);
                let mut lines = 0usize;
                for chunk in input.chunks(READ_CHUNK) {
                    framer.extend(chunk);
                    while let Some(frame) = framer.next_frame() {
                        if let Frame::Line(line) = frame {
                            lines += black_box(line).len();
                        }
                    }
                }
                lines
            })
        });
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let text = format!("<alice> {}\n", "x".repeat(55)); // a 64-byte chat line
    for recipients in [1usize, 100, 10_000] {
        let mut queues: Vec<WriteQueue> = (0..recipients).map(|_| WriteQueue::default()).collect();
        group.throughput(Throughput::Elements(recipients as u64));
        group.bench_function(BenchmarkId::from_parameter(recipients), |b| {
            b.iter(|| {
                let line: Rc<[u8]> = Rc::from(text.as_bytes());
                for queue in &mut queues {
                    queue.push(Rc::clone(&line));
                }
                for queue in &mut queues {
                    black_box(queue.write_to(&mut io::sink()).ok());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, framing, fanout);
criterion_main!(benches);
