//! Cluster topology as pure functions: which shard owns a slot ([`ring`]), which nodes hold a
//! shard's replicas and which of them leads it ([`placement`]).
//!
//! Nothing here does I/O, reads a clock or draws a random number: every node that evaluates these
//! functions on the same inputs gets the same answer, on any platform and with any build of
//! shoal. The metadata group relies on that (it stores only the inputs — shard ids, node ids,
//! `vnodes`, the replication factor — and every node derives the maps), so the hash below is part
//! of the cluster's persistent format: changing it reshuffles every slot and replica of a running
//! cluster. `tests::hash_is_stable` pins it.

pub mod events;
pub mod meta;
pub mod placement;
pub mod rebalance;
pub mod reconcile;
pub mod redis_view;
pub mod ring;
pub mod service;
pub mod status;

pub use crate::raft::types::NodeId;
pub use placement::{leaders, load_cap, moves, place, Move, Placement, DEFAULT_EPSILON};
pub use ring::{SlotRing, DEFAULT_VNODES};

/// A shard's id: the unit of replication (one Raft group) that owns a set of slots.
pub type ShardId = u32;

/// The number of Redis Cluster hash slots (`shoal_protocol::SLOT_COUNT`), as a `usize`.
pub const SLOTS: usize = shoal_protocol::SLOT_COUNT as usize;

/// splitmix64's output function (Steele, Lea & Flood, "Fast splittable pseudorandom number
/// generators", 2014; the constants of Vigna's reference `splitmix64.c`): the golden-ratio
/// increment followed by the "Mix13" finalizer. A bijection on `u64` with full avalanche, defined
/// only by wrapping integer arithmetic, hence identical on every platform and compiler version.
/// `mix64(0) == 0xE220_A839_7B1D_CDAF` (the first output of `splitmix64` seeded with 0).
pub const fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The hash of the pair `(a, b)` in the hash family `domain`: `mix64(mix64(domain ^ a) ^ b)`.
/// For fixed `domain` and `a` it is injective in `b` (both steps are bijections), so one shard's
/// virtual nodes never collide with each other. Different uses pick different `domain` constants
/// so their hashes are independent.
pub const fn hash2(domain: u64, a: u64, b: u64) -> u64 {
    mix64(mix64(domain ^ a) ^ b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash is part of the cluster's persistent format: these values must never change.
    #[test]
    fn hash_is_stable() {
        // The reference splitmix64 sequence for seed 0: outputs are mix64(0), mix64(γ), ...
        assert_eq!(mix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(
            mix64(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(2)),
            0x06C4_5D18_8009_454F
        );
        assert_eq!(hash2(1, 2, 3), mix64(mix64(3) ^ 3));
    }
}
