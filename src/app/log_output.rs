//! Where `mailgate serve` writes its log: stderr, from a thread of its
//! own, through a bounded buffer of lines. Writing stderr from the thread
//! that logs means a reader that stops reading (a full pipe, a paused
//! pager, a stalled log collector) blocks that thread: measured, the
//! gateway stopped acknowledging mail after 137 messages when nobody read
//! its stderr pipe, because the commit thread itself logs. Here a full
//! buffer drops lines instead; they are counted, reported as a warning once
//! the reader keeps up again and in `mailgate_log_lines_dropped_total`.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::metrics::Metrics;

/// Lines held for a slow reader unless `MAILGATE_LOG_BUFFER_LINES` says
/// otherwise: a few MiB at worst, seconds of the busiest logging.
pub const DEFAULT_BUFFER_LINES: usize = 16_384;
/// The environment variable that sets the buffer (lines, at least 1).
pub const BUFFER_ENV: &str = "MAILGATE_LOG_BUFFER_LINES";
/// How often dropped lines are looked for and reported.
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// The dropped-line count of the process's log output, once it is set up.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// A log output: the writer for the fmt layer and the guard that flushes
/// what is buffered when dropped (hold it until the process ends).
pub struct LogOutput {
    pub writer: NonBlocking,
    pub guard: WorkerGuard,
}

/// The buffer size from `MAILGATE_LOG_BUFFER_LINES`, or the default with
/// the reason when the variable is set but unusable.
pub fn buffer_lines(value: Option<&str>) -> Result<usize, String> {
    match value {
        None => Ok(DEFAULT_BUFFER_LINES),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "{BUFFER_ENV} must be a whole number of lines, at least 1; using {DEFAULT_BUFFER_LINES}"
            )),
        },
    }
}

/// Log output to `sink` through a buffer of `lines`, its dropped lines
/// counted for [`report_dropped`] (the first output made is the one
/// reported).
pub fn to<W: Write + Send + 'static>(sink: W, lines: usize) -> LogOutput {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name("mailgate-log")
        .finish(sink);
    let _ = DROPPED.set(writer.error_counter());
    LogOutput { writer, guard }
}

/// Log output to stderr. The lines the log thread finds waiting go out in
/// one write (it flushes whenever it has emptied the buffer), not one
/// write(2) each.
pub fn to_stderr(lines: usize) -> LogOutput {
    to(
        std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()),
        lines,
    )
}

/// Lines dropped so far by the process's log output (0 before it is set up).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Runs for the life of the process: every few seconds, counts newly
/// dropped lines in the metrics and says so in the log. A warning written
/// while the buffer is still full may be dropped itself: then it is given
/// again at the next look, with the total, until one gets through.
pub async fn report_dropped(metrics: Arc<Metrics>) {
    let mut counted = dropped_lines();
    let mut told = counted;
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tick.tick().await;
        let now = dropped_lines();
        metrics.log_lines_dropped.inc_by(now - counted);
        counted = now;
        if now > told {
            tracing::warn!(
                lines = now - told,
                total = now,
                "the log reader fell behind: log lines were dropped (mail is not affected)"
            );
            // No line dropped since: this warning is in the buffer.
            if dropped_lines() == now {
                told = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// A sink whose first write blocks until the test lets it go, like a
    /// pipe nobody reads.
    struct Stalled {
        release: Option<mpsc::Receiver<()>>,
        written: mpsc::Sender<Vec<u8>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(release) = self.release.take() {
                let _ = release.recv();
            }
            let _ = self.written.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_costs_lines_not_the_writer() {
        let (release_tx, release_rx) = mpsc::channel();
        let (written_tx, written_rx) = mpsc::channel();
        let sink = Stalled {
            release: Some(release_rx),
            written: written_tx,
        };
        let out = to(sink, 8);
        // Written from another thread: if the writes waited for the stalled
        // reader (released only afterwards), `done` would never come.
        let writer = out.writer.clone();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..200 {
                // One write a line, as the fmt layer does.
                let mut w = writer.make_writer();
                w.write_all(format!("line {i}\n").as_bytes()).unwrap();
            }
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("logging waited for a reader that does not read");
        let dropped = out.writer.error_counter().dropped_lines();
        // At most the buffer plus the line the stalled write holds got through.
        assert!(dropped >= 150, "dropped {dropped}");
        release_tx.send(()).unwrap();
        drop(out.guard);
        let kept: Vec<Vec<u8>> = written_rx.try_iter().collect();
        assert_eq!(kept.len() + dropped, 200, "every line written or counted");
        assert_eq!(kept[0], b"line 0\n");
    }

    #[test]
    fn buffer_size_from_the_environment() {
        assert_eq!(buffer_lines(None), Ok(DEFAULT_BUFFER_LINES));
        assert_eq!(buffer_lines(Some(" 64 ")), Ok(64));
        for bad in ["0", "-3", "many", ""] {
            let err = buffer_lines(Some(bad)).unwrap_err();
            assert!(err.contains(BUFFER_ENV), "{err}");
        }
    }
}
