//! The ground-truth join: comparisons wait here, keyed by request id, until their label arrives
//! or their time is up.
//!
//! Bounded three ways, all configurable: the number of waiting items, their total size in bytes
//! (the caller estimates each item's size; the id and bookkeeping are added), and how long an
//! item may wait. When a new item would break a size cap, the oldest items are evicted to make
//! room; evicted and expired items are handed back so the caller counts them as unlabeled.
//! Labels for ids that are not waiting are counted, never kept: a bounded memory of recently
//! resolved ids tells a late label (expired / evicted) or a second label (already joined) from
//! an unknown id.
//!
//! Pure: the caller passes the current time as a [`Duration`] since any fixed origin (e.g. a
//! monotonic clock's start; it must not go backwards) and drives [`LabelJoin::expire`].
//!
//! Memory: at most `max_bytes` for waiting items, plus `remembered_ids` ids of at most
//! [`MAX_ID_BYTES`] each (stored twice) for the memory of resolved ids.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// Longest request id accepted, in bytes; longer ids are refused (counted).
pub const MAX_ID_BYTES: usize = 256;

/// Bytes charged per waiting item on top of the caller's estimate and the id (two map entries).
pub const ENTRY_OVERHEAD_BYTES: usize = 96;

/// The join's caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinLimits {
    /// Most items waiting at once.
    pub max_items: usize,
    /// Most bytes waiting at once (estimates plus ids and overhead).
    pub max_bytes: usize,
    /// Longest an item waits for its label.
    pub max_wait: Duration,
    /// How many recently resolved ids are remembered to classify stray labels.
    pub remembered_ids: usize,
}

impl Default for JoinLimits {
    fn default() -> Self {
        Self {
            max_items: 100_000,
            max_bytes: 64 << 20,
            max_wait: Duration::from_secs(3600),
            remembered_ids: 100_000,
        }
    }
}

/// What happened to every item and label, cumulatively.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCounters {
    /// Items accepted to wait.
    pub inserted: u64,
    /// Items joined with their label.
    pub joined: u64,
    /// Items whose wait ran out.
    pub expired: u64,
    /// Items evicted because `max_items` was reached.
    pub evicted_count: u64,
    /// Items evicted because `max_bytes` was reached.
    pub evicted_bytes: u64,
    /// Items refused because alone they exceed `max_bytes`.
    pub oversized: u64,
    /// Items refused because their id is empty or longer than [`MAX_ID_BYTES`].
    pub bad_ids: u64,
    /// Waiting items displaced by a newer item with the same id.
    pub duplicate_ids: u64,
    /// Labels for ids never seen (or long forgotten).
    pub unknown_labels: u64,
    /// Labels that came after their item expired or was evicted.
    pub late_labels: u64,
    /// Labels for ids already joined.
    pub duplicate_labels: u64,
}

/// The answer to [`LabelJoin::label`].
#[derive(Debug, PartialEq)]
pub enum LabelOutcome<T, L> {
    /// The item was waiting: here it is with its label and how long it waited.
    Joined {
        /// The waiting item.
        item: T,
        /// Its label.
        label: L,
        /// Time between insert and label.
        waited: Duration,
    },
    /// No such id is waiting or remembered.
    Unknown,
    /// The item had expired or been evicted (it is counted as unlabeled).
    Late,
    /// The id was already joined with an earlier label.
    Duplicate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Joined,
    Dropped,
}

#[derive(Debug)]
struct Waiting<T> {
    seq: u64,
    item: T,
    bytes: usize,
    inserted: Duration,
}

/// Items waiting for their label, bounded in count, bytes and time.
#[derive(Debug)]
pub struct LabelJoin<T> {
    limits: JoinLimits,
    waiting: HashMap<String, Waiting<T>>,
    /// Insertion order: sequence number → id. Only live entries, so its size is bounded too.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    bytes: usize,
    /// Recently resolved ids and how they ended, oldest first.
    resolved: VecDeque<String>,
    fates: HashMap<String, Fate>,
    counters: JoinCounters,
}

impl<T> LabelJoin<T> {
    /// An empty join with these caps.
    pub fn new(limits: JoinLimits) -> Self {
        Self {
            limits,
            waiting: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            resolved: VecDeque::new(),
            fates: HashMap::new(),
            counters: JoinCounters::default(),
        }
    }

    /// An empty join that continues counting from `counters` (a resumed state: nothing waits,
    /// what happened before is kept).
    pub fn with_counters(limits: JoinLimits, counters: JoinCounters) -> Self {
        Self {
            counters,
            ..Self::new(limits)
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Bytes charged for the waiting items.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The cumulative counters.
    pub fn counters(&self) -> JoinCounters {
        self.counters
    }

    /// Lets `item` (of about `size_estimate` bytes) wait for the label of `id`. Returns the
    /// items that leave unlabeled because of it: older items evicted to make room, an older
    /// item with the same id, or `item` itself if its id is unusable or it alone is too big.
    pub fn insert(&mut self, id: &str, item: T, size_estimate: usize, now: Duration) -> Vec<T> {
        let mut unlabeled = Vec::new();
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            self.counters.bad_ids += 1;
            unlabeled.push(item);
            return unlabeled;
        }
        let bytes = size_estimate
            .saturating_add(2 * id.len())
            .saturating_add(ENTRY_OVERHEAD_BYTES);
        if bytes > self.limits.max_bytes || self.limits.max_items == 0 {
            self.counters.oversized += 1;
            unlabeled.push(item);
            return unlabeled;
        }
        if let Some(old) = self.remove(id) {
            self.counters.duplicate_ids += 1;
            self.remember(id, Fate::Dropped);
            unlabeled.push(old.item);
        }
        while self.waiting.len() >= self.limits.max_items {
            let Some(old) = self.pop_oldest() else { break };
            self.counters.evicted_count += 1;
            unlabeled.push(old);
        }
        while self.bytes.saturating_add(bytes) > self.limits.max_bytes {
            let Some(old) = self.pop_oldest() else { break };
            self.counters.evicted_bytes += 1;
            unlabeled.push(old);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, id.to_owned());
        self.waiting.insert(
            id.to_owned(),
            Waiting {
                seq,
                item,
                bytes,
                inserted: now,
            },
        );
        self.bytes += bytes;
        self.counters.inserted += 1;
        unlabeled
    }

    /// The label for `id` arrived at `now`.
    pub fn label<L>(&mut self, id: &str, label: L, now: Duration) -> LabelOutcome<T, L> {
        if let Some(w) = self.waiting.get(id) {
            if now.saturating_sub(w.inserted) > self.limits.max_wait {
                // Its time ran out before `expire` came round: it stays for `expire` to hand
                // back, the label is late.
                self.counters.late_labels += 1;
                return LabelOutcome::Late;
            }
            if let Some(w) = self.remove(id) {
                self.counters.joined += 1;
                self.remember(id, Fate::Joined);
                return LabelOutcome::Joined {
                    item: w.item,
                    label,
                    waited: now.saturating_sub(w.inserted),
                };
            }
        }
        match self.fates.get(id) {
            Some(Fate::Joined) => {
                self.counters.duplicate_labels += 1;
                LabelOutcome::Duplicate
            }
            Some(Fate::Dropped) => {
                self.counters.late_labels += 1;
                LabelOutcome::Late
            }
            None => {
                self.counters.unknown_labels += 1;
                LabelOutcome::Unknown
            }
        }
    }

    /// Hands back, oldest first, the items that have waited longer than `max_wait` at `now`.
    pub fn expire(&mut self, now: Duration) -> Vec<T> {
        let mut expired = Vec::new();
        while let Some((_, id)) = self.order.first_key_value() {
            let due = self
                .waiting
                .get(id)
                .is_none_or(|w| now.saturating_sub(w.inserted) > self.limits.max_wait);
            if !due {
                break;
            }
            let Some(item) = self.pop_oldest() else { break };
            self.counters.expired += 1;
            expired.push(item);
        }
        expired
    }

    /// Hands back every waiting item, oldest first (e.g. at shutdown), counted as expired.
    pub fn drain(&mut self) -> Vec<T> {
        let mut all = Vec::with_capacity(self.waiting.len());
        while let Some(item) = self.pop_oldest() {
            self.counters.expired += 1;
            all.push(item);
        }
        all
    }

    fn pop_oldest(&mut self) -> Option<T> {
        while let Some((_, id)) = self.order.pop_first() {
            if let Some(w) = self.waiting.remove(&id) {
                self.bytes = self.bytes.saturating_sub(w.bytes);
                self.remember(&id, Fate::Dropped);
                return Some(w.item);
            }
        }
        None
    }

    fn remove(&mut self, id: &str) -> Option<Waiting<T>> {
        let w = self.waiting.remove(id)?;
        self.order.remove(&w.seq);
        self.bytes = self.bytes.saturating_sub(w.bytes);
        Some(w)
    }

    fn remember(&mut self, id: &str, fate: Fate) {
        if self.limits.remembered_ids == 0 {
            return;
        }
        if self.fates.insert(id.to_owned(), fate).is_none() {
            self.resolved.push_back(id.to_owned());
        }
        while self.resolved.len() > self.limits.remembered_ids {
            if let Some(old) = self.resolved.pop_front() {
                self.fates.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn limits(max_items: usize, max_bytes: usize, max_wait_s: u64) -> JoinLimits {
        JoinLimits {
            max_items,
            max_bytes,
            max_wait: S(max_wait_s),
            remembered_ids: 1000,
        }
    }

    /// Every accepted item is joined, dropped (expired, evicted, displaced) or still waiting.
    fn balanced<T>(j: &LabelJoin<T>) -> bool {
        let c = j.counters();
        c.inserted
            == c.joined
                + c.expired
                + c.evicted_count
                + c.evicted_bytes
                + c.duplicate_ids
                + j.len() as u64
    }

    #[test]
    fn late_label_is_joined_within_the_window() {
        let mut j = LabelJoin::new(limits(10, 1 << 20, 60));
        assert!(j.insert("r1", "cmp1", 100, S(0)).is_empty());
        // 100 (estimate) + 2·2 (id twice) + 96 (overhead) = 200 bytes.
        assert_eq!(j.bytes(), 200);
        match j.label("r1", "cat", S(45)) {
            LabelOutcome::Joined {
                item,
                label,
                waited,
            } => {
                assert_eq!((item, label, waited), ("cmp1", "cat", S(45)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((j.len(), j.bytes()), (0, 0));
        assert_eq!(j.counters().joined, 1);
        // The same label again: duplicate; a label for a never-seen id: unknown.
        assert_eq!(j.label("r1", "cat", S(46)), LabelOutcome::Duplicate);
        assert_eq!(j.label("zz", "cat", S(46)), LabelOutcome::Unknown);
        let c = j.counters();
        assert_eq!((c.duplicate_labels, c.unknown_labels), (1, 1));
        assert!(balanced(&j));
    }

    #[test]
    fn expiry_hands_items_back_and_later_labels_are_late() {
        let mut j = LabelJoin::new(limits(10, 1 << 20, 60));
        j.insert("a", 1, 0, S(0));
        j.insert("b", 2, 0, S(30));
        j.insert("c", 3, 0, S(50));
        // At 60 s nothing has waited *more* than 60 s.
        assert!(j.expire(S(60)).is_empty());
        assert_eq!(j.expire(S(91)), vec![1, 2]);
        assert_eq!(j.len(), 1);
        assert_eq!(j.label("a", (), S(92)), LabelOutcome::Late);
        // "c" is past its time but expire has not run yet: the label is late, and "c" still
        // leaves through expire.
        assert_eq!(j.label("c", (), S(111)), LabelOutcome::Late);
        assert_eq!(j.expire(S(111)), vec![3]);
        let c = j.counters();
        assert_eq!((c.expired, c.late_labels, c.joined), (3, 2, 0));
        assert!(balanced(&j));
    }

    #[test]
    fn count_cap_evicts_the_oldest() {
        let mut j = LabelJoin::new(limits(2, 1 << 20, 60));
        j.insert("a", 'a', 0, S(0));
        j.insert("b", 'b', 0, S(1));
        assert_eq!(j.insert("c", 'c', 0, S(2)), vec!['a']);
        assert_eq!(j.counters().evicted_count, 1);
        assert_eq!(j.label("a", (), S(3)), LabelOutcome::Late);
        assert!(matches!(
            j.label("b", (), S(3)),
            LabelOutcome::Joined { item: 'b', .. }
        ));
        assert!(balanced(&j));
    }

    #[test]
    fn byte_cap_evicts_the_oldest_and_refuses_oversized() {
        // Each item: 100 + 2·1 + 96 = 198 bytes; 500 bytes hold two.
        let mut j = LabelJoin::new(limits(100, 500, 60));
        j.insert("a", 'a', 100, S(0));
        j.insert("b", 'b', 100, S(0));
        assert_eq!(j.bytes(), 396);
        assert_eq!(j.insert("c", 'c', 100, S(0)), vec!['a']);
        assert_eq!(j.counters().evicted_bytes, 1);
        // 1000 bytes alone exceed the cap: refused, nothing evicted.
        assert_eq!(j.insert("d", 'd', 1000, S(0)), vec!['d']);
        assert_eq!(j.counters().oversized, 1);
        assert_eq!(j.len(), 2);
        assert!(balanced(&j));
    }

    #[test]
    fn duplicate_and_bad_ids() {
        let mut j = LabelJoin::new(limits(10, 1 << 20, 60));
        j.insert("a", 1, 0, S(0));
        assert_eq!(j.insert("a", 2, 0, S(1)), vec![1]);
        assert_eq!(j.counters().duplicate_ids, 1);
        assert!(matches!(
            j.label("a", (), S(2)),
            LabelOutcome::Joined { item: 2, .. }
        ));
        assert_eq!(j.insert("", 3, 0, S(0)), vec![3]);
        assert_eq!(j.insert(&"x".repeat(MAX_ID_BYTES + 1), 4, 0, S(0)), vec![4]);
        assert_eq!(j.counters().bad_ids, 2);
        assert!(balanced(&j));
    }

    #[test]
    fn flood_stays_within_the_caps() {
        let l = JoinLimits {
            max_items: 1000,
            max_bytes: 100_000,
            max_wait: S(60),
            remembered_ids: 500,
        };
        let mut j = LabelJoin::new(l);
        let mut handed_back = 0u64;
        for i in 0..60_000u64 {
            let id = format!("req-{i}");
            handed_back += j
                .insert(&id, i, (i % 300) as usize, Duration::from_millis(i))
                .len() as u64;
            // A few labels arrive, most never do.
            if i.is_multiple_of(7) {
                let _ = j.label(&format!("req-{}", i / 2), (), Duration::from_millis(i));
            }
            assert!(j.len() <= l.max_items && j.bytes() <= l.max_bytes);
            assert!(j.fates.len() <= l.remembered_ids && j.resolved.len() <= l.remembered_ids);
            assert!(j.order.len() == j.waiting.len());
        }
        let c = j.counters();
        assert_eq!(handed_back, c.evicted_count + c.evicted_bytes);
        assert!(c.evicted_bytes > 0 && c.joined > 0);
        assert!(balanced(&j));
        assert_eq!(j.drain().len() as u64, c.inserted - c.joined - handed_back);
        assert_eq!((j.len(), j.bytes()), (0, 0));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u16),
        Label(u8),
        Expire,
    }

    proptest! {
        #[test]
        fn counters_balance_and_caps_hold(ops in proptest::collection::vec(prop_oneof![
            (any::<u8>(), any::<u16>()).prop_map(|(i, s)| Op::Insert(i % 32, s)),
            any::<u8>().prop_map(|i| Op::Label(i % 40)),
            Just(Op::Expire),
        ], 0..400), max_items in 0usize..20, max_bytes in 0usize..5000) {
            let l = JoinLimits { max_items, max_bytes, max_wait: S(10), remembered_ids: 8 };
            let mut j = LabelJoin::new(l);
            for (t, op) in ops.into_iter().enumerate() {
                let now = S(t as u64);
                match op {
                    Op::Insert(i, size) => { j.insert(&i.to_string(), t, usize::from(size), now); }
                    Op::Label(i) => { let _ = j.label(&i.to_string(), (), now); }
                    Op::Expire => { j.expire(now); }
                }
                prop_assert!(j.len() <= max_items && j.bytes() <= max_bytes);
                prop_assert!(balanced(&j));
            }
        }
    }
}
