//! Where log lines go: stderr, in batches. A status lookup logs two lines,
//! and writing each with a syscall of its own cost more than formatting it.
//! So `INFO` and below are gathered and written together when
//! [`BATCH_BYTES`] have gathered or every [`BATCH_INTERVAL`], whichever
//! comes first; a `WARN` or `ERROR` line is written at once, after the
//! lines gathered before it, so an operator never waits for a problem and
//! lines stay in order. Whatever is gathered is written when the writer is
//! flushed at exit (see [`super::Telemetry`]).

use std::{
    io::{self, Write},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Gathered lines are written once this many bytes have gathered...
const BATCH_BYTES: usize = 32 * 1024;
/// ...or this long after the last write, whichever comes first.
const BATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Stderr, batched (see the module's docs). Clones share the batch.
#[derive(Clone)]
pub(super) struct BatchedStderr {
    gathered: Arc<Mutex<Gathered>>,
}

/// The lines gathered, and where they go.
struct Gathered {
    lines: Vec<u8>,
    sink: Box<dyn Write + Send>,
}

impl std::fmt::Debug for BatchedStderr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedStderr").finish_non_exhaustive()
    }
}

impl BatchedStderr {
    /// The writer, and a thread that writes what gathered every
    /// [`BATCH_INTERVAL`] for as long as the writer lives.
    pub(super) fn start() -> Self {
        let writer = Self::to(Box::new(io::stderr()));
        writer.write_every(BATCH_INTERVAL);
        writer
    }

    fn to(sink: Box<dyn Write + Send>) -> Self {
        let gathered = Gathered { lines: Vec::new(), sink };
        Self { gathered: Arc::new(Mutex::new(gathered)) }
    }

    /// Starts the thread that writes what gathered every `interval`.
    fn write_every(&self, interval: Duration) {
        let gathered = Arc::downgrade(&self.gathered);
        let started = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(gathered) = gathered.upgrade() else { break };
                BatchedStderr { gathered }.flush_quietly();
            }
        });
        if let Err(err) = started {
            // Lines still go out: each WARN or worse, and every full batch.
            eprintln!("cannot start the log writer's thread: {err}");
        }
    }

    /// Writes what has gathered.
    pub(super) fn flush_quietly(&self) {
        let _ = self.lock().write_out();
    }

    fn lock(&self) -> MutexGuard<'_, Gathered> {
        // A panic while a line was appended leaves, at worst, half a line.
        self.gathered.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Gathered {
    /// Writes the lines gathered to the sink, and forgets them.
    fn write_out(&mut self) -> io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let written = self.sink.write_all(&self.lines).and_then(|()| self.sink.flush());
        self.lines.clear();
        if self.lines.capacity() > 4 * BATCH_BYTES {
            self.lines.shrink_to(BATCH_BYTES);
        }
        written
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

/// One line's writer.
#[derive(Debug)]
pub(super) struct Line<'a> {
    writer: &'a BatchedStderr,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut gathered = self.writer.lock();
        gathered.lines.extend_from_slice(bytes);
        if self.urgent || gathered.lines.len() >= BATCH_BYTES {
            gathered.write_out()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test reads back.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl Write for Written {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Written {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default())
                .into_owned()
        }
    }

    fn line(writer: &BatchedStderr, urgent: bool, text: &str) {
        let mut line = Line { writer, urgent };
        line.write_all(text.as_bytes()).expect("gathered");
    }

    #[test]
    fn info_lines_wait_for_the_batch_and_a_warning_takes_them_along_in_order() {
        let written = Written::default();
        // No thread writing on an interval: only the lines decide.
        let writer = BatchedStderr::to(Box::new(written.clone()));
        line(&writer, false, "one\n");
        line(&writer, false, "two\n");
        assert_eq!(written.text(), "", "written before the batch was due");
        line(&writer, true, "warning\n");
        assert_eq!(written.text(), "one\ntwo\nwarning\n");
        line(&writer, false, "three\n");
        writer.flush_quietly();
        assert_eq!(written.text(), "one\ntwo\nwarning\nthree\n");
    }

    #[test]
    fn gathered_lines_are_written_within_the_interval_or_once_the_batch_is_full() {
        let written = Written::default();
        let writer = BatchedStderr::to(Box::new(written.clone()));
        writer.write_every(BATCH_INTERVAL);
        line(&writer, false, "late\n");
        // Written by the thread alone: nothing else writes here. Patient
        // with a loaded machine, but not forever.
        for _ in 0..50 {
            if !written.text().is_empty() {
                break;
            }
            std::thread::sleep(BATCH_INTERVAL);
        }
        assert_eq!(written.text(), "late\n", "not written by the interval's thread");
        let long = "x".repeat(BATCH_BYTES);
        line(&writer, false, &long);
        assert_eq!(written.text().len(), "late\n".len() + long.len(), "a full batch waited");
    }
}
