//! Eviction under `maxmemory`: the node's limits and policy, and the choice of victims.
//!
//! Like Redis, the leader approximates LRU/LFU/TTL order by sampling: each round looks at
//! `maxmemory-samples` keys (consecutive in a random slot's hash order, as `dictGetSomeKeys`)
//! and offers them to a pool of the 16 best candidates seen so far; the best of the pool is
//! evicted. Random policies take a random sampled key. The keys chosen are deleted by proposing
//! one `Evict` entry per batch, so followers delete exactly what the leader chose.
//!
//! The node's `maxmemory` is shared out equally to the shard groups it hosts: each shard it
//! leads keeps its keyspace under `maxmemory / hosted shards`. Followers' replicas are kept
//! under the same share by their own leaders (all nodes run the same configuration), so a node
//! holds at most `maxmemory` of data whatever mix of shards it leads and follows.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

use super::access::Tracking;
use super::entry::UnixMillis;
use super::keyspace::Keyspace;

/// Redis's `EVPOOL_SIZE`.
pub const POOL_SIZE: usize = 16;

/// Redis's `maxmemory-policy` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    NoEviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    pub const ALL: [Policy; 8] = [
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
        Policy::AllkeysLru,
        Policy::AllkeysLfu,
        Policy::AllkeysRandom,
        Policy::NoEviction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllkeysLru => "allkeys-lru",
            Policy::AllkeysLfu => "allkeys-lfu",
            Policy::AllkeysRandom => "allkeys-random",
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllkeysLfu | Policy::VolatileLfu)
    }

    /// Only keys with a deadline may be evicted.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    fn is_random(self) -> bool {
        matches!(self, Policy::AllkeysRandom | Policy::VolatileRandom)
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Policy, String> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "argument(s) must be one of the following: {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The node's memory settings, shared by its replicas (live: `CONFIG SET` changes them).
#[derive(Debug, Default)]
pub struct MemoryLimits {
    maxmemory: AtomicU64,
    policy: AtomicU8,
    samples: AtomicU32,
    /// Data shard groups hosted here (the metadata group excluded): `maxmemory` is split
    /// equally among them.
    hosted_shards: AtomicU32,
    pub tracking: Arc<Tracking>,
}

impl MemoryLimits {
    pub fn configure(
        &self,
        maxmemory: u64,
        policy: Policy,
        samples: u32,
        lfu_log_factor: u32,
        lfu_decay_time: u32,
    ) {
        self.maxmemory.store(maxmemory, Ordering::Relaxed);
        let index = Policy::ALL.iter().position(|p| *p == policy).unwrap_or(0);
        self.policy.store(index as u8, Ordering::Relaxed);
        self.samples.store(samples.max(1), Ordering::Relaxed);
        self.tracking
            .set(policy.is_lfu(), lfu_log_factor, lfu_decay_time);
    }

    pub fn set_hosted_shards(&self, n: usize) {
        self.hosted_shards.store(n as u32, Ordering::Relaxed);
    }

    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Ordering::Relaxed)
    }

    /// Whether Redis would store small integer values as its shared objects: unless an LRU or
    /// LFU policy needs each value's own access clock (`MAXMEMORY_FLAG_NO_SHARED_INTEGERS`).
    /// Only `OBJECT REFCOUNT` shows it.
    pub fn shares_integers(&self) -> bool {
        self.maxmemory() == 0
            || !matches!(
                self.policy(),
                Policy::AllkeysLru | Policy::AllkeysLfu | Policy::VolatileLru | Policy::VolatileLfu
            )
    }

    pub fn policy(&self) -> Policy {
        Policy::ALL[self.policy.load(Ordering::Relaxed) as usize % Policy::ALL.len()]
    }

    pub fn samples(&self) -> usize {
        self.samples.load(Ordering::Relaxed).max(1) as usize
    }

    /// Bytes one shard may hold (`None`: no limit).
    pub fn shard_budget(&self) -> Option<usize> {
        match self.maxmemory() {
            0 => None,
            max => {
                let shards = self.hosted_shards.load(Ordering::Relaxed).max(1) as u64;
                Some((max / shards) as usize)
            }
        }
    }
}

/// One pool candidate: higher `score` is a better victim.
struct Candidate {
    score: u64,
    key: Bytes,
    size: usize,
}

/// The slots eviction samples from ([`Keyspace::populated_slots`]), listed again at most every
/// [`SampledSlots::REFRESH`]: listing takes all 16384 slot locks, and an eviction run under a
/// steady write load chooses victims hundreds of times a second (listing each time took a
/// third of the server's CPU in `scripts/bench-eviction.sh`). A stale list costs nothing
/// wrong: an emptied slot yields no sample, a newly filled one waits for the next listing.
#[derive(Default)]
pub struct SampledSlots {
    slots: Vec<u16>,
    /// When, and for which `volatile`, the list was taken.
    taken: Option<(std::time::Instant, bool)>,
}

impl SampledSlots {
    pub const REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

    pub fn get(&mut self, ks: &Keyspace, volatile: bool) -> &[u16] {
        let fresh = self
            .taken
            .is_some_and(|(at, v)| v == volatile && at.elapsed() < Self::REFRESH);
        if !fresh {
            self.slots = ks.populated_slots(volatile);
            self.taken = Some((std::time::Instant::now(), volatile));
        }
        &self.slots
    }
}

/// Chooses keys of `ks` to evict under `policy` until their estimated size reaches `to_free`
/// or `max` keys are chosen, sampling `slots` (the populated ones, see [`SampledSlots`]).
/// Returns fewer (maybe none) if the keyspace runs out of candidates (`volatile-*` with few
/// keys that have a deadline).
#[allow(clippy::too_many_arguments)]
pub fn choose_victims(
    ks: &Keyspace,
    slots: &[u16],
    policy: Policy,
    samples: usize,
    now: UnixMillis,
    to_free: usize,
    max: usize,
    rng: &mut impl Rng,
) -> Vec<Bytes> {
    let volatile = policy.volatile_only();
    let mut chosen: HashSet<Bytes> = HashSet::new();
    let mut victims = Vec::new();
    if slots.is_empty() || policy == Policy::NoEviction {
        return victims;
    }
    let tracking = ks.tracking();
    let mut pool: Vec<Candidate> = Vec::with_capacity(POOL_SIZE + 1);
    let mut freed = 0;
    // Bounded so a keyspace smaller than the need cannot spin: each round samples at least one
    // key, and a round whose sample is all already chosen still counts.
    let mut rounds = 4 * max + 64;
    while freed < to_free && victims.len() < max && rounds > 0 {
        rounds -= 1;
        // `samples` keys per round, from as many slots as it takes (a shard's slots may hold
        // only a few keys each).
        let want = if policy.is_random() { 1 } else { samples };
        let mut seen = 0;
        for _ in 0..2 * want {
            let slot = slots[rng.gen_range(0..slots.len())];
            let start = rng.gen::<u32>() as usize;
            ks.sample_slot(slot, start, want - seen, volatile, |e| {
                seen += 1;
                if chosen.contains(e.key()) || pool.iter().any(|c| &c.key[..] == e.key()) {
                    return;
                }
                let score = match policy {
                    Policy::VolatileTtl => u64::MAX - e.expires_at().unwrap_or(u64::MAX),
                    _ if policy.is_random() => 0,
                    _ => tracking.idle_score(e.access(), now),
                };
                offer(&mut pool, score, e.key(), e.mem_usage());
            });
            if seen >= want {
                break;
            }
        }
        // The best candidate of the pool (Redis evicts from the pool's idle end).
        if let Some(best) = pool.pop() {
            freed += best.size;
            chosen.insert(best.key.clone());
            victims.push(best.key);
        }
    }
    victims
}

/// Inserts a candidate into the pool (kept sorted by ascending score, at most `POOL_SIZE`),
/// dropping the worst when full, as Redis's `evictionPoolPopulate`.
fn offer(pool: &mut Vec<Candidate>, score: u64, key: &[u8], size: usize) {
    if pool.len() == POOL_SIZE && pool[0].score >= score {
        return;
    }
    let at = pool.partition_point(|c| c.score < score);
    pool.insert(
        at,
        Candidate {
            score,
            key: Bytes::copy_from_slice(key),
            size,
        },
    );
    if pool.len() > POOL_SIZE {
        pool.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::Entry;
    use rand::SeedableRng;

    fn fill(ks: &Keyspace, n: usize, at: impl Fn(usize) -> (UnixMillis, UnixMillis)) {
        for i in 0..n {
            let key = format!("key:{i}");
            let (now, deadline) = at(i);
            ks.write_slots([key.as_bytes()]).at(now).insert(Entry::new(
                key.as_bytes(),
                b"value",
                deadline,
            ));
        }
    }

    fn index(key: &Bytes) -> usize {
        std::str::from_utf8(&key[4..]).unwrap().parse().unwrap()
    }

    #[test]
    fn lru_evicts_mostly_the_least_recently_used() {
        let ks = Keyspace::new();
        // Key i last accessed at time i: the oldest are the best victims.
        fill(&ks, 10_000, |i| (i as u64, 0));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let victims = choose_victims(
            &ks,
            &ks.populated_slots(false),
            Policy::AllkeysLru,
            5,
            20_000,
            usize::MAX,
            1000,
            &mut rng,
        );
        assert_eq!(victims.len(), 1000);
        let old = victims.iter().filter(|k| index(k) < 5000).count();
        assert!(old > 850, "only {old} of 1000 victims from the older half");
    }

    #[test]
    fn volatile_ttl_takes_nearest_deadlines_and_never_persistent_keys() {
        let ks = Keyspace::new();
        // Even keys persistent; odd keys expire at 1_000_000 + i.
        fill(&ks, 4000, |i| {
            (0, if i % 2 == 1 { 1_000_000 + i as u64 } else { 0 })
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let victims = choose_victims(
            &ks,
            &ks.populated_slots(true),
            Policy::VolatileTtl,
            5,
            0,
            usize::MAX,
            400,
            &mut rng,
        );
        assert_eq!(victims.len(), 400);
        assert!(victims.iter().all(|k| index(k) % 2 == 1));
        let near = victims.iter().filter(|k| index(k) < 2000).count();
        assert!(
            near > 340,
            "only {near} of 400 victims among the nearer half"
        );
    }

    #[test]
    fn volatile_policies_find_nothing_without_deadlines_and_stop() {
        let ks = Keyspace::new();
        fill(&ks, 100, |_| (0, 0));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for policy in [
            Policy::VolatileLru,
            Policy::VolatileRandom,
            Policy::NoEviction,
        ] {
            assert!(choose_victims(
                &ks,
                &ks.populated_slots(policy.volatile_only()),
                policy,
                5,
                0,
                usize::MAX,
                10,
                &mut rng
            )
            .is_empty());
        }
        let all = choose_victims(
            &ks,
            &ks.populated_slots(false),
            Policy::AllkeysRandom,
            5,
            0,
            usize::MAX,
            500,
            &mut rng,
        );
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
        assert!(all.len() <= 100);
    }

    #[test]
    fn policy_names_round_trip() {
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>(), Ok(p));
        }
        assert!("lru".parse::<Policy>().is_err());
    }
}
