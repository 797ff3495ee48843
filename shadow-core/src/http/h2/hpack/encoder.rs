//! An HPACK encoder for tests, benchmarks and fuzz seeds (feature `testkit`): every
//! representation the decoder must read, chosen per field by the caller.

use super::DEFAULT_TABLE_SIZE;
use super::huffman;
use super::table::{STATIC, entry_size};
use std::collections::VecDeque;

/// How a literal field is represented (RFC 7541 §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    /// Added to the dynamic table (§6.2.1); an exact match already in a table is sent as an
    /// index (§6.1).
    Incremental,
    /// Not added (§6.2.2).
    Without,
    /// Not added, and never to be (§6.2.3).
    Never,
}

/// How one field is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Literal representation.
    pub indexing: Indexing,
    /// Huffman-code the strings.
    pub huffman: bool,
}

impl Default for Style {
    fn default() -> Self {
        Self {
            indexing: Indexing::Incremental,
            huffman: true,
        }
    }
}

/// The HPACK encoder of one direction, with its own copy of the dynamic table.
#[derive(Debug)]
pub struct Encoder {
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE_SIZE,
        }
    }
}

impl Encoder {
    /// Entries in the dynamic table.
    pub fn table_entries(&self) -> usize {
        self.entries.len()
    }

    /// A dynamic table size update (must start a block).
    pub fn size_update(&mut self, max: usize, out: &mut Vec<u8>) {
        self.max = max;
        self.evict_to(max);
        integer(max as u64, 5, 0x20, out);
    }

    /// Encodes one field.
    pub fn field(&mut self, name: &[u8], value: &[u8], style: Style, out: &mut Vec<u8>) {
        let (exact, name_index) = self.find(name, value);
        if style.indexing == Indexing::Incremental
            && let Some(index) = exact
        {
            integer(index as u64, 7, 0x80, out);
            return;
        }
        let (prefix, flags) = match style.indexing {
            Indexing::Incremental => (6, 0x40),
            Indexing::Without => (4, 0x00),
            Indexing::Never => (4, 0x10),
        };
        match name_index {
            Some(index) => integer(index as u64, prefix, flags, out),
            None => {
                out.push(flags);
                string(name, style.huffman, out);
            }
        }
        string(value, style.huffman, out);
        if style.indexing == Indexing::Incremental {
            let size = entry_size(name, value);
            if size > self.max {
                self.entries.clear();
                self.size = 0;
            } else {
                self.evict_to(self.max - size);
                self.size += size;
                self.entries.push_front((name.to_vec(), value.to_vec()));
            }
        }
    }

    /// Encodes a header list with one style for every field.
    pub fn block(&mut self, fields: &[(&str, &str)], style: Style) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            self.field(name.as_bytes(), value.as_bytes(), style, &mut out);
        }
        out
    }

    /// (index of an exact match, index of a name match), static table first.
    fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let mut name_index = None;
        let statics = STATIC.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        let dynamics = self.entries.iter().map(|(n, v)| (&n[..], &v[..]));
        for (i, (n, v)) in statics.chain(dynamics).enumerate() {
            if n == name {
                if v == value {
                    return (Some(i + 1), Some(i + 1));
                }
                name_index.get_or_insert(i + 1);
            }
        }
        (None, name_index)
    }

    fn evict_to(&mut self, room: usize) {
        while self.size > room {
            match self.entries.pop_back() {
                Some((n, v)) => self.size -= entry_size(&n, &v),
                None => self.size = 0,
            }
        }
    }
}

/// An integer with a `prefix`-bit prefix; `flags` fill the bits above it.
pub fn integer(value: u64, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1u64 << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A string literal, Huffman-coded or raw.
pub fn string(value: &[u8], huffman: bool, out: &mut Vec<u8>) {
    if huffman {
        integer(huffman::encoded_len(value) as u64, 7, 0x80, out);
        huffman::encode(value, out);
    } else {
        integer(value.len() as u64, 7, 0, out);
        out.extend_from_slice(value);
    }
}
