//! HPACK (RFC 7541) decoding, one [`Decoder`] per direction of a connection: integers,
//! strings (raw or Huffman-coded), the static table and the dynamic table with its size
//! updates.
//!
//! Written here rather than taken from a crate: `loona-hpack` (the maintained fork of `hpack`)
//! rebuilds a hash map of the whole Huffman code for every coded string, accepts size updates
//! anywhere in a block and asserts (panics) on a table size above the allowed one;
//! `httlib-hpack` indexes past the end of a block cut after a literal's name and drains its
//! input per field. Here the decoder keeps decoding a block whose header list is over the cap
//! (so the dynamic table stays in step) and never panics on any input (fuzzed: `hpack`).

mod huffman;
mod table;

#[cfg(any(test, feature = "testkit"))]
pub mod encoder;

use bytes::Bytes;
pub use huffman::HuffmanError;
use table::DynamicTable;
pub(crate) use table::entry_size;

/// The dynamic table size both ends start with (SETTINGS_HEADER_TABLE_SIZE's default).
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// Largest dynamic table a peer may make us keep, whatever its SETTINGS allow.
pub const MAX_TABLE_SIZE: usize = 1 << 20;

/// One decoded header field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name as sent (lower case in HTTP/2).
    pub name: Bytes,
    /// The value.
    pub value: Bytes,
}

/// Why a header block cannot be decoded. The decoder's dynamic table is then out of step
/// with the encoder's: every later block of that direction is undecodable too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The block ends inside a representation.
    #[error("header block ends inside a field")]
    Truncated,
    /// An integer longer than 2^32.
    #[error("integer overflow")]
    IntegerOverflow,
    /// An index of no entry (0, or past the dynamic table's end).
    #[error("index {0} names no table entry")]
    BadIndex(u64),
    /// A Huffman-coded string that is not valid.
    #[error("Huffman-coded string: {0}")]
    Huffman(#[from] HuffmanError),
    /// A dynamic table size update above what the decoding side allowed.
    #[error("dynamic table size update to {size} above the allowed {allowed}")]
    TableSizeAboveLimit {
        /// The size asked for.
        size: u64,
        /// The largest size allowed.
        allowed: usize,
    },
    /// A dynamic table size update after a field of the block (RFC 7541 §4.2: only at the
    /// start).
    #[error("dynamic table size update after a header field")]
    LateSizeUpdate,
}

/// Whether a decoded header list was kept whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderList {
    /// Every field is in the output.
    Complete,
    /// The list was larger than the cap: the fields past it were decoded (for the dynamic
    /// table) but dropped.
    TooLarge,
}

/// The HPACK decoder of one direction.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// Largest size a size update may set: the decoding side's SETTINGS_HEADER_TABLE_SIZE
    /// (the largest seen), at most [`MAX_TABLE_SIZE`].
    allowed: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at the start of a connection (table size 4096).
    pub fn new() -> Self {
        Self {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE),
            allowed: DEFAULT_TABLE_SIZE,
        }
    }

    /// A decoder that accepts table size updates up to `limit` (at most [`MAX_TABLE_SIZE`])
    /// whatever SETTINGS say: a passive observer's, which cannot tell which SETTINGS the
    /// encoder had seen.
    pub fn with_table_limit(limit: usize) -> Self {
        Self {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE),
            allowed: limit.min(MAX_TABLE_SIZE),
        }
    }

    /// The decoding side announced SETTINGS_HEADER_TABLE_SIZE = `size`: the encoder may size
    /// its table up to it. A passive observer cannot tell exactly when the encoder applies a
    /// change, so the largest size announced stays allowed (capped at [`MAX_TABLE_SIZE`]).
    pub fn allow_table_size(&mut self, size: u32) {
        let size = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(MAX_TABLE_SIZE);
        self.allowed = self.allowed.max(size);
    }

    /// The dynamic table's current maximum size.
    pub fn table_size(&self) -> usize {
        self.table.max()
    }

    /// Entries in the dynamic table.
    pub fn table_entries(&self) -> usize {
        self.table.len()
    }

    /// Decodes one complete header block (HEADERS or PUSH_PROMISE fragment and its
    /// CONTINUATIONs), appending the fields to `out` while the list's size (RFC 9113
    /// §6.5.2: name + value + 32 per field) stays within `max_list`.
    pub fn decode(
        &mut self,
        block: &Bytes,
        max_list: usize,
        out: &mut Vec<Field>,
    ) -> Result<HeaderList, HpackError> {
        let mut pos = 0;
        let mut list_size = 0usize;
        let mut list = HeaderList::Complete;
        let mut fields_seen = false;
        while pos < block.len() {
            let first = block[pos];
            let (name, value, index) = if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let (index, n) = integer(&block[pos..], 7)?;
                pos += n;
                let (name, value) = self.entry(index)?;
                (name, value, false)
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing (§6.2.1).
                let (name, value, n) = self.literal(block, pos, 6)?;
                pos = n;
                (name, value, true)
            } else if first & 0x20 != 0 {
                // Dynamic table size update (§6.3).
                if fields_seen {
                    return Err(HpackError::LateSizeUpdate);
                }
                let (size, n) = integer(&block[pos..], 5)?;
                pos += n;
                if size > self.allowed as u64 {
                    return Err(HpackError::TableSizeAboveLimit {
                        size,
                        allowed: self.allowed,
                    });
                }
                self.table.set_max(size as usize);
                continue;
            } else {
                // Literal without indexing or never indexed (§6.2.2, §6.2.3).
                let (name, value, n) = self.literal(block, pos, 4)?;
                pos = n;
                (name, value, false)
            };
            fields_seen = true;
            if index {
                self.table.insert(name.clone(), value.clone());
            }
            list_size = list_size.saturating_add(entry_size(&name, &value));
            if list_size > max_list {
                list = HeaderList::TooLarge;
            } else {
                out.push(Field { name, value });
            }
        }
        Ok(list)
    }

    fn entry(&self, index: u64) -> Result<(Bytes, Bytes), HpackError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.table.get(i))
            .ok_or(HpackError::BadIndex(index))
    }

    /// A literal field at `pos` whose name index has a `prefix`-bit prefix; returns the name,
    /// the value and the position after it.
    fn literal(
        &self,
        block: &Bytes,
        pos: usize,
        prefix: u8,
    ) -> Result<(Bytes, Bytes, usize), HpackError> {
        let (index, n) = integer(&block[pos..], prefix)?;
        let mut pos = pos + n;
        let name = if index == 0 {
            let (name, next) = string(block, pos)?;
            pos = next;
            name
        } else {
            self.entry(index)?.0
        };
        let (value, next) = string(block, pos)?;
        Ok((name, value, next))
    }
}

/// An integer with an `prefix`-bit prefix at the start of `buf` (RFC 7541 §5.1); returns it
/// and its length. Values above 2^32 are refused.
fn integer(buf: &[u8], prefix: u8) -> Result<(u64, usize), HpackError> {
    let max_prefix = (1u64 << prefix) - 1;
    let Some(&first) = buf.first() else {
        return Err(HpackError::Truncated);
    };
    let mut value = u64::from(first) & max_prefix;
    if value < max_prefix {
        return Ok((value, 1));
    }
    let mut shift = 0;
    for (i, &byte) in buf.iter().enumerate().skip(1) {
        value += u64::from(byte & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
    Err(HpackError::Truncated)
}

/// A string literal at `pos` (RFC 7541 §5.2); returns it (a slice of `block` when raw) and
/// the position after it.
fn string(block: &Bytes, pos: usize) -> Result<(Bytes, usize), HpackError> {
    let rest = block.get(pos..).ok_or(HpackError::Truncated)?;
    let huffman = rest.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let (len, n) = integer(rest, 7)?;
    let start = pos + n;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .filter(|&end| end <= block.len())
        .ok_or(HpackError::Truncated)?;
    if huffman {
        let mut out = Vec::new();
        huffman::decode(&block[start..end], &mut out)?;
        Ok((Bytes::from(out), end))
    } else {
        Ok((block.slice(start..end), end))
    }
}

#[cfg(test)]
mod tests;
