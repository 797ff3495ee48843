//! [`CpuSince`]: CPU time used since the monitor first saw each member of a changing set of
//! processes (or cgroups), from the absolute counters the kernel reports. Sans-IO.

use std::collections::BTreeMap;

/// Accumulates the CPU time a model server uses during this run.
///
/// The kernel reports CPU time since each process started; a production server may have run
/// for weeks before shadowd did, so each member counts only from the first reading the monitor
/// took of it. Members come and go (a server restarts, a pre-fork server replaces a worker):
/// a new member starts at its first reading, a gone one keeps what it added. The total only
/// grows, so it is a counter.
#[derive(Clone, Debug, Default)]
pub struct CpuSince<K> {
    /// The last reading of each member present at the latest [`CpuSince::observe`].
    last: BTreeMap<K, u64>,
    /// CPU time added since the first reading.
    total: u64,
}

impl<K: Ord + Clone> CpuSince<K> {
    /// An empty accumulator.
    pub fn new() -> Self {
        CpuSince {
            last: BTreeMap::new(),
            total: 0,
        }
    }

    /// Takes the current absolute CPU time of every member present now, in the kernel's unit
    /// (clock ticks, µs: integers, so nothing is lost to rounding; `key` names one process for
    /// its lifetime: pid and start time) and returns the total since the first readings. A
    /// member's counter that went backwards (a cgroup recreated at the same path) starts over
    /// from its new value.
    pub fn observe(&mut self, readings: impl IntoIterator<Item = (K, u64)>) -> u64 {
        let mut now = BTreeMap::new();
        for (key, time) in readings {
            if let Some(&before) = self.last.get(&key) {
                self.total = self.total.saturating_add(time.saturating_sub(before));
            }
            now.insert(key, time);
        }
        self.last = now;
        self.total
    }

    /// The total so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_what_each_member_used_after_its_first_reading() {
        let mut cpu = CpuSince::new();
        // A server that had used 100000 ticks before the run: nothing counted yet.
        assert_eq!(cpu.observe([((7, 100), 100_000)]), 0);
        assert_eq!(cpu.observe([((7, 100), 100_250)]), 250);
        // A worker appears with 300 ticks already used: from now on, 100 more are counted.
        assert_eq!(cpu.observe([((7, 100), 100_300), ((8, 200), 300)]), 300);
        assert_eq!(cpu.observe([((7, 100), 100_300), ((8, 200), 400)]), 400);
        // The worker exits: what it used stays counted.
        assert_eq!(cpu.observe([((7, 100), 100_400)]), 500);
        // Pid 7 is reused by another process (another start time): a new member, counted from
        // its first reading, not from the old one's 100400 ticks.
        assert_eq!(cpu.observe([((7, 900), 50)]), 500);
        assert_eq!(cpu.observe([((7, 900), 150)]), 600);
        // Nobody left: the total stays.
        assert_eq!(cpu.observe([]), 600);
        assert_eq!(cpu.total(), 600);
    }

    #[test]
    fn a_counter_that_goes_backwards_starts_over() {
        let mut cpu = CpuSince::new();
        cpu.observe([((), 50)]);
        assert_eq!(cpu.observe([((), 60)]), 10);
        // The cgroup was recreated: its usage restarted at 2.
        assert_eq!(cpu.observe([((), 2)]), 10);
        assert_eq!(cpu.observe([((), 5)]), 13);
    }
}
