//! Bodies: the response `Body` handlers return, and the capped readers for request bodies.
//!
//! Handlers build a [`Body`] (empty, in-memory bytes, or a file streamed from disk) and hyper
//! writes it out; an exact length is always known, so hyper sends `Content-Length`. Request
//! bodies arrive as hyper's `Incoming`; [`PacedBody`] feeds streaming consumers (blob writer,
//! hasher) under the body deadline (`limits::body`), and [`read_limited`] collects small
//! bodies under a cap and the same deadline. `BodyError` goes to the error mapping in the
//! HTTP layer (TooLarge → 413, TooSlow → 408). A body the handler leaves unread does not
//! hold the connection: hyper gives up on it and closes after the response.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use smol::future::{poll_fn, FutureExt};
use smol::Task;

use crate::limits::body::BodyPace;

/// Bytes read from disk per frame.
const FILE_CHUNK: u64 = 64 * 1024;

/// A stream of chunks of unknown total length (event streams); sent chunked.
pub type ChunkStream = Pin<Box<dyn smol::stream::Stream<Item = io::Result<Bytes>> + Send>>;

/// A response body: with a length known up front, or an open-ended stream.
pub enum Body {
    Empty,
    Full(Bytes),
    File(FileBody),
    Stream(ChunkStream),
}

impl Body {
    /// Streams `len` bytes of `file` from its current position.
    pub fn file(file: File, len: u64) -> Self {
        Body::File(FileBody::new(file, len))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Full(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::Full(Bytes::from(v))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Full(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::Full(Bytes::from_static(s.as_bytes()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match this {
            Body::Empty => Poll::Ready(None),
            Body::Full(_) => match std::mem::replace(this, Body::Empty) {
                Body::Full(b) if !b.is_empty() => Poll::Ready(Some(Ok(Frame::data(b)))),
                _ => Poll::Ready(None),
            },
            Body::File(f) => f.poll_chunk(cx).map(|c| c.map(|r| r.map(Frame::data))),
            Body::Stream(s) => s
                .as_mut()
                .poll_next(cx)
                .map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_empty(),
            Body::File(f) => f.remaining == 0,
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.len() as u64),
            Body::File(f) => SizeHint::with_exact(f.remaining),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

type ChunkRead = Task<io::Result<(File, Vec<u8>)>>;

/// A file sent in 64 KiB chunks, each read on the blocking pool so the executor never waits
/// on the disk. The next chunk is read while the current one is being written to the socket.
pub struct FileBody {
    /// `None` while a read owns it, and after the last read.
    file: Option<File>,
    /// Bytes not yet handed to hyper (what `size_hint` reports).
    remaining: u64,
    /// Bytes not yet asked of the disk.
    unrequested: u64,
    reading: Option<ChunkRead>,
}

impl FileBody {
    pub fn new(file: File, len: u64) -> Self {
        FileBody {
            file: Some(file),
            remaining: len,
            unrequested: len,
            reading: None,
        }
    }

    fn start_read(&mut self) {
        if self.reading.is_some() || self.unrequested == 0 {
            return;
        }
        let Some(file) = self.file.take() else {
            return;
        };
        let want = self.unrequested.min(FILE_CHUNK);
        self.unrequested -= want;
        self.reading = Some(smol::unblock(move || {
            // `want` is at most FILE_CHUNK, so the cast cannot truncate.
            let mut buf = Vec::with_capacity(want as usize);
            let mut file = file;
            (&mut file).take(want).read_to_end(&mut buf)?;
            // A short read means the file shrank since its length was taken; sending fewer
            // bytes than the Content-Length promised would corrupt the response.
            if (buf.len() as u64) < want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than its announced length",
                ));
            }
            Ok((file, buf))
        }));
    }

    /// The next chunk, for a reader other than hyper (a copy into an upload).
    pub async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        self.start_read();
        let Some(task) = self.reading.as_mut() else {
            // Only reachable after an earlier error already ended the body.
            return Poll::Ready(None);
        };
        let result = match Pin::new(task).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.reading = None;
        let chunk = match result {
            Ok((file, chunk)) => {
                self.file = Some(file);
                chunk
            }
            Err(e) => {
                self.remaining = 0;
                return Poll::Ready(Some(Err(e)));
            }
        };
        // Reads return exactly what they asked for, and asks never exceed what is left.
        self.remaining -= chunk.len() as u64;
        self.start_read();
        Poll::Ready(Some(Ok(Bytes::from(chunk))))
    }
}

/// The next data chunk of a request body; trailers are skipped. `None` at the end.
async fn next_chunk(body: &mut Incoming) -> Option<Result<Bytes, hyper::Error>> {
    loop {
        let frame = poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut *body), cx)).await?;
        match frame.map(Frame::into_data) {
            Ok(Ok(data)) if data.is_empty() => continue,
            Ok(Ok(data)) => return Some(Ok(data)),
            Ok(Err(_trailers)) => continue,
            Err(e) => return Some(Err(e)),
        }
    }
}

/// Why a request body could not be collected.
#[derive(Debug)]
pub enum BodyError {
    /// The body is (or declared itself) longer than the limit; reading stopped there.
    TooLarge,
    /// The client's stream broke (disconnect, bad chunk encoding, …).
    Broken(hyper::Error),
    /// The client sent nothing for too long, or too slowly (`limits::body`).
    TooSlow,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("request body too large"),
            BodyError::Broken(e) => write!(f, "request body broken: {e}"),
            BodyError::TooSlow => f.write_str("request body too slow"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Broken(e) => Some(e),
            BodyError::TooLarge | BodyError::TooSlow => None,
        }
    }
}

/// A request body read under a [`BodyPace`]: each wait for the client is bounded by what
/// the pace still allows, so a silent or trickling client ends with `TooSlow`.
pub struct PacedBody {
    body: Incoming,
    pace: BodyPace,
    received: u64,
    waited: Duration,
}

impl PacedBody {
    pub fn new(body: Incoming, pace: BodyPace) -> PacedBody {
        PacedBody {
            body,
            pace,
            received: 0,
            waited: Duration::ZERO,
        }
    }

    /// The length the client declared, if any.
    pub fn declared(&self) -> u64 {
        http_body::Body::size_hint(&self.body).lower()
    }

    /// The next data chunk, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, BodyError>> {
        if http_body::Body::is_end_stream(&self.body) {
            return None;
        }
        let allowed = crate::limits::body::wait_allowed(&self.pace, self.received, self.waited);
        let started = Instant::now();
        let chunk = async {
            next_chunk(&mut self.body)
                .await
                .map(|r| r.map_err(BodyError::Broken))
        }
        .or(async {
            smol::Timer::after(allowed).await;
            Some(Err(BodyError::TooSlow))
        })
        .await;
        self.waited += started.elapsed();
        if let Some(Ok(c)) = &chunk {
            self.received += c.len() as u64;
        }
        chunk
    }
}

/// Collects a whole request body of at most `limit` bytes under `pace`. A declared
/// `Content-Length` over the limit is refused before reading anything (so no `100 Continue`
/// is sent); a chunked body is refused as soon as the running total passes the limit.
pub async fn read_limited(
    body: Incoming,
    limit: usize,
    pace: BodyPace,
) -> Result<Bytes, BodyError> {
    let mut body = PacedBody::new(body, pace);
    let declared = body.declared();
    if declared > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    // `declared <= limit`, a usize, so the cast cannot truncate.
    let mut buf = BytesMut::with_capacity(declared as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use std::io::Write;

    async fn collect(mut body: Body) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            if let Ok(data) = frame?.into_data() {
                out.extend_from_slice(&data);
            }
        }
        assert!(body.is_end_stream());
        Ok(out)
    }

    #[test]
    fn full_and_empty_report_exact_sizes() {
        assert_eq!(Body::Empty.size_hint().exact(), Some(0));
        assert!(Body::Empty.is_end_stream());
        let full = Body::from("hello");
        assert_eq!(full.size_hint().exact(), Some(5));
        assert_eq!(smol::block_on(collect(full)).unwrap(), b"hello");
    }

    #[test]
    fn file_streams_exactly_the_announced_length() {
        let mut tmp = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        tmp.write_all(&data).unwrap();
        let _ = std::io::Seek::rewind(&mut tmp);

        let body = Body::file(tmp.try_clone().unwrap(), 150_000);
        assert_eq!(body.size_hint().exact(), Some(150_000));
        assert_eq!(smol::block_on(collect(body)).unwrap(), &data[..150_000]);
    }

    #[test]
    fn file_shorter_than_announced_is_an_error() {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(&[7u8; 1000]).unwrap();
        let _ = std::io::Seek::rewind(&mut tmp);
        let err = smol::block_on(collect(Body::file(tmp, 5000))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
