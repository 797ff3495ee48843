//! The protobuf wire format read without a schema, into JSON keyed by field numbers, so that
//! two answers of a service nobody described still diff by *where* they differ
//! (`/1/3/2`: field 2 of the message in field 3 of the message in field 1).
//!
//! What each wire type becomes (the wire format does not say which proto type was meant; these
//! are the readings that keep diffs meaningful):
//!
//! | wire type | JSON |
//! |---|---|
//! | varint | the integer (zigzag is not assumed); above `i64::MAX` it is read as a negative `int64`, as `int32`/`int64` negatives are sent |
//! | fixed64 / fixed32 | the `double` / `float` when that is a plausible number (0, or a magnitude in 1e-30..1e30), so that numeric tolerances apply; else the unsigned integer (a `fixed64` id or timestamp reads as a denormal or huge float) |
//! | length-delimited | printable UTF-8 text as a string; else a nested message (object) when the bytes parse as one; else UTF-8 text; else base64 |
//!
//! A field that occurs once is a value; a field that occurs several times (repeated, unpacked)
//! is an array in wire order. Groups (wire types 3 and 4, deprecated) are not read: a message
//! with one is not a message here. Nesting is read at most [`MAX_DEPTH`] deep.

use base64::Engine;
use serde_json::{Map, Value};

/// Deepest nesting of messages read; deeper length-delimited fields are text or base64.
pub const MAX_DEPTH: usize = 32;

/// One field's value as the wire format carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (`fixed64`, `sfixed64`, `double`).
    Fixed64(u64),
    /// Wire type 2 (strings, bytes, messages, packed repeated fields).
    Bytes(&'a [u8]),
    /// Wire type 5 (`fixed32`, `sfixed32`, `float`).
    Fixed32(u32),
}

/// One field of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireField<'a> {
    /// The field number (1 ..= 2^29 - 1).
    pub number: u32,
    /// Its value.
    pub value: WireValue<'a>,
}

/// Why bytes are not a protobuf message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end inside a field.
    #[error("the message ends inside the field at offset {offset}")]
    Truncated {
        /// Where the field starts.
        offset: usize,
    },
    /// A varint longer than 10 bytes, or over 64 bits.
    #[error("invalid varint at offset {offset}")]
    BadVarint {
        /// Where the varint starts.
        offset: usize,
    },
    /// Wire type 3, 4 (groups), 6 or 7.
    #[error("wire type {wire_type} at offset {offset} is not read")]
    BadWireType {
        /// Where the field starts.
        offset: usize,
        /// The wire type.
        wire_type: u8,
    },
    /// Field number 0, or over 2^29 - 1.
    #[error("invalid field number at offset {offset}")]
    BadFieldNumber {
        /// Where the field starts.
        offset: usize,
    },
}

/// Reads a varint at `*at`, advancing it.
fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, WireError> {
    let start = *at;
    let mut value = 0u64;
    for i in 0..10 {
        let b = *bytes
            .get(*at)
            .ok_or(WireError::Truncated { offset: start })?;
        *at += 1;
        if i == 9 && b > 1 {
            return Err(WireError::BadVarint { offset: start });
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::BadVarint { offset: start })
}

fn take<'a>(
    bytes: &'a [u8],
    at: &mut usize,
    n: usize,
    start: usize,
) -> Result<&'a [u8], WireError> {
    let end = at
        .checked_add(n)
        .ok_or(WireError::Truncated { offset: start })?;
    let out = bytes
        .get(*at..end)
        .ok_or(WireError::Truncated { offset: start })?;
    *at = end;
    Ok(out)
}

/// The fields of a message in wire order; every byte must belong to a field.
pub fn parse_fields(bytes: &[u8]) -> Result<Vec<WireField<'_>>, WireError> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let offset = at;
        let key = varint(bytes, &mut at)?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|n| (1..1 << 29).contains(n))
            .ok_or(WireError::BadFieldNumber { offset })?;
        let value = match key & 7 {
            0 => WireValue::Varint(varint(bytes, &mut at)?),
            1 => {
                let b = take(bytes, &mut at, 8, offset)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                WireValue::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = varint(bytes, &mut at)?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated { offset })?;
                WireValue::Bytes(take(bytes, &mut at, len, offset)?)
            }
            5 => {
                let b = take(bytes, &mut at, 4, offset)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                WireValue::Fixed32(u32::from_le_bytes(a))
            }
            other => {
                return Err(WireError::BadWireType {
                    offset,
                    wire_type: other as u8,
                });
            }
        };
        fields.push(WireField { number, value });
    }
    Ok(fields)
}

/// A message as JSON keyed by field numbers (see the module documentation); an error when the
/// bytes are not a message.
pub fn to_json(bytes: &[u8]) -> Result<Value, WireError> {
    let fields = parse_fields(bytes)?;
    Ok(message_json(&fields, 1))
}

/// [`to_json`], or the bytes in base64 when they are not a message: never fails, so that an
/// answer that is not protobuf still compares (exactly).
pub fn to_json_or_base64(bytes: &[u8]) -> Value {
    to_json(bytes).unwrap_or_else(|_| Value::String(base64(bytes)))
}

fn message_json(fields: &[WireField<'_>], depth: usize) -> Value {
    let mut map: Map<String, Value> = Map::new();
    for f in fields {
        let v = value_json(f.value, depth);
        match map.entry(f.number.to_string()) {
            serde_json::map::Entry::Vacant(e) => {
                e.insert(v);
            }
            // Values are never arrays themselves: an array is a field seen more than once.
            serde_json::map::Entry::Occupied(mut e) => match e.get_mut() {
                Value::Array(items) => items.push(v),
                first => {
                    let first = first.take();
                    e.insert(Value::Array(vec![first, v]));
                }
            },
        }
    }
    Value::Object(map)
}

fn value_json(v: WireValue<'_>, depth: usize) -> Value {
    match v {
        WireValue::Varint(n) => match i64::try_from(n) {
            Ok(_) => Value::from(n),
            // Two's complement: how int32 and int64 negatives are sent.
            Err(_) => Value::from(n as i64),
        },
        WireValue::Fixed64(bits) => {
            let f = f64::from_bits(bits);
            if plausible(f) {
                Value::from(f)
            } else {
                Value::from(bits)
            }
        }
        WireValue::Fixed32(bits) => {
            let f = f32::from_bits(bits);
            // The shortest decimal that reads back as this float (0.1f32 is 0.1, not
            // 0.100000001490116…).
            match f.to_string().parse::<f64>() {
                Ok(wide) if plausible(wide) => Value::from(wide),
                _ => Value::from(bits),
            }
        }
        WireValue::Bytes(b) => bytes_json(b, depth),
    }
}

/// A float a real `double`/`float` field would plausibly hold.
fn plausible(f: f64) -> bool {
    f == 0.0 || (f.is_finite() && (1e-30..=1e30).contains(&f.abs()))
}

fn bytes_json(b: &[u8], depth: usize) -> Value {
    let text = std::str::from_utf8(b).ok();
    if let Some(t) = text
        && t.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
    {
        return Value::String(t.to_string());
    }
    if depth < MAX_DEPTH
        && let Ok(fields) = parse_fields(b)
    {
        return message_json(&fields, depth + 1);
    }
    match text {
        Some(t) => Value::String(t.to_string()),
        None => Value::String(base64(b)),
    }
}

fn base64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A varint, written by hand.
    fn v(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn key(number: u32, wire_type: u8) -> Vec<u8> {
        v(u64::from(number) << 3 | u64::from(wire_type))
    }

    fn len_delim(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = key(number, 2);
        out.extend(v(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn the_classic_example_and_every_wire_type() {
        // protobuf's encoding guide: field 1 = 150.
        assert_eq!(to_json(&[0x08, 0x96, 0x01]).unwrap(), json!({"1": 150}));
        let mut m = Vec::new();
        m.extend(key(2, 1));
        m.extend(0.75f64.to_le_bytes());
        m.extend(key(3, 5));
        m.extend(0.1f32.to_le_bytes());
        m.extend(len_delim(4, b"hello"));
        m.extend(key(5, 0));
        m.extend(v(-2i64 as u64)); // an int64 -2: ten bytes
        m.extend(key(6, 1));
        m.extend(1_700_000_000_000_000_000u64.to_le_bytes()); // a fixed64 timestamp
        m.extend(key(7, 5));
        m.extend(7u32.to_le_bytes()); // a fixed32 integer
        m.extend(len_delim(8, &[0xff, 0x00, 0x10]));
        m.extend(len_delim(9, b""));
        assert_eq!(
            to_json(&m).unwrap(),
            json!({"2": 0.75, "3": 0.1, "4": "hello", "5": -2,
                   "6": 1_700_000_000_000_000_000u64, "7": 7, "8": "/wAQ", "9": ""})
        );
    }

    #[test]
    fn nested_messages_and_repeated_fields() {
        // message { 1: "a", 2: { 1: 1, 1: 2 }, 3: 0.5f, 3: 1.5f }
        let mut inner = Vec::new();
        inner.extend(key(1, 0));
        inner.extend(v(1));
        inner.extend(key(1, 0));
        inner.extend(v(2));
        let mut m = len_delim(1, b"a");
        m.extend(len_delim(2, &inner));
        for f in [0.5f32, 1.5] {
            m.extend(key(3, 5));
            m.extend(f.to_le_bytes());
        }
        assert_eq!(
            to_json(&m).unwrap(),
            json!({"1": "a", "2": {"1": [1, 2]}, "3": [0.5, 1.5]})
        );
        // A repeated field of three messages stays one flat array.
        let mut r = Vec::new();
        for i in 1..=3u64 {
            let mut one = key(1, 0);
            one.extend(v(i));
            r.extend(len_delim(7, &one));
        }
        assert_eq!(
            to_json(&r).unwrap(),
            json!({"7": [{"1": 1}, {"1": 2}, {"1": 3}]})
        );
    }

    #[test]
    fn malformed_messages_are_errors_never_panics() {
        assert_eq!(to_json(&[]).unwrap(), json!({}));
        assert_eq!(to_json(&[0x08]), Err(WireError::Truncated { offset: 1 }));
        assert_eq!(
            to_json(&[0x00, 0x01]),
            Err(WireError::BadFieldNumber { offset: 0 })
        );
        assert!(matches!(
            to_json(&[0x0b]),
            Err(WireError::BadWireType { wire_type: 3, .. })
        ));
        assert!(matches!(
            to_json(&[0x0f]),
            Err(WireError::BadWireType { .. })
        ));
        let mut long = vec![0x08];
        long.extend([0xff; 10]);
        long.push(0x01);
        assert!(matches!(to_json(&long), Err(WireError::BadVarint { .. })));
        // Length past the end, and a length that overflows.
        assert!(matches!(
            to_json(&[0x0a, 0x05, b'a']),
            Err(WireError::Truncated { .. })
        ));
        let mut huge = vec![0x0a];
        huge.extend(v(u64::MAX));
        assert!(to_json(&huge).is_err());
        assert_eq!(to_json_or_base64(&[0x0b]), json!("Cw=="));
    }

    #[test]
    fn deep_nesting_stops_at_the_cap() {
        let mut m = key(1, 0);
        m.extend(v(1));
        for _ in 0..(MAX_DEPTH + 5) {
            m = len_delim(1, &m);
        }
        let json = to_json(&m).unwrap();
        let mut depth = 0;
        let mut at = &json;
        while let Some(next) = at.get("1").filter(|n| n.is_object()) {
            depth += 1;
            at = next;
        }
        assert_eq!(depth, MAX_DEPTH - 1, "{json}");
        assert!(at["1"].is_string(), "the rest is base64: {at}");
    }
}
