//! Raw WebSocket frames over plain TCP: the close codes RFC 6455 asks for when a client breaks
//! the protocol (issue 13.5: all of these used to close with 1000).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// One frame as a client would send it (masked unless `masked` is false).
fn frame(first_byte: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first_byte];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const PING: u8 = 0x9;

/// Opens `path` with a raw upgrade request and reads the 101 answer.
async fn raw_socket(relay: &Relay, path: &str, headers: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(relay.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n",
        relay.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // The answer ends with an empty line; read it byte by byte so no frame is swallowed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "the relay answered: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// Reads server frames until a close frame; returns its code (1005 when it has none).
async fn read_close_code(tcp: &mut TcpStream) -> u16 {
    read_until_close(tcp).await.0
}

/// Reads server frames until a close frame; returns its code and the opcodes before it.
async fn read_until_close(tcp: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut opcodes = Vec::new();
    let read = async {
        loop {
            let mut head = [0u8; 2];
            tcp.read_exact(&mut head).await.expect("a close frame before the end");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    tcp.read_exact(&mut b).await.unwrap();
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    tcp.read_exact(&mut b).await.unwrap();
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            tcp.read_exact(&mut payload).await.unwrap();
            if head[0] & 0x0f == 0x8 {
                return if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 };
            }
            opcodes.push(head[0] & 0x0f);
        }
    };
    let code = tokio::time::timeout(DEADLINE, read).await.expect("the close frame arrives in time");
    (code, opcodes)
}

#[tokio::test]
async fn protocol_errors_close_with_1002_and_bad_utf8_with_1007() {
    let relay = Relay::start().await;
    let subscribe = br#"{"type":"subscribe","topics":["agents"]}"#;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid UTF-8 in a text frame", frame(FIN | TEXT, &[b'"', 0xff, 0xfe, b'"'], true), 1007),
        ("RSV1 set without an extension", frame(FIN | 0x40 | TEXT, subscribe, true), 1002),
        ("RSV3 set", frame(FIN | 0x10 | TEXT, subscribe, true), 1002),
        ("unknown data opcode 0x3", frame(FIN | 0x3, b"x", true), 1002),
        ("unknown control opcode 0xB", frame(FIN | 0xB, b"", true), 1002),
        ("an unmasked client frame", frame(FIN | TEXT, subscribe, false), 1002),
        ("a ping of 126 bytes", frame(FIN | PING, &[b'p'; 126], true), 1002),
        ("a fragmented ping", frame(PING, b"ping", true), 1002),
        ("a continuation with nothing to continue", frame(FIN | CONTINUATION, b"x", true), 1002),
        (
            "a new text frame inside a fragmented one",
            [frame(TEXT, b"{\"type\":", true), frame(FIN | TEXT, b"x", true)].concat(),
            1002,
        ),
    ];
    for (what, bytes, want) in cases {
        for (path, headers) in
            [("/api/realtime", String::new()), ("/api/ws", format!("Authorization: Bearer {}\r\n", relay.keys.agent))]
        {
            let mut tcp = raw_socket(&relay, path, &headers).await;
            tcp.write_all(&bytes).await.unwrap();
            assert_eq!(read_close_code(&mut tcp).await, want, "{what} on {path}");
        }
    }
    // A well-formed frame still works on a raw socket (the harness itself is sound).
    let mut tcp = raw_socket(&relay, "/api/realtime", "").await;
    tcp.write_all(&frame(FIN | TEXT, br#"{"type":"ping"}"#, true)).await.unwrap();
    tcp.write_all(&frame(FIN | 0x8, &1000u16.to_be_bytes(), true)).await.unwrap();
    assert_eq!(read_close_code(&mut tcp).await, 1000);
}

/// Issue 13.7: viewers got no heartbeat, so a half-open viewer socket stayed for ever.
#[tokio::test]
async fn viewers_are_pinged_and_a_silent_one_is_closed() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let relay = Relay::start_with(|s| {
        s.viewer_ping_ms = 50;
        s.viewer_timeout_ms = 1000;
    })
    .await;
    // A live viewer answers pings (its client does, as it reads) and outlasts the timeout:
    // 30 pings take 1.5 s.
    let mut live = relay.viewer(None).await;
    let mut pings = 0;
    while pings < 30 {
        match tokio::time::timeout(DEADLINE, live.next()).await.expect("a ping in time") {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(frame))) => panic!("a live viewer was closed: {frame:?}"),
            Some(Ok(_)) => {}
            other => panic!("the live viewer's socket ended: {other:?}"),
        }
    }
    send(&mut live, &flightdeck_protocol::ClientMessage::Ping {}).await;
    let answer = recv_server(&mut live).await;
    assert!(matches!(answer, flightdeck_protocol::ServerMessage::Pong {}), "{answer:?}");
    // A silent one reads (so it sees the pings) but never answers: closed with 1000.
    let mut silent = raw_socket(&relay, "/api/realtime", "").await;
    let (code, opcodes) = read_until_close(&mut silent).await;
    assert_eq!(code, 1000);
    assert!(opcodes.iter().filter(|op| **op == PING).count() >= 2, "{opcodes:?}");
}
