//! The replay queue between admission and the replay workers, and when its jobs leave it.
//!
//! With [`Pacing::Production`] (the default) the shadow gets the load production got:
//!
//! - **Order and spacing.** A job leaves at its request's wire start time shifted onto the
//!   local clock: `due = request_first_byte + offset`. Exchanges reach the mirror only once
//!   their response has ended, so `offset` is the 90th percentile of the recent *lags*
//!   (arrival − wire start) of complete exchanges: most jobs are held just long enough to leave
//!   at production's spacing, in wire order; the slowest tenth (longer than their peers) leave
//!   on arrival rather than stall the others. No job is held more than [`MAX_HOLD`].
//! - **Concurrency.** A job leaves only while fewer replays are in flight than production had
//!   requests in flight when it started on the wire (every exchange seen counts, replayed or
//!   not, over `request_first_byte ..= response_last_byte`), and never more than
//!   `shadow.concurrency`.
//!
//! With [`Pacing::Asap`] jobs leave in arrival order as soon as fewer than `shadow.concurrency`
//! are in flight.
//!
//! [`ReplayQueue`] is the state machine (time passed in, for tests); [`SharedQueue`] shares it
//! between admission (which pushes without waiting: a full queue is `queue_full`) and the
//! mirror's dispatcher (which is woken on every change).

use super::Job;
use crate::config::Pacing;
use shadow_core::http::ExchangeTiming;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The longest a job is held for pacing.
pub const MAX_HOLD: Duration = Duration::from_secs(5);
/// Recent lags kept to choose the pacing offset.
const LAG_WINDOW: usize = 64;
/// Production requests remembered for the in-flight count, at most.
const MAX_SPANS: usize = 16_384;
/// Production requests that ended this long (wire time) before the newest one started are
/// forgotten.
const SPAN_HORIZON_NS: u64 = 1_000_000_000;

/// A job waiting in the queue.
#[derive(Debug)]
struct Waiting {
    /// Release order: (wire start, arrival) with production pacing, (0, arrival) with asap.
    order: (u64, u64),
    arrived: Instant,
    wire_start: u64,
    job: Job,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order.cmp(&other.order)
    }
}

/// A job leaving the queue.
#[derive(Debug)]
pub struct Released {
    /// The job.
    pub job: Job,
    /// How long it waited in the queue.
    pub waited: Duration,
    /// Production's requests in flight when it started on the wire (production pacing only).
    pub production_in_flight: Option<usize>,
}

/// Why a job was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `mirror.queue` jobs already.
    Full,
    /// The queue was closed (no more exchanges are expected).
    Closed,
}

/// What the dispatcher should do next.
#[derive(Debug)]
pub enum Next {
    /// Send this job.
    Release(Box<Released>),
    /// The next job is due at this instant.
    WaitUntil(Instant),
    /// The next job is due but `limit` replays are already in flight.
    Blocked {
        /// The in-flight limit for that job.
        limit: usize,
    },
    /// Nothing queued.
    Empty,
}

/// Production's requests over wire time, to count how many were in flight at an instant.
#[derive(Debug, Default)]
struct ProductionLoad {
    /// (first request byte, last response byte) in arrival order (about end order).
    spans: VecDeque<(u64, u64)>,
}

impl ProductionLoad {
    fn add(&mut self, timing: &ExchangeTiming) {
        let start = timing.request_first_byte;
        let end = timing
            .response_last_byte
            .or(timing.response_first_byte)
            .unwrap_or(timing.request_last_byte)
            .max(start);
        self.spans.push_back((start, end));
        let horizon = start.saturating_sub(SPAN_HORIZON_NS);
        self.forget_before(horizon);
        while self.spans.len() > MAX_SPANS {
            self.spans.pop_front();
        }
    }

    /// Forgets requests that ended before `t` (from the oldest, while they are in end order).
    fn forget_before(&mut self, t: u64) {
        while self.spans.front().is_some_and(|&(_, end)| end < t) {
            self.spans.pop_front();
        }
    }

    /// Requests in flight at wire time `t` (at least 1: the job asking is one).
    fn in_flight_at(&self, t: u64) -> usize {
        let n = self
            .spans
            .iter()
            .filter(|&&(start, end)| start <= t && t <= end)
            .count();
        n.max(1)
    }
}

/// The replay queue: bounded, paced (see the module docs). Time is passed in.
#[derive(Debug)]
pub struct ReplayQueue {
    pacing: Pacing,
    capacity: usize,
    concurrency: usize,
    waiting: BinaryHeap<Reverse<Waiting>>,
    arrivals: u64,
    /// Local clock origin: lags are `local ns − wire ns`.
    epoch: Instant,
    lags: VecDeque<i128>,
    /// Reused buffer for the 90th percentile of `lags` (no allocation per exchange).
    lags_scratch: Vec<i128>,
    /// `due = wire start + offset` (local ns); `None` before the first complete exchange.
    offset: Option<i128>,
    production: ProductionLoad,
    closed: bool,
    /// Jobs refused because the queue was full, since [`ReplayQueue::take_refused`].
    refused: u64,
}

impl ReplayQueue {
    /// An empty queue of `capacity` jobs releasing at most `concurrency` into flight.
    pub fn new(pacing: Pacing, capacity: usize, concurrency: usize, now: Instant) -> Self {
        ReplayQueue {
            pacing,
            capacity: capacity.max(1),
            concurrency: concurrency.max(1),
            waiting: BinaryHeap::new(),
            arrivals: 0,
            epoch: now,
            lags: VecDeque::with_capacity(LAG_WINDOW + 1),
            lags_scratch: Vec::with_capacity(LAG_WINDOW + 1),
            offset: None,
            production: ProductionLoad::default(),
            closed: false,
            refused: 0,
        }
    }

    /// The pacing.
    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no job is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Jobs it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Replays in flight at most (`shadow.concurrency`).
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn local_ns(&self, now: Instant) -> i128 {
        now.saturating_duration_since(self.epoch).as_nanos() as i128
    }

    /// Every exchange seen on the wire, replayed or not, arriving at `now`: production's load
    /// and the pacing offset come from these.
    pub fn observe(&mut self, timing: &ExchangeTiming, now: Instant) {
        if self.pacing != Pacing::Production {
            return;
        }
        self.production.add(timing);
        // Only an exchange whose response ended arrives a response-time after its start.
        if timing.response_last_byte.is_some() {
            let lag = self.local_ns(now) - i128::from(timing.request_first_byte);
            self.lags.push_back(lag);
            if self.lags.len() > LAG_WINDOW {
                self.lags.pop_front();
            }
            let sorted = &mut self.lags_scratch;
            sorted.clear();
            sorted.extend(self.lags.iter().copied());
            let at = (sorted.len() * 9 / 10).min(sorted.len() - 1);
            let (_, p90, _) = sorted.select_nth_unstable(at);
            self.offset = Some(*p90);
        }
    }

    /// Queues `job` (arrived at `now`), or drops it and says why.
    pub fn push(&mut self, job: Job, now: Instant) -> Result<(), Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        if self.waiting.len() >= self.capacity {
            self.refused += 1;
            return Err(Refused::Full);
        }
        self.arrivals += 1;
        let wire_start = job.timing.request_first_byte;
        let order = match self.pacing {
            Pacing::Production => (wire_start, self.arrivals),
            Pacing::Asap => (0, self.arrivals),
        };
        self.waiting.push(Reverse(Waiting {
            order,
            arrived: now,
            wire_start,
            job,
        }));
        Ok(())
    }

    /// The next job to send at `now` with `in_flight` replays in flight, or why none is.
    pub fn next(&mut self, now: Instant, in_flight: usize) -> Next {
        let Some(Reverse(head)) = self.waiting.peek() else {
            return Next::Empty;
        };
        let (wire_start, arrived) = (head.wire_start, head.arrived);
        let limit = match self.pacing {
            Pacing::Asap => None,
            Pacing::Production => {
                let due = self.due(wire_start, arrived);
                if due > now {
                    return Next::WaitUntil(due);
                }
                self.production.forget_before(wire_start);
                Some(self.production.in_flight_at(wire_start))
            }
        };
        let allowed = limit.map_or(self.concurrency, |l| l.min(self.concurrency));
        if in_flight >= allowed {
            return Next::Blocked { limit: allowed };
        }
        let Some(Reverse(head)) = self.waiting.pop() else {
            return Next::Empty;
        };
        Next::Release(Box::new(Released {
            job: head.job,
            waited: now.saturating_duration_since(head.arrived),
            production_in_flight: limit,
        }))
    }

    /// When a job that started on the wire at `wire_start` and arrived at `arrived` is due:
    /// `wire_start + offset`, but not before it arrived nor more than [`MAX_HOLD`] after.
    fn due(&self, wire_start: u64, arrived: Instant) -> Instant {
        let Some(offset) = self.offset else {
            return arrived;
        };
        let due_ns = i128::from(wire_start) + offset;
        let arrived_ns = self.local_ns(arrived);
        if due_ns <= arrived_ns {
            return arrived;
        }
        let hold = Duration::from_nanos(u64::try_from(due_ns - arrived_ns).unwrap_or(u64::MAX));
        arrived + hold.min(MAX_HOLD)
    }

    /// No more jobs will be pushed; the queued ones still leave.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Whether [`ReplayQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes the queue and takes every job still waiting (shutdown: they are abandoned).
    pub fn abandon(&mut self) -> Vec<Job> {
        self.closed = true;
        self.waiting.drain().map(|Reverse(w)| w.job).collect()
    }

    /// Jobs refused because the queue was full since the last call.
    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }
}

/// A [`ReplayQueue`] shared by admission and the dispatcher, which is woken on every change.
#[derive(Debug)]
pub struct SharedQueue {
    queue: Mutex<ReplayQueue>,
    changed: Notify,
}

impl SharedQueue {
    /// `queue`, shared.
    pub fn new(queue: ReplayQueue) -> Self {
        SharedQueue {
            queue: Mutex::new(queue),
            changed: Notify::new(),
        }
    }

    /// The queue, locked (briefly: both sides only make quick decisions under it).
    pub fn lock(&self) -> MutexGuard<'_, ReplayQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the dispatcher (something changed: a job, an exchange, closing).
    pub fn notify(&self) {
        self.changed.notify_one();
    }

    /// Resolves once [`SharedQueue::notify`] was called since the last time it resolved.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::job;

    const MS: u64 = 1_000_000;

    /// A job that started on the wire at `start_ms` and took `took_ms` (wire ms).
    fn timed(id: u64, start_ms: u64, took_ms: u64) -> Job {
        let mut j = job("POST", "/p", &id.to_string());
        j.timing = ExchangeTiming {
            request_first_byte: start_ms * MS,
            request_last_byte: start_ms * MS,
            response_first_byte: Some((start_ms + took_ms) * MS),
            response_last_byte: Some((start_ms + took_ms) * MS),
        };
        j
    }

    fn id(job: &Job) -> u64 {
        std::str::from_utf8(&job.request.body)
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Feeds `jobs` as a live capture would: each arrives (is observed and pushed) when its
    /// response ends plus a fixed pipeline delay, wire time 0 being local `t0`. Then releases
    /// whatever is due, stepping the clock 1 ms at a time, with replays that take `took_ms`
    /// each; returns (job id, local release ms) in release order and the largest number of
    /// replays in flight.
    fn simulate(
        pacing: Pacing,
        concurrency: usize,
        jobs: Vec<Job>,
        took_ms: u64,
    ) -> (Vec<(u64, u64)>, usize) {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = ReplayQueue::new(pacing, 1000, concurrency, t0);
        let mut arrivals: Vec<(u64, Job)> = jobs
            .into_iter()
            .map(|j| (j.timing.response_last_byte.unwrap() / MS + 2, j))
            .collect();
        arrivals.sort_by_key(|(t, _)| *t);
        let mut arrivals = arrivals.into_iter().peekable();
        let mut released = Vec::new();
        let mut in_flight: Vec<u64> = Vec::new(); // end times
        let mut max_in_flight = 0;
        for now_ms in 0..10_000u64 {
            let now = at(now_ms);
            in_flight.retain(|&end| end > now_ms);
            while let Some((_, j)) = arrivals.next_if(|(t, _)| *t <= now_ms) {
                q.observe(&j.timing, now);
                q.push(j, now).unwrap();
            }
            while let Next::Release(r) = q.next(now, in_flight.len()) {
                released.push((id(&r.job), now_ms));
                in_flight.push(now_ms + took_ms);
                max_in_flight = max_in_flight.max(in_flight.len());
            }
            if arrivals.peek().is_none() && q.is_empty() {
                break;
            }
        }
        (released, max_in_flight)
    }

    #[test]
    fn production_pacing_keeps_wire_order_and_spacing() {
        // Ten requests 10 ms apart, each answered in 5 ms.
        let jobs: Vec<Job> = (0..10).map(|i| timed(i, 100 + 10 * i, 5)).collect();
        let (released, _) = simulate(Pacing::Production, 32, jobs, 1);
        let order: Vec<u64> = released.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        let gaps: Vec<u64> = released.windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert_eq!(gaps, vec![10; 9], "released {released:?}");
    }

    #[test]
    fn a_slow_exchange_arriving_late_does_not_stall_the_others() {
        // Request 0 takes 200 ms, the others 5 ms, 10 ms apart: 0 arrives after 1..19.
        let jobs: Vec<Job> = (0..20)
            .map(|i| timed(i, 100 + 10 * i, if i == 0 { 200 } else { 5 }))
            .collect();
        let (released, _) = simulate(Pacing::Production, 32, jobs, 1);
        let others: Vec<&(u64, u64)> = released.iter().filter(|(id, _)| *id != 0).collect();
        let gaps: Vec<u64> = others.windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert_eq!(gaps, vec![10; 18], "released {released:?}");
        assert!(
            released.iter().any(|(id, _)| *id == 0),
            "released late, but released"
        );
    }

    #[test]
    fn in_flight_never_exceeds_production_at_the_wire_start() {
        // Three "connections" sending one request after another (5 ms apart, each 40 ms):
        // production never has more than 3 in flight. The shadow takes 100 ms per request.
        let jobs: Vec<Job> = (0..30)
            .map(|i| {
                let conn = i % 3;
                let k = i / 3;
                timed(i, 100 + conn * 5 + k * 45, 40)
            })
            .collect();
        let (released, max_prod_pacing) = simulate(Pacing::Production, 32, jobs.clone(), 100);
        assert_eq!(released.len(), 30);
        assert_eq!(max_prod_pacing, 3, "production had at most 3 in flight");
        let (released, max_asap) = simulate(Pacing::Asap, 32, jobs.clone(), 100);
        assert_eq!(released.len(), 30);
        assert!(
            max_asap > 3,
            "asap lets the slow shadow pile up: {max_asap}"
        );
        let (_, max_capped) = simulate(Pacing::Production, 2, jobs, 100);
        assert_eq!(max_capped, 2, "shadow.concurrency is an upper bound");
    }

    #[test]
    fn full_queue_refuses_and_counts_and_close_abandons() {
        let t0 = Instant::now();
        let mut q = ReplayQueue::new(Pacing::Asap, 2, 1, t0);
        assert!(q.push(timed(0, 0, 1), t0).is_ok());
        assert!(q.push(timed(1, 0, 1), t0).is_ok());
        assert_eq!(q.push(timed(2, 0, 1), t0), Err(Refused::Full));
        assert_eq!(q.take_refused(), 1);
        assert_eq!(q.take_refused(), 0);
        let Next::Release(r) = q.next(t0, 0) else {
            panic!("asap releases at once")
        };
        assert_eq!(id(&r.job), 0);
        assert_eq!(r.production_in_flight, None);
        assert!(matches!(q.next(t0, 1), Next::Blocked { limit: 1 }));
        let left = q.abandon();
        assert_eq!(left.len(), 1);
        assert!(q.is_closed() && q.is_empty());
        assert_eq!(q.push(timed(3, 0, 1), t0), Err(Refused::Closed));
        assert_eq!(q.take_refused(), 0, "refused after close is not queue_full");
    }

    #[test]
    fn holds_are_bounded() {
        let t0 = Instant::now();
        let mut q = ReplayQueue::new(Pacing::Production, 10, 10, t0);
        // The first exchange sets the offset; the next one claims to start an hour later.
        let first = timed(0, 0, 1);
        q.observe(&first.timing, t0);
        q.push(first, t0).unwrap();
        assert!(matches!(q.next(t0, 0), Next::Release(_)));
        let late = timed(1, 3_600_000, 1);
        q.push(late, t0).unwrap();
        match q.next(t0, 0) {
            Next::WaitUntil(t) => assert_eq!(t, t0 + MAX_HOLD),
            other => panic!("{other:?}"),
        }
        assert!(matches!(q.next(t0 + MAX_HOLD, 0), Next::Release(_)));
    }
}
