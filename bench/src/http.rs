//! A minimal HTTP/1.1 client for the peer vault's JSON API (`peer.rs`): one keep-alive
//! connection per requester, `POST` with a `Content-Length` body, replies read by their
//! `Content-Length` (the peer, axum, sends one with every JSON reply). No chunked bodies, no
//! redirects, no TLS: enough to load a local service, and no HTTP client stack added to the
//! workspace for it (its own CPU, like the NATS client's, is the `bench` column).

use std::net::SocketAddr;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The largest reply head or body accepted (the peer's replies are under 1 KiB).
const MAX_REPLY: usize = 1 << 20;

pub struct HttpConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Bytes read past the last reply (none with a well-behaved server), and the read buffer.
    buf: Vec<u8>,
}

/// A reply: status code and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status and `Content-Length` of a reply head (up to the blank line).
fn parse_head(head: &[u8]) -> anyhow::Result<(u16, usize, bool)> {
    let text = std::str::from_utf8(head).context("reply head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => length = value.parse().ok(),
            "transfer-encoding" if !value.eq_ignore_ascii_case("identity") => {
                bail!("transfer-encoding {value} is not supported")
            }
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let length = length.context("reply without Content-Length")?;
    if length > MAX_REPLY {
        bail!("reply body of {length} bytes");
    }
    Ok((status, length, close))
}

impl HttpConn {
    pub fn new(addr: SocketAddr) -> HttpConn {
        HttpConn {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// `POST path` with a JSON body and extra headers; reconnects once if the kept-alive
    /// connection was closed.
    pub async fn post_json(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let fresh = self.stream.is_none();
        match self.exchange(&bytes).await {
            Ok(r) => Ok(r),
            Err(_) if !fresh => {
                self.stream = None;
                self.exchange(&bytes).await
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Reply> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let result = self.exchange_on_stream(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange_on_stream(&mut self, request: &[u8]) -> anyhow::Result<Reply> {
        let stream = self.stream.as_mut().context("not connected")?;
        stream.write_all(request).await?;
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_REPLY {
                bail!("reply head too long");
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let (status, length, close) = parse_head(&self.buf[..head_end])?;
        let body_start = head_end + 4;
        while self.buf.len() < body_start + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed inside a reply body");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf[body_start..body_start + length].to_vec();
        self.buf.drain(..body_start + length);
        if close {
            self.stream = None;
        }
        Ok(Reply { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_heads_are_parsed() {
        let (status, len, close) =
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12")
                .expect("parses");
        assert_eq!((status, len, close), (200, 12, false));
        let (status, _, close) =
            parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close")
                .expect("parses");
        assert_eq!((status, close), (404, true));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nx: y").is_err());
    }

    #[tokio::test]
    async fn two_requests_share_one_kept_alive_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut chunk = [0u8; 1024];
            let mut answered = 0;
            while answered < 2 {
                let n = s.read(&mut chunk).await.expect("read");
                seen.extend_from_slice(&chunk[..n]);
                while let Some(i) = find(&seen, b"\r\n\r\n") {
                    // Each request carries a 2-byte body.
                    if seen.len() < i + 6 {
                        break;
                    }
                    seen.drain(..i + 6);
                    answered += 1;
                    let body = format!("{{\"n\":{answered}}}");
                    s.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await
                    .expect("write");
                }
            }
        });
        let mut c = HttpConn::new(addr);
        for n in 1..=2 {
            let r = c
                .post_json("/data/add", &[("x-tenant-id", "public")], b"{}")
                .await
                .expect("reply");
            assert_eq!(r.status, 200);
            assert_eq!(r.body, format!("{{\"n\":{n}}}").into_bytes());
        }
        server.await.expect("server");
    }
}
