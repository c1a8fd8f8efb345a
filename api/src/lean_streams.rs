//! Ten thousand open notification streams in one process (issue 20).
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer, plus its
//! connection state, for the whole life of every HTTP/1.1 connection, and
//! poem has no setting to make them smaller: an open event stream cost about
//! 35 KB (docs/performance.md). An event stream reads nothing after its
//! request and writes a few hundred bytes a minute, so [`LeanStreams`], the
//! acceptor in front of poem, serves those connections itself:
//!
//! - it peeks at each new connection's request head (nothing is consumed);
//! - a connection that is not `GET /api/notifications/stream` over HTTP/1.1
//!   with a complete, plain head (no body, no upgrade) goes to poem untouched,
//!   as does one whose head is not complete within [`HEAD_WAIT`] (a browser's
//!   preconnect) or is larger than [`MAX_HEAD`];
//! - a stream request is read and answered by the **same endpoint** as every
//!   other request (the edge middleware: CORS, security headers, request id,
//!   logging and metrics; authentication; error bodies). Only the HTTP/1.1
//!   framing of the answer is written here: the head, the body chunked, one
//!   write per event, and the connection closed when the body ends (the
//!   client's EventSource reconnects, as it does after any close).
//!
//! While idle, a stream is one parked task holding its socket and the hub's
//! channel: no buffer is kept between writes. A client that goes away is
//! noticed at once (the task also waits on the socket's read side), and one
//! that stops reading is dropped after [`WRITE_TIMEOUT`].

use futures::StreamExt;
use poem::http::header::{self, HeaderName, HeaderValue};
use poem::http::uri::Scheme;
use poem::http::{Method, StatusCode, Uri, Version};
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Body, Endpoint, Request, RequestParts, Response};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The path served here (and by its poem route, for every connection this
/// acceptor does not take).
pub const STREAM_PATH: &str = "/api/notifications/stream";
/// How long a new connection may take to send its whole request head before
/// it is handed to poem as it is.
pub const HEAD_WAIT: Duration = Duration::from_secs(3);
/// The largest request head taken here (larger ones go to poem).
pub const MAX_HEAD: usize = 16 * 1024;
/// A client that has not taken an event after this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEADERS: usize = 64;
const PREFIX: &[u8] = b"GET /api/notifications/stream";

type Accepted = (TcpStream, LocalAddr, RemoteAddr, Scheme);

/// An acceptor that serves notification-stream connections itself (see the
/// module) and yields every other connection to poem.
pub struct LeanStreams {
    rx: mpsc::Receiver<Accepted>,
    local: Vec<LocalAddr>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for LeanStreams {
    fn drop(&mut self) {
        // Stops accepting: the inner listener closes with the loop.
        self.accept_loop.abort();
    }
}

impl LeanStreams {
    /// Wraps a TCP acceptor; `ep` answers the streams taken here (the same
    /// endpoint poem serves). Needs a Tokio runtime.
    pub fn new<A, E>(inner: A, ep: Arc<E>) -> Self
    where
        A: Acceptor<Io = TcpStream> + 'static,
        E: Endpoint + 'static,
    {
        let local = inner.local_addr();
        let (tx, rx) = mpsc::channel(1024);
        let accept_loop = tokio::spawn(accept_loop(inner, ep, tx));
        Self {
            rx,
            local,
            accept_loop,
        }
    }
}

impl Acceptor for LeanStreams {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.local.clone()
    }

    async fn accept(&mut self) -> io::Result<Accepted> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| io::Error::other("the listener has stopped"))
    }
}

async fn accept_loop<A, E>(mut inner: A, ep: Arc<E>, tx: mpsc::Sender<Accepted>)
where
    A: Acceptor<Io = TcpStream>,
    E: Endpoint + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            r = inner.accept() => r,
        };
        match accepted {
            Ok(conn) => {
                let (ep, tx) = (ep.clone(), tx.clone());
                tokio::spawn(async move {
                    match classify(&conn.0).await {
                        Some(head) => serve_stream(conn, head, &*ep).await,
                        None => {
                            let _ = tx.send(conn).await;
                        }
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, most likely: poem's own loop would
                // spin on the same error; wait a little instead.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A stream request taken here: its head's length and what it says.
struct Head {
    len: usize,
    uri: Uri,
    headers: poem::http::HeaderMap,
}

/// Peeks at a new connection: `Some` for a complete, plain
/// `GET /api/notifications/stream` head, `None` for anything else (poem's).
async fn classify(stream: &TcpStream) -> Option<Head> {
    let deadline = Instant::now() + HEAD_WAIT;
    // Most connections are not streams: a few bytes on the stack tell.
    let mut start = [0u8; PREFIX.len() + 1];
    loop {
        let n = peek_until(stream, &mut start, deadline).await?;
        let k = n.min(PREFIX.len());
        if start[..k] != PREFIX[..k] {
            return None;
        }
        if n == start.len() {
            if !matches!(start[PREFIX.len()], b' ' | b'?') {
                return None;
            }
            break;
        }
        wait_for_more(deadline).await?;
    }
    let mut buf = vec![0u8; 2048];
    loop {
        let n = peek_until(stream, &mut buf, deadline).await?;
        match parse_head(&buf[..n]) {
            Parsed::Stream(head) => return Some(head),
            Parsed::Other => return None,
            Parsed::Partial if n == buf.len() => {
                if buf.len() >= MAX_HEAD {
                    return None;
                }
                buf.resize((buf.len() * 2).min(MAX_HEAD), 0);
            }
            Parsed::Partial => wait_for_more(deadline).await?,
        }
    }
}

/// Peeks what has arrived (at least one byte), `None` at the deadline, on
/// end of stream or on an error (poem will see the same).
async fn peek_until(stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> Option<usize> {
    match tokio::time::timeout_at(deadline, stream.peek(buf)).await {
        Ok(Ok(n)) if n > 0 => Some(n),
        _ => None,
    }
}

/// A head split over several packets: look again shortly (a peek returns at
/// once while anything is unread, so it cannot wait for *more*).
async fn wait_for_more(deadline: Instant) -> Option<()> {
    if Instant::now() >= deadline {
        return None;
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    Some(())
}

enum Parsed {
    Stream(Head),
    Partial,
    Other,
}

/// What a connection's first bytes are: a stream request this module takes,
/// not yet a whole head, or anything else.
fn parse_head(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let path = req.path.unwrap_or("");
    let ours = req.method == Some("GET")
        && req.version == Some(1)
        && path
            .strip_prefix(STREAM_PATH)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'));
    if !ours {
        return Parsed::Other;
    }
    let Ok(uri) = Uri::try_from(path) else {
        return Parsed::Other;
    };
    let mut map = poem::http::HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Parsed::Other;
        };
        map.append(name, value);
    }
    // A body, an upgrade or an expectation is poem's to handle.
    let plain = !map.contains_key(header::TRANSFER_ENCODING)
        && !map.contains_key(header::UPGRADE)
        && !map.contains_key(header::EXPECT)
        && map
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    if !plain {
        return Parsed::Other;
    }
    Parsed::Stream(Head {
        len,
        uri,
        headers: map,
    })
}

async fn serve_stream<E: Endpoint>(conn: Accepted, head: Head, ep: &E) {
    let (mut stream, local, remote, scheme) = conn;
    // Take the head off the socket (it was only peeked at).
    let mut left = head.len;
    let mut sink = [0u8; 512];
    while left > 0 {
        let want = left.min(sink.len());
        match stream.read(&mut sink[..want]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left -= n,
        }
    }
    let _ = stream.set_nodelay(true);
    let mut parts = poem::http::Request::builder()
        .method(Method::GET)
        .uri(head.uri)
        .version(Version::HTTP_11)
        .body(())
        .map(|r| r.into_parts().0)
        .expect("a parsed GET head is a valid request");
    parts.headers = head.headers;
    let req = Request::from_parts(
        RequestParts::from((parts, local, remote, scheme)),
        Body::empty(),
    );
    // Boxed: the endpoint's future is large, and a task keeps room for its
    // largest state for as long as it lives (the stream's whole life).
    let resp = Box::pin(ep.get_response(req)).await;
    if let Err(e) = respond(&mut stream, resp).await {
        tracing::debug!(error = %e, "notification stream closed");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

/// Writes `resp` as HTTP/1.1: an event stream chunked until its body ends or
/// the client goes away, anything else (an error) with its length. The
/// connection closes after either.
async fn respond(stream: &mut TcpStream, resp: Response) -> io::Result<()> {
    let (parts, body) = resp.into_parts();
    let events = parts.status == StatusCode::OK
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut out = response_head(parts.status, &parts.headers);
    if !events {
        let bytes = body
            .into_bytes()
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(&bytes);
        return write(stream, &out).await;
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    write(stream, &out).await?;
    drop(out);
    let mut body = std::pin::pin!(body.into_bytes_stream());
    let (mut rd, mut wr) = stream.split();
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) if bytes.is_empty() => {}
                Some(Ok(bytes)) => write(&mut wr, &chunk_frame(&bytes)).await?,
                // The server ended the stream (shutdown, a stalled client, a
                // lost subscription): the last chunk, then close.
                _ => return write(&mut wr, b"0\r\n\r\n").await,
            },
            r = rd.read(&mut scratch) => match r {
                // The client went away.
                Ok(0) | Err(_) => return Ok(()),
                // Nothing more is expected from it; whatever it sends is dropped.
                Ok(_) => {}
            },
        }
    }
}

/// The status line and the response's own headers, with `date` and
/// `connection: close`; the framing headers are written by the caller.
fn response_head(status: StatusCode, headers: &poem::http::HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(768);
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n");
    out
}

/// One chunk of a chunked body.
fn chunk_frame(bytes: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(bytes.len() + 12);
    frame.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
    frame.extend_from_slice(bytes);
    frame.extend_from_slice(b"\r\n");
    frame
}

async fn write<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> &'static str {
        match parse_head(bytes) {
            Parsed::Stream(_) => "stream",
            Parsed::Partial => "partial",
            Parsed::Other => "other",
        }
    }

    #[test]
    fn only_plain_stream_gets_are_taken() {
        let ok = b"GET /api/notifications/stream?token=a.b.c HTTP/1.1\r\nHost: x\r\n\
                   Authorization: Bearer t\r\nLast-Event-ID: 1\r\n\r\n";
        assert_eq!(parsed(ok), "stream");
        assert_eq!(
            parsed(b"GET /api/notifications/stream HTTP/1.1\r\nHost: x\r\n\r\n"),
            "stream"
        );
        // Not yet a whole head.
        assert_eq!(
            parsed(b"GET /api/notifications/stream HTTP/1.1\r\nHost: x\r\n"),
            "partial"
        );
        for other in [
            &b"GET /api/notifications/streams HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /api/notifications/stream/x HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HEAD /api/notifications/stream HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /api/notifications/stream HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/notifications/stream HTTP/1.0\r\nHost: x\r\n\r\n",
            b"GET /api/notifications/stream HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /api/notifications/stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /api/notifications/stream HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /api/notifications/stream HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET /api/notifications HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /api/notifications/stream HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert_eq!(parsed(other), "other", "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn heads_and_chunks_are_framed_for_http_1_1() {
        let mut h = poem::http::HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        let head = String::from_utf8(response_head(StatusCode::OK, &h)).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("content-type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(head.ends_with("connection: close\r\n"), "{head}");
        assert!(!head.contains("content-length") && !head.contains("keep-alive"));
        assert_eq!(chunk_frame(b": ping\n\n"), b"8\r\n: ping\n\n\r\n");
        let long = vec![b'x'; 300];
        assert!(chunk_frame(&long).starts_with(b"12c\r\n"));
    }
}
