//! `GET /ws`: a WebSocket echo (RFC 6455), so the proxy's upgrade path (`101 Switching
//! Protocols`, then a two-way relay) has a real backend to exercise: `loadtest/ soak` keeps
//! sessions open on it through reloads, kills and restarts.
//!
//! Flow: the handshake is checked (`Upgrade: websocket`, `Connection: upgrade`, version 13, a
//! key) and answered `101` with `Sec-WebSocket-Accept`; hyper hands over the connection once that
//! response is written, and [`echo_frames`] sends every data frame back unmasked, as it came
//! (text, binary and continuation frames alike, so fragmented messages come back fragmented),
//! answers pings with pongs and a close with a close. Hand-written rather than axum's `ws`
//! feature: an echo needs only the frame header, and this keeps tokio-tungstenite out of the
//! build. The session is tied to the process: a drain does not wait for it, and a killed or
//! stopped instance ends its sessions (what the soak counts as an injected failure).

use std::io;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

/// Largest frame payload accepted: 1 MiB (a bigger one is answered with close code 1009).
const MAX_PAYLOAD: u64 = 1 << 20;

/// RFC 6455 §1.3: appended to the client's key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;
const FIN: u8 = 0x80;

/// Close codes (RFC 6455 §7.4.1).
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;

/// `GET /ws`: 101 and an echo session, or 400 naming what the handshake lacks.
pub async fn upgrade(request: Request) -> Response {
    let key = match handshake_key(request.headers()) {
        Ok(key) => key,
        Err(reason) => return (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response(),
    };
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                if let Err(error) = echo_frames(TokioIo::new(upgraded)).await {
                    debug!("websocket session ended: {error}");
                }
            }
            Err(error) => debug!("websocket upgrade failed: {error}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(SEC_WEBSOCKET_ACCEPT, accept_key(&key))
        .body(Body::empty())
        .expect("static headers are valid")
}

/// The client's `Sec-WebSocket-Key`, or why the request is no WebSocket handshake.
fn handshake_key(headers: &HeaderMap) -> Result<String, &'static str> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(UPGRADE, "websocket") {
        return Err("a WebSocket handshake needs Upgrade: websocket");
    }
    if !has_token(CONNECTION, "upgrade") {
        return Err("a WebSocket handshake needs Connection: upgrade");
    }
    if headers
        .get("sec-websocket-version")
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("only Sec-WebSocket-Version: 13 is supported");
    }
    headers
        .get(SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty())
        .ok_or("a WebSocket handshake needs Sec-WebSocket-Key")
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)).
fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    base64(digest.as_ref())
}

/// Standard base64 with padding (only the 20-byte digest above needs it).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Echoes frames until the client closes (or the connection ends).
async fn echo_frames<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        match stream.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let (first, opcode) = (head[0], head[0] & 0x0f);
        if head[1] & 0x80 == 0 {
            // A client's frames must be masked (RFC 6455 §5.1).
            return close(&mut stream, CLOSE_PROTOCOL_ERROR).await;
        }
        let len = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await?),
            127 => stream.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_PAYLOAD {
            return close(&mut stream, CLOSE_TOO_BIG).await;
        }
        let mut mask = [0u8; 4];
        stream.read_exact(&mut mask).await?;
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await?;
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        match opcode {
            OPCODE_CLOSE => {
                stream
                    .write_all(&frame(FIN | OPCODE_CLOSE, &payload))
                    .await?;
                return stream.shutdown().await;
            }
            OPCODE_PING => {
                stream
                    .write_all(&frame(FIN | OPCODE_PONG, &payload))
                    .await?;
            }
            OPCODE_PONG => {}
            // Data and continuation frames go back with their FIN bit and opcode.
            _ => stream.write_all(&frame(first & 0x8f, &payload)).await?,
        }
    }
}

async fn close<S: AsyncWrite + Unpin>(stream: &mut S, code: u16) -> io::Result<()> {
    stream
        .write_all(&frame(FIN | OPCODE_CLOSE, &code.to_be_bytes()))
        .await?;
    stream.shutdown().await
}

/// An unmasked (server) frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(first);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = frame(first, payload);
        let header_len = out.len() - payload.len();
        out[1] |= 0x80;
        let masked: Vec<u8> = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        out.truncate(header_len);
        out.extend_from_slice(&mask);
        out.extend_from_slice(&masked);
        out
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_pads_short_input() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn frame_lengths_use_the_three_encodings() {
        assert_eq!(frame(0x81, &[0; 125])[..2], [0x81, 125]);
        assert_eq!(frame(0x82, &[0; 126])[..4], [0x82, 126, 0, 126]);
        assert_eq!(
            frame(0x82, &[0; 70_000])[..10],
            [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
    }

    #[test]
    fn handshake_needs_upgrade_connection_version_and_key() {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, "WebSocket".parse().unwrap());
        headers.insert(CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        headers.insert("sec-websocket-version", "13".parse().unwrap());
        assert!(handshake_key(&headers).is_err());
        headers.insert(
            SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        assert_eq!(handshake_key(&headers).unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
        headers.insert("sec-websocket-version", "8".parse().unwrap());
        assert!(handshake_key(&headers).is_err());
    }

    #[tokio::test]
    async fn echoes_data_answers_ping_and_close() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let session = tokio::spawn(echo_frames(server));
        let big = vec![7u8; 70_000];
        let mut sent = client_frame(0x81, b"hello");
        sent.extend(client_frame(0x02, b"part")); // binary, not final
        sent.extend(client_frame(0x80, b"end")); // continuation, final
        sent.extend(client_frame(0x89, b"p"));
        sent.extend(client_frame(0x82, &big));
        sent.extend(client_frame(0x88, &1000u16.to_be_bytes()));
        client.write_all(&sent).await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        session.await.unwrap().unwrap();
        let mut expected = frame(0x81, b"hello");
        expected.extend(frame(0x02, b"part"));
        expected.extend(frame(0x80, b"end"));
        expected.extend(frame(0x8A, b"p"));
        expected.extend(frame(0x82, &big));
        expected.extend(frame(0x88, &1000u16.to_be_bytes()));
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn refuses_unmasked_and_oversized_frames() {
        for sent in [frame(0x81, b"x"), {
            let mut f = vec![0x82, 0xff];
            f.extend_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
            f
        }] {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let session = tokio::spawn(echo_frames(server));
            client.write_all(&sent).await.unwrap();
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.unwrap();
            session.await.unwrap().unwrap();
            assert_eq!(received[0], 0x88, "a close frame");
        }
    }
}
