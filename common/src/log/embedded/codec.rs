//! How the embedded log encodes a record in one redb value.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::log::{Consumed, Record};
use crate::{Error, Result};

/// `timestamp i64 | key len i32 (-1: none) | key | value len i32 (-1: tombstone) | value |
/// header count u32 | (name len u32 | name | value len u32 | value)*`, little-endian.
pub(super) fn encode(r: &Record, ts: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(
        24 + r.key.as_ref().map_or(0, |k| k.len())
            + r.value.as_ref().map_or(0, |v| v.len())
            + r.headers
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>(),
    );
    b.put_i64_le(ts);
    for part in [&r.key, &r.value] {
        match part {
            Some(p) => {
                b.put_i32_le(p.len() as i32);
                b.put_slice(p);
            }
            None => b.put_i32_le(-1),
        }
    }
    b.put_u32_le(r.headers.len() as u32);
    for (k, v) in &r.headers {
        b.put_u32_le(k.len() as u32);
        b.put_slice(k.as_bytes());
        b.put_u32_le(v.len() as u32);
        b.put_slice(v);
    }
    b.freeze()
}

pub(super) fn decode(topic: &str, partition: i32, offset: i64, mut b: &[u8]) -> Result<Consumed> {
    let corrupt = || Error::Storage(format!("corrupt record {topic}/{partition}@{offset}"));
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    if b.len() < 16 {
        return Err(corrupt());
    }
    let timestamp_ms = b.get_i64_le();
    let opt = |b: &mut &[u8]| -> Result<Option<Bytes>> {
        if b.len() < 4 {
            return Err(corrupt());
        }
        let n = b.get_i32_le();
        if n < 0 {
            return Ok(None);
        }
        take(b, n as usize)
            .map(|s| Some(Bytes::copy_from_slice(s)))
            .ok_or_else(corrupt)
    };
    let key = opt(&mut b)?;
    let value = opt(&mut b)?;
    if b.len() < 4 {
        return Err(corrupt());
    }
    let n = b.get_u32_le() as usize;
    // A header takes at least 8 bytes: a corrupt count cannot reserve more than the record holds.
    let mut headers = Vec::with_capacity(n.min(b.len() / 8));
    for _ in 0..n {
        if b.len() < 4 {
            return Err(corrupt());
        }
        let kl = b.get_u32_le() as usize;
        let k = take(&mut b, kl).ok_or_else(corrupt)?;
        if b.len() < 4 {
            return Err(corrupt());
        }
        let vl = b.get_u32_le() as usize;
        let v = take(&mut b, vl).ok_or_else(corrupt)?;
        headers.push((
            String::from_utf8_lossy(k).into_owned(),
            Bytes::copy_from_slice(v),
        ));
    }
    Ok(Consumed {
        topic: topic.to_owned(),
        partition,
        offset,
        timestamp_ms,
        key,
        value,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_encoding() {
        let r = Record::new("17", "{\"t\":1}")
            .header("tt.entry_id", "abc")
            .header("empty", "");
        let c = decode("t", 2, 9, &encode(&r, 42)).unwrap();
        assert_eq!(c.timestamp_ms, 42);
        assert_eq!(c.key.as_deref(), Some(&b"17"[..]));
        assert_eq!(c.value.as_deref(), Some(&b"{\"t\":1}"[..]));
        assert_eq!(c.headers, r.headers);
        let tombstone = Record {
            key: Some(Bytes::from_static(b"k")),
            ..Record::default()
        };
        let c = decode("t", 0, 0, &encode(&tombstone, 1)).unwrap();
        assert_eq!(c.value, None);
        assert!(decode("t", 0, 0, &encode(&r, 1)[..20]).is_err());
    }
}
