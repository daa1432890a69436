//! Response bodies: whole (every page and answer but one), or written while the client reads
//! it (`/metrics`: at 100,000 jobs its exposition is 57 MB, and built whole it took that much
//! of the daemon's memory, twice while it grew, at each scrape).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Frame, SizeHint};
use tokio::sync::mpsc;

/// What a written body is sent in: about this many bytes a piece.
const PIECE: usize = 64 * 1024;

/// Pieces written ahead of the client's reading, at most.
const AHEAD: usize = 4;

/// How long a writer waits for a client that reads nothing before it gives the body up: a
/// scraper that stops reading must not hold the writer (and the next scrapes behind it)
/// forever. Prometheus gives up on a scrape after 10 s by default.
pub const STALL: Duration = Duration::from_secs(10);

/// A response body.
pub enum Body {
    Whole(Full<Bytes>),
    Written(Written),
}

impl From<Full<Bytes>> for Body {
    fn from(full: Full<Bytes>) -> Body {
        Body::Whole(full)
    }
}

/// The reading end of a body a [`Writer`] writes.
pub struct Written {
    pieces: mpsc::Receiver<Piece>,
    ended: bool,
}

enum Piece {
    More(Bytes),
    /// The last piece: the body is whole.
    Last(Bytes),
}

/// A written body that stopped before its end (its writer failed, gave a stalled client up,
/// or panicked): the connection is closed without the body's terminating chunk, so the client
/// sees an error, never a shorter text it could take for the whole.
#[derive(Debug, thiserror::Error)]
#[error("the response body stopped before its end")]
pub struct Cut;

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        match self.get_mut() {
            Body::Whole(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Body::Written(w) => {
                if w.ended {
                    return Poll::Ready(None);
                }
                Poll::Ready(match std::task::ready!(w.pieces.poll_recv(cx)) {
                    Some(Piece::More(b)) => Some(Ok(Frame::data(b))),
                    Some(Piece::Last(b)) => {
                        w.ended = true;
                        Some(Ok(Frame::data(b)))
                    }
                    None => {
                        w.ended = true;
                        Some(Err(Cut))
                    }
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Whole(full) => full.is_end_stream(),
            Body::Written(w) => w.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // Exact: hyper sends it as `Content-Length`.
            Body::Whole(full) => full.size_hint(),
            Body::Written(_) => SizeHint::default(),
        }
    }
}

/// Writes a body (`fmt::Write`) in pieces of about [`PIECE`] bytes, from a blocking thread
/// (`spawn_blocking`), each handed to the client's connection as it is written, a few at most
/// ahead of what the client has read. Writing fails (`fmt::Error`) once the client is gone or
/// has read nothing for `stall`; the body is whole only after [`Writer::finish`].
pub struct Writer {
    pieces: mpsc::Sender<Piece>,
    buffer: String,
    runtime: tokio::runtime::Handle,
    stall: Duration,
}

impl Writer {
    /// A writer and the body it writes. Called on the runtime; the writing is done off it.
    pub fn new(stall: Duration) -> (Writer, Body) {
        let (tx, rx) = mpsc::channel(AHEAD);
        let writer = Writer {
            pieces: tx,
            buffer: piece_buffer(),
            runtime: tokio::runtime::Handle::current(),
            stall,
        };
        let body = Body::Written(Written {
            pieces: rx,
            ended: false,
        });
        (writer, body)
    }

    fn send(&mut self, piece: Piece) -> fmt::Result {
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(self.stall, self.pieces.send(piece)));
        match sent {
            Ok(Ok(())) => Ok(()),
            // Gone, or not reading.
            Ok(Err(_)) | Err(_) => Err(fmt::Error),
        }
    }

    /// Sends what is left as the body's last piece: until then, the client's body is cut.
    pub fn finish(mut self) -> fmt::Result {
        let last = Bytes::from(std::mem::take(&mut self.buffer));
        self.send(Piece::Last(last))
    }
}

impl fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buffer.push_str(s);
        if self.buffer.len() >= PIECE {
            let full = std::mem::replace(&mut self.buffer, piece_buffer());
            self.send(Piece::More(Bytes::from(full)))?;
        }
        Ok(())
    }
}

/// A piece's buffer: room for `PIECE` and the last write that crosses it.
fn piece_buffer() -> String {
    String::with_capacity(PIECE + PIECE / 4)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use http_body_util::BodyExt;

    use super::*;

    /// The pieces read back are the text written, in order, and the body ends after the last.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_written_body_reads_back_as_the_text_written() {
        let text: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
        let (mut writer, body) = Writer::new(STALL);
        let written = text.clone();
        let writing = tokio::task::spawn_blocking(move || {
            for line in written.split_inclusive('\n') {
                writer.write_str(line)?;
            }
            writer.finish()
        });
        let read = body.collect().await.expect("whole").to_bytes();
        writing.await.unwrap().unwrap();
        assert!(text.len() > 4 * PIECE, "several pieces: {}", text.len());
        assert_eq!(read, text.as_bytes());
    }

    /// A writer that stops before `finish` (an error, a panic) leaves the client a body that
    /// ends in an error, not a shorter text.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_whose_writer_stops_early_ends_in_an_error() {
        let (mut writer, body) = Writer::new(STALL);
        let writing = tokio::task::spawn_blocking(move || {
            writer.write_str(&"x".repeat(3 * PIECE)).unwrap();
            panic!("the writer stops");
        });
        let read = body.collect().await;
        assert!(writing.await.is_err());
        assert!(matches!(read, Err(Cut)), "an error, not a body");
    }

    /// A client that reads nothing is given up after the stall, and the writer is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_gives_a_client_that_reads_nothing_up() {
        let (mut writer, body) = Writer::new(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let writing = tokio::task::spawn_blocking(move || {
            let piece = "y".repeat(PIECE);
            // Bounded: far more pieces than the channel holds.
            for _ in 0..100 {
                writer.write_str(&piece)?;
            }
            writer.finish()
        });
        let result = tokio::time::timeout(Duration::from_secs(10), writing)
            .await
            .expect("the writer gave up within 10 s")
            .unwrap();
        assert_eq!(result, Err(fmt::Error));
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(body);
    }
}
