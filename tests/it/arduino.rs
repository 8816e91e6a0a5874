//! The Arduino ThingSpeak library (mathworks/thingspeak-arduino 2.x, which most ThingSpeak
//! devices run: Arduino, ESP8266, ESP32) against `thingtotal up`, byte for byte. It cannot run
//! here, so this test sends the requests it sends and reads the answers as it reads them, from
//! its source (`src/ThingSpeak.h`):
//!
//! - `writeRaw`: `POST /update HTTP/1.1`, the headers of `writeHTTPHeader` (`Host`,
//!   `User-Agent`, and the key as `X-THINGSPEAKAPIKEY`), then `Content-Type` and
//!   `Content-Length`, and a form body ending in `&headers=false`; no `Connection: close`.
//! - `readRaw`: `GET /channels/<id><suffix> HTTP/1.1` with the same headers, the read key in
//!   `X-THINGSPEAKAPIKEY`.
//! - `getHTTPResponse`: waits for 17 bytes, then with the case-sensitive `Stream::find` looks
//!   for `HTTP/1.1`, `parseInt`s the status (anything but 200 is returned as is), finds
//!   `Content-Length:` and `parseInt`s it (not found: -303, `TS_ERR_BAD_RESPONSE`), finds
//!   `\r\n\r\n` (not found: -303), and reads exactly that many bytes as the body.
//! - `finishWrite`: the body's `toInt()` is the entry id; 0 is -401 (`TS_ERR_NOT_INSERTED`).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::up::start_up_env;
use thingtotal_testkit::{stream, Process, ADMIN_TOKEN as ADMIN};

const USER_AGENT: &str = "tslib-arduino/2.0.1 (ESP32)";
/// `TS_ERR_BAD_RESPONSE`.
const BAD_RESPONSE: i64 = -303;
/// `TS_ERR_NOT_INSERTED`.
const NOT_INSERTED: i64 = -401;

/// `Stream::find`: the position after `needle` in `bytes` from `from`, case-sensitive.
fn find(bytes: &[u8], from: usize, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    bytes[from..]
        .windows(n.len())
        .position(|w| w == n)
        .map(|i| from + i + n.len())
}

/// `Stream::parseInt`: skips what is not a digit or `-`, then reads the number.
fn parse_int(bytes: &[u8], from: usize) -> (i64, usize) {
    let mut i = from;
    while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'-') {
        i += 1;
    }
    let start = i;
    i += 1;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let text = std::str::from_utf8(&bytes[start..i.min(bytes.len())]).unwrap_or("");
    (text.parse().unwrap_or(0), i)
}

/// `getHTTPResponse` over the bytes of one answer: the status, and the body if it is 200.
fn http_response(bytes: &[u8]) -> (i64, String) {
    let Some(at) = find(bytes, 0, "HTTP/1.1") else {
        return (BAD_RESPONSE, String::new());
    };
    let (status, at) = parse_int(bytes, at);
    if status != 200 {
        return (status, String::new());
    }
    let Some(at) = find(bytes, at, "Content-Length:") else {
        return (BAD_RESPONSE, String::new());
    };
    let (length, at) = parse_int(bytes, at);
    let Some(body) = find(bytes, at, "\r\n\r\n") else {
        return (BAD_RESPONSE, String::new());
    };
    let end = (body + length as usize).min(bytes.len());
    (
        status,
        String::from_utf8_lossy(&bytes[body..end]).into_owned(),
    )
}

/// Sends `request` on a new connection and returns the bytes of one whole answer: its head,
/// and as many body bytes as its length header (in any case) says, or all until the server
/// closes. The library then closes the connection itself.
async fn exchange(up: &Process, request: &str) -> Vec<u8> {
    let mut conn = TcpStream::connect(up.base.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(head) = find(&bytes, 0, "\r\n\r\n") {
            let text = String::from_utf8_lossy(&bytes[..head]).to_ascii_lowercase();
            if let Some(at) = text.find("content-length:") {
                let (length, _) = parse_int(text.as_bytes(), at + 15);
                if bytes.len() >= head + length as usize {
                    return bytes;
                }
            }
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => return bytes,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("reading the answer: {e}"),
        }
    }
}

/// `writeFields`: the fields as the library formats them, the key in its header.
async fn write_fields(up: &Process, key: &str, fields: &str) -> (i64, Vec<u8>) {
    let body = format!("{fields}&headers=false");
    let request = format!(
        "POST /update HTTP/1.1\r\nHost: api.thingspeak.com\r\nUser-Agent: {USER_AGENT}\r\n\
         X-THINGSPEAKAPIKEY: {key}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let bytes = exchange(up, &request).await;
    let (status, body) = http_response(&bytes);
    if status != 200 {
        return (status, bytes);
    }
    match body.trim().parse::<i64>().unwrap_or(0) {
        0 => (NOT_INSERTED, bytes),
        _ => (200, bytes),
    }
}

/// `readRaw`: the status and the body.
async fn read_raw(up: &Process, id: u64, suffix: &str, key: &str) -> (i64, String, Vec<u8>) {
    let request = format!(
        "GET /channels/{id}{suffix} HTTP/1.1\r\nHost: api.thingspeak.com\r\n\
         User-Agent: {USER_AGENT}\r\nX-THINGSPEAKAPIKEY: {key}\r\n\r\n"
    );
    let bytes = exchange(up, &request).await;
    let (status, body) = http_response(&bytes);
    (status, body, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arduino_library_writes_and_reads_a_private_channel() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up_env(dir.path(), &["--admin-token", ADMIN], &[]).await;
    let (id, key, read_key) = stream(
        &up,
        json!({"name": "arduino", "fields": ["t", "h"],
               "schema": {"type": "object", "properties": {
                   "t": {"type": "number"}, "h": {"type": "integer"}}}}),
    )
    .await;

    // `convertFloatToChar` writes five decimals.
    let (status, bytes) = write_fields(&up, &key, "field1=23.50000&field2=41").await;
    let answer = String::from_utf8_lossy(&bytes);
    assert_eq!(
        status, 200,
        "the library reads this answer as {status}:\n{answer}"
    );
    assert!(answer.contains("\r\nContent-Type: "), "{answer}");
    assert!(answer.contains("\r\nDate: "), "{answer}");
    assert!(!answer.contains("Transfer-Encoding"), "{answer}");

    // A wrong key is not a bad response: the library reads ThingSpeak's `0` as not inserted.
    let (status, bytes) = write_fields(&up, "WRONGKEY", "field1=1").await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&bytes));

    // `readFloatField`, with the read key in the library's header, once the entry is stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let (status, body, bytes) = read_raw(&up, id, "/fields/1/last", &read_key).await;
        let answer = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(
            status, 200,
            "the library reads this answer as {status}:\n{answer}"
        );
        if !body.is_empty() && body != "-1" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the entry was never read back: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(value.parse::<f64>().unwrap(), 23.5);

    // `readMultipleFields` finds each value as `"fieldN":"…"` in the JSON.
    let (status, body, bytes) = read_raw(&up, id, "/feeds/last.json", &read_key).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert!(body.contains("\"field1\":\"23.5\""), "{body}");
    assert!(body.contains("\"field2\":\"41\""), "{body}");

    // The channel is private: the write key reads it (as on ThingSpeak), no key does not.
    let (status, _, _) = read_raw(&up, id, "/fields/1/last", &key).await;
    assert_eq!(status, 200);
    let (status, _, _) = read_raw(&up, id, "/fields/1/last", "WRONGKEY").await;
    assert_ne!(status, 200);
}
