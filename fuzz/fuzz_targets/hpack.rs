//! Arbitrary bytes as a sequence of HPACK header blocks decoded with one decoder (its
//! dynamic table carried from block to block). Checks that nothing panics, that a decoded
//! list never exceeds the cap, and that size updates never take the table past the limit.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shadow_core::http::h2::hpack::{DEFAULT_TABLE_SIZE, Decoder, HeaderList};

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let max_list = 64 + usize::from(control) * 16;
    let limit = if control & 1 == 0 { 4096 } else { 256 };
    let mut decoder = Decoder::with_table_limit(limit);
    // Each block: [len] then `len` bytes; after an error the decoder is not used again (its
    // table is out of step, as in the connection parser).
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let block = Bytes::copy_from_slice(&tail[..len]);
        rest = &tail[len..];
        let mut out = Vec::new();
        match decoder.decode(&block, max_list, &mut out) {
            Ok(list) => {
                let size: usize = out.iter().map(|f| f.name.len() + f.value.len() + 32).sum();
                assert!(size <= max_list);
                if list == HeaderList::Complete {
                    assert!(
                        out.len() <= block.len(),
                        "one field needs at least one byte"
                    );
                }
            }
            Err(_) => return,
        }
        // The table starts at the protocol's default; size updates stay within the limit.
        assert!(decoder.table_size() <= limit.max(DEFAULT_TABLE_SIZE));
    }
});
