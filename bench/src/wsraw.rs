//! A minimal WebSocket client for the load generator, used the same way against both servers.
//!
//! Why not tokio-tungstenite: with 1000 subscribers the generator shares two cores with the
//! server under test, so it must cost as little as possible per delivered frame. This client does
//! the HTTP upgrade, then reads frames straight out of one buffer (server frames are unmasked,
//! RFC 6455 section 5.1): no per-message allocation, no UTF-8 validation, no JSON parsing.
//! Frames it sends are masked, as the RFC requires of clients. No extensions are negotiated,
//! so no compression either.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// How much is read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;

pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    mask_seed: u32,
    /// Longest wait for the next bytes in [`RawWs::read_frames`]; none: forever.
    idle_timeout: Option<Duration>,
    /// Reads from the socket that returned data: how well the server batches its writes.
    pub reads: u64,
    /// When the last read returned: the arrival time of every frame it completed.
    received_at: Instant,
}

/// One frame received: its opcode and where its payload lies in the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

/// Parses a server frame header at the start of `bytes`; `None` until all of it has arrived.
pub fn parse_header(bytes: &[u8]) -> Option<FrameHeader> {
    let b0 = *bytes.first()?;
    let b1 = *bytes.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut header_len) = match b1 & 0x7f {
        126 => (u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    if masked {
        header_len += 4;
    }
    if bytes.len() < header_len {
        return None;
    }
    Some(FrameHeader { opcode: b0 & 0x0f, header_len, payload_len: len })
}

/// A masked client frame (FIN set) carrying `payload`.
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

impl RawWs {
    /// Connects and upgrades `ws://127.0.0.1:<port><path>`, with extra request headers.
    pub async fn connect(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<RawWs> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.context("tcp connect")?;
        stream.set_nodelay(true)?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(1024);
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed during the upgrade");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 16 * 1024 {
                bail!("no end to the upgrade response");
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]);
        if !head.starts_with("HTTP/1.1 101") {
            bail!("upgrade refused: {}", head.lines().next().unwrap_or_default());
        }
        buf.drain(..end);
        Ok(RawWs {
            stream,
            buf,
            pos: 0,
            mask_seed: port as u32 ^ 0x9e37_79b9,
            idle_timeout: None,
            reads: 0,
            received_at: Instant::now(),
        })
    }

    /// Makes [`RawWs::read_frames`] fail when nothing arrives for `timeout`.
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = Some(timeout);
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift: the mask only has to vary, not to be secret, for a benchmark.
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_le_bytes()
    }

    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mask = self.next_mask();
        self.stream.write_all(&client_frame(opcode, payload, mask)).await?;
        Ok(())
    }

    /// Sends several frames with one write.
    pub async fn send_many<'a>(&mut self, opcode: u8, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<()> {
        let mut out = Vec::new();
        for payload in payloads {
            let mask = self.next_mask();
            out.extend_from_slice(&client_frame(opcode, payload, mask));
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Calls `on_frame(opcode, payload, received_at)` for every frame until it returns `false`
    /// (then `Ok(true)`) or the connection ends (`Ok(false)`). `received_at` is when the read that
    /// completed the frame returned: one clock reading per read, not per frame. Pings are
    /// answered; fragmented messages are handed over fragment by fragment (neither server
    /// fragments frames this small).
    pub async fn read_frames(&mut self, mut on_frame: impl FnMut(u8, &[u8], Instant) -> bool) -> Result<bool> {
        loop {
            let mut pongs = Vec::new();
            while let Some(header) = parse_header(&self.buf[self.pos..]) {
                let start = self.pos + header.header_len;
                let end = start + header.payload_len;
                if end > self.buf.len() {
                    break;
                }
                self.pos = end;
                match header.opcode {
                    OP_CLOSE => return Ok(false),
                    OP_PING => pongs.push(self.buf[start..end].to_vec()),
                    opcode => {
                        if !on_frame(opcode, &self.buf[start..end], self.received_at) {
                            return Ok(true);
                        }
                    }
                }
            }
            for payload in pongs {
                self.send(0xA, &payload).await?;
            }
            // Keep the unconsumed tail at the start of the buffer, then read more after it.
            self.buf.drain(..self.pos);
            self.pos = 0;
            // Read into spare capacity: resizing would zero READ_CHUNK bytes on every read, a
            // cost paid per read, so more by the server that writes less at a time.
            self.buf.reserve(READ_CHUNK);
            let read = self.stream.read_buf(&mut self.buf);
            let read = match self.idle_timeout {
                Some(idle) => tokio::time::timeout(idle, read).await.unwrap_or_else(|_| {
                    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("nothing received for {idle:?}")))
                }),
                None => read.await,
            };
            let n = read?;
            if n == 0 {
                return Ok(false);
            }
            self.received_at = Instant::now();
            self.reads += 1;
        }
    }

    /// Reads until a frame's payload contains one of `needles`; returns which one and the payload.
    pub async fn read_until(&mut self, needles: &[&[u8]]) -> Result<(usize, Vec<u8>)> {
        let mut found = None;
        let open = self
            .read_frames(|_, payload, _| {
                if let Some(i) = needles.iter().position(|n| find(payload, n).is_some()) {
                    found = Some((i, payload.to_vec()));
                    return false;
                }
                true
            })
            .await?;
        match found {
            Some(found) => Ok(found),
            None if !open => bail!("connection closed while waiting for {:?}", String::from_utf8_lossy(needles[0])),
            None => unreachable!("read_frames returns early only when the callback found it"),
        }
    }

    /// Frees the read buffer of a connection that will only sit idle.
    pub fn shrink(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
    }
}

/// The first position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        match haystack[i..haystack.len() - needle.len() + 1].iter().position(|&b| b == first) {
            Some(offset) => i += offset,
            None => return None,
        }
        if &haystack[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_each_length_form() {
        let check = |bytes: &[u8], expect: Option<(u8, usize, usize)>| {
            assert_eq!(parse_header(bytes).map(|h| (h.opcode, h.header_len, h.payload_len)), expect, "{bytes:?}");
        };
        check(&[0x81, 5], Some((OP_TEXT, 2, 5)));
        check(&[0x82, 126, 0x01, 0x00], Some((OP_BINARY, 4, 256)));
        check(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0], Some((OP_BINARY, 10, 65536)));
        check(&[0x82, 126, 0x01], None);
        check(&[0x81], None);
        // A masked frame (as a client sends) carries four more header bytes.
        let frame = client_frame(OP_TEXT, b"hello", [1, 2, 3, 4]);
        check(&frame, Some((OP_TEXT, 6, 5)));
        let unmasked: Vec<u8> = frame[6..].iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]).collect();
        assert_eq!(unmasked, b"hello");
        assert_eq!(parse_header(&client_frame(OP_TEXT, &[b'x'; 300], [0; 4])).unwrap().payload_len, 300);
    }

    #[test]
    fn find_locates_needles() {
        assert_eq!(find(b"abc\r\n\r\nrest", b"\r\n\r\n"), Some(3));
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"abc", b"x"), None);
    }
}
