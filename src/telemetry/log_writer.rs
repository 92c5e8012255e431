//! Where log lines go: stderr, in batches, written by a thread of their own
//! so that serving never waits for logging. A status lookup logs two
//! lines, and writing each with a syscall of its own cost more than
//! formatting it; and a log reader that stops reading (a hung log shipper)
//! must not stop the server with it.
//!
//! So a line is appended to a bounded buffer, in order, whatever its level.
//! The writer thread writes what gathered every [`BATCH_INTERVAL`], at once
//! when [`BATCH_BYTES`] have gathered or a `WARN` or `ERROR` line arrives,
//! and alone waits on the output. While the output is stalled and the
//! buffer is full, lines are dropped and counted
//! (`deployql_log_lines_dropped_total`); once output flows again, one line
//! says how many were lost. At exit, what gathered is written (see
//! [`super::Telemetry`]), waiting at most [`EXIT_FLUSH_TIMEOUT`].

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::Duration,
};

use metrics::Counter;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Gathered lines are written once this many bytes have gathered...
const BATCH_BYTES: usize = 32 * 1024;
/// ...or this long after the last write, whichever comes first.
const BATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Lines held while the output does not take them (several seconds of a
/// busy server's lines); past this, new lines are dropped.
const BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Longest the process waits at exit for its last lines to be written.
const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Says that `n` lines were dropped (in the log's own format).
type DropReport = Box<dyn Fn(u64) + Send + Sync>;

/// The log's output (see the module's docs). Clones share the buffer.
#[derive(Clone)]
pub(super) struct BatchedStderr {
    shared: Arc<Shared>,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the writer thread: a batch is due.
    due: Condvar,
    /// Wakes those waiting for a flush: a batch was written.
    written: Condvar,
    dropped: Counter,
}

/// The lines gathered and the writer's progress.
#[derive(Default)]
struct Buffer {
    lines: Vec<u8>,
    /// A `WARN` or worse, or a flush, is waiting: write now.
    urgent: bool,
    /// Lines dropped since the last report.
    dropped: u64,
    /// Flushes asked for, and those the writer has completed.
    flushes_asked: u64,
    flushes_done: u64,
}

impl std::fmt::Debug for BatchedStderr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedStderr").finish_non_exhaustive()
    }
}

impl BatchedStderr {
    /// The writer to stderr, its thread started; dropped lines are counted
    /// in `dropped` and reported as a `WARN` line.
    pub(super) fn start(dropped: Counter) -> io::Result<Self> {
        let report: DropReport = Box::new(|lines| {
            tracing::warn!(
                dropped_lines = lines,
                "log lines dropped: the log output was not taking them (see \
                 deployql_log_lines_dropped_total)"
            );
        });
        Self::to(Box::new(io::stderr()), dropped, report)
    }

    fn to(sink: Box<dyn Write + Send>, dropped: Counter, report: DropReport) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            buffer: Mutex::default(),
            due: Condvar::new(),
            written: Condvar::new(),
            dropped,
        });
        let writer = Self { shared };
        let thread = writer.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || thread.write_until_alone(sink, &report))?;
        Ok(writer)
    }

    /// The writer thread's loop: waits for a batch to be due, takes it, and
    /// writes it outside the lock. Ends once no other handle is left.
    fn write_until_alone(&self, mut sink: Box<dyn Write + Send>, report: &DropReport) {
        let mut spare = Vec::new();
        loop {
            let mut buffer = self.lock();
            if !buffer.urgent && buffer.lines.len() < BATCH_BYTES {
                buffer = self
                    .shared
                    .due
                    .wait_timeout(buffer, BATCH_INTERVAL)
                    .map_or_else(|poisoned| poisoned.into_inner().0, |(buffer, _)| buffer);
            }
            buffer.urgent = false;
            std::mem::swap(&mut buffer.lines, &mut spare);
            let flushes = buffer.flushes_asked;
            let dropped = std::mem::take(&mut buffer.dropped);
            drop(buffer);
            let written = sink.write_all(&spare).and_then(|()| sink.flush());
            spare.clear();
            if spare.capacity() > 4 * BATCH_BYTES {
                spare.shrink_to(BATCH_BYTES);
            }
            if dropped > 0 {
                if written.is_ok() {
                    report(dropped);
                } else {
                    self.lock().dropped += dropped;
                }
            }
            let mut buffer = self.lock();
            buffer.flushes_done = flushes;
            self.shared.written.notify_all();
            if Arc::strong_count(&self.shared) == 1 && buffer.lines.is_empty() {
                return;
            }
        }
    }

    /// Has what gathered so far written, waiting at most
    /// [`EXIT_FLUSH_TIMEOUT`] (the output may be stalled).
    pub(super) fn flush_quietly(&self) {
        let mut buffer = self.lock();
        buffer.flushes_asked += 1;
        buffer.urgent = true;
        let asked = buffer.flushes_asked;
        self.shared.due.notify_one();
        let _ = self
            .shared
            .written
            .wait_timeout_while(buffer, EXIT_FLUSH_TIMEOUT, |buffer| buffer.flushes_done < asked);
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while a line was appended leaves, at worst, half a line.
        self.shared.buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line { writer: self, urgent: false }
    }

    fn make_writer_for(&'a self, metadata: &Metadata<'_>) -> Line<'a> {
        Line { writer: self, urgent: *metadata.level() <= Level::WARN }
    }
}

/// One line's writer (the formatting layers write a line in one call).
#[derive(Debug)]
pub(super) struct Line<'a> {
    writer: &'a BatchedStderr,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut buffer = self.writer.lock();
        if buffer.lines.len() + bytes.len() > BUFFER_BYTES {
            buffer.dropped += 1;
            drop(buffer);
            self.writer.shared.dropped.increment(1);
            return Ok(bytes.len());
        }
        let was_due = buffer.urgent || buffer.lines.len() >= BATCH_BYTES;
        buffer.lines.extend_from_slice(bytes);
        buffer.urgent |= self.urgent;
        // One wake-up per batch, not per line: a wake-up is a syscall.
        if !was_due && (buffer.urgent || buffer.lines.len() >= BATCH_BYTES) {
            self.writer.shared.due.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A sink the test reads back, which blocks while `stalled`.
    #[derive(Clone, Default)]
    struct Written {
        bytes: Arc<Mutex<Vec<u8>>>,
        stalled: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for Written {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (stalled, resumed) = &*self.stalled;
            let stalled = stalled.lock().map_err(|_| io::Error::other("poisoned"))?;
            drop(resumed.wait_while(stalled, |stalled| *stalled));
            self.bytes.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Written {
        fn text(&self) -> String {
            String::from_utf8_lossy(
                &self.bytes.lock().map(|bytes| bytes.clone()).unwrap_or_default(),
            )
            .into_owned()
        }

        fn stall(&self, stalled: bool) {
            let (flag, resumed) = &*self.stalled;
            *flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = stalled;
            resumed.notify_all();
        }

        /// Waits (patiently, for a loaded machine) until `done` holds of the text.
        fn wait_for(&self, done: impl Fn(&str) -> bool) -> String {
            for _ in 0..200 {
                let text = self.text();
                if done(&text) {
                    return text;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            self.text()
        }
    }

    fn writer(written: &Written) -> (BatchedStderr, mpsc::Receiver<u64>) {
        let (reports, reported) = mpsc::channel();
        let reports = Mutex::new(reports);
        let report: DropReport = Box::new(move |lines| {
            let _ = reports.lock().map(|reports| reports.send(lines));
        });
        let writer = BatchedStderr::to(Box::new(written.clone()), Counter::noop(), report)
            .expect("thread started");
        (writer, reported)
    }

    fn line(writer: &BatchedStderr, urgent: bool, text: &str) {
        let mut line = Line { writer, urgent };
        line.write_all(text.as_bytes()).expect("gathered");
    }

    #[test]
    fn lines_are_written_in_order_and_a_warning_does_not_wait_for_the_interval() {
        let written = Written::default();
        let (writer, _) = writer(&written);
        line(&writer, false, "one\n");
        line(&writer, false, "two\n");
        line(&writer, true, "warning\n");
        line(&writer, false, "three\n");
        assert_eq!(
            written.wait_for(|text| text.contains("warning")).split_once("warning").map(|(a, _)| a),
            Some("one\ntwo\n")
        );
        writer.flush_quietly();
        assert_eq!(written.text(), "one\ntwo\nwarning\nthree\n");
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_instead_of_blocking() {
        let written = Written::default();
        let (writer, reported) = writer(&written);
        written.stall(true);
        // The writer thread takes the first line and blocks on the output.
        line(&writer, true, "before\n");
        let long = format!("{}\n", "x".repeat(1023));
        let lines = 2 * BUFFER_BYTES / long.len();
        let started = std::time::Instant::now();
        for _ in 0..lines {
            line(&writer, false, &long);
        }
        assert!(started.elapsed() < Duration::from_secs(5), "appending waited on the output");
        written.stall(false);
        let dropped = reported.recv_timeout(Duration::from_secs(10)).expect("a report of drops");
        writer.flush_quietly();
        let kept = written.text().matches(&long).count();
        assert!(dropped > 0 && kept > 0, "kept {kept}, dropped {dropped}");
        // "before" may have been taken before the stall began, or after.
        assert_eq!(kept as u64 + dropped, lines as u64);
        assert!(written.text().starts_with("before\n"));
    }
}
