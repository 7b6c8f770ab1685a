//! Shard → replica nodes by bounded-load rendezvous (HRW) hashing, the moves between two
//! placements, and balanced leadership.
//!
//! # Placement ([`place`])
//!
//! Every `(shard, node)` pair has a score `hash2(SCORE_DOMAIN, shard, node)` (the stable
//! splitmix64-based hash of [`super::hash2`]). With `r = min(rf, N)` and the load cap
//! `cap = ceil((1 + ε) · S·r / N)` ([`load_cap`]), shards are processed in ascending id order and
//! each takes the `r` highest-scoring nodes, skipping nodes that already hold `cap` replicas.
//! Inputs are sorted and deduplicated first, so the result depends only on the *sets* of shards
//! and nodes. Scores never tie in practice (2⁻⁶⁴); if they do, the lower node id wins.
//!
//! **Feasibility guard.** The plain rule can paint itself into a corner: with 5 nodes, rf 3 and
//! 4 shards the cap is 3, and if the first three shards happen to pick the same three nodes the
//! fourth finds only two nodes under the cap. `place` therefore also skips a node if taking it
//! would leave the remaining shards no way to get their replicas within the cap (an exact test:
//! `R` shards needing `r` distinct nodes each fit residual capacities `c_j` iff
//! `Σ_j min(c_j, R) ≥ R·r`). When the plain rule does not get stuck, `place` returns exactly its
//! result (a property test checks this). The plain rule got stuck in 5 of 230,400 measured
//! placements (S ≤ 64, N ≤ 13, rf 1..=3, ε = 0.25).
//!
//! Guarantees (all checked by property tests): every shard has `min(rf, N)` distinct replicas
//! taken from `nodes`; no node holds more than `cap`; the result is independent of input order.
//!
//! # Movement
//!
//! Call a shard *displaced* in a placement when its replicas differ from its unconstrained
//! top-`r` nodes (the cap pushed it off a preferred node). Then, exactly: when node `w` joins
//! or leaves, the shards whose replica set changes are among the shards that have `w` in their
//! unconstrained top-`r` (≈ `r·S/(N+1)`), plus the shards displaced before or after. That second
//! part is the price of the bounded load: the cap moves with `N`, and a node that fills up at a
//! different moment pushes later shards elsewhere (a cascade).
//!
//! Measured with S 1..=64 and N 1..=12 growing to N+1, random ids and ε = 0.25. "Strict" is
//! `ceil(rf·S/(N+1)·(1+ε)) + rf`. The percentages come from `tests::measure` (76,800 joins per
//! rf). The worst ratios also include a longer search (1,152,000 joins for rf 1, 614,400 for rf 2
//! and rf 3).
//!
//! | rf | joins changing more than strict | worst changed / strict             |
//! |----|---------------------------------|------------------------------------|
//! | 1  | 9.2 %                           | 3.5 (7 of 10 shards, N 12 → 13)    |
//! | 2  | 1.3 %                           | 1.75                               |
//! | 3  | 0.08 %                          | 1.4                                |
//!
//! rf = 1 is worst because its average load is lowest. When `S ≲ N` the cap falls from 2 to 1 as
//! a node joins, and the placement must become a matching, which reshuffles many shards. The tests
//! assert `changed ≤ 4 × strict` for rf = 1 and `≤ 2 × strict` for rf ≥ 2, i.e. O(rf·S/N + rf)
//! over this range, plus the exact statement above. (For much larger N with a small average load,
//! a drop in the cap can displace a constant fraction of the shards. Past that range only the
//! exact statement is a guarantee.)
//!
//! A node leaving is the same pair of placements read backwards, so it changes the same number of
//! shards: every shard the node held, plus the displaced ones. Shards that did not hold the node
//! can therefore change too (usually they get a preferred node back, because the cap rose). The
//! hoped-for "a shard not on the leaving node keeps at least `min(rf, N−1) − 1` of its replicas"
//! does **not** always hold. Among the shards that did not hold the leaving node, these lost two
//! or more replicas: rf 2, 1,001 of 1,589,016 (0.06 %, all of them lost both); rf 3, 928 of
//! 1,240,924 (0.07 %, 23 of which lost all three). With rf 1, 2.7 % moved their only replica. What
//! holds is the exact statement above. It bounds how far the rebalancer has to go; how fast it
//! gets there is its `rebalance-max-moves` limit.
//!
//! # Leaders ([`leaders`])
//!
//! Greedy first: shards in id order, each led by the replica currently leading the fewest shards
//! (ties: replica order, i.e. rendezvous preference). Then leaderships are shifted along
//! cost-reducing paths until none remains. The result is an optimal semi-matching: no assignment
//! of leaders to replicas has a lower maximum or a higher minimum of leaderships per node
//! (checked against a max-flow computation in the tests). So `max − min ≤ 1` whenever some
//! assignment achieves it. It can fail to exist because a node holds too few replicas (rf = 1
//! leaves no choice at all), or because a group of nodes shares too many shards among
//! themselves. Measured spread (max − min over the nodes holding a replica, same sweep, 76,800
//! placements per rf): rf 3, ≤ 1 in 99.7 % of cases and never above 4; rf 2, ≤ 1 in 93.8 %, up to
//! 5 (a node holding a single replica, or a few nodes sharing many shards); rf 1, whatever the
//! placement's loads are, since there is no choice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::{hash2, NodeId, ShardId};

/// Hash family of the rendezvous scores: `hash2(SCORE_DOMAIN, shard, node)`.
const SCORE_DOMAIN: u64 = 0x7368_6f61_6c2f_7263; // "shoal/rc"

/// The default load slack ε: no node holds more than `ceil(1.25 · average)` replicas.
pub const DEFAULT_EPSILON: f64 = 0.25;

/// Each shard's replica nodes, most preferred (highest rendezvous score) first.
pub type Placement = BTreeMap<ShardId, Vec<NodeId>>;

/// What the rebalancer must do to one shard to go from one placement to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub shard: ShardId,
    /// Nodes that must gain a replica of `shard`, in the new placement's preference order.
    pub add: Vec<NodeId>,
    /// Nodes that must drop their replica of `shard`, in the old placement's order.
    pub remove: Vec<NodeId>,
}

/// The most replicas one node may hold: `ceil((1 + ε) · average)` with
/// `average = shards · min(rf, nodes) / nodes`, computed in `f64` as
/// `((1 + ε) · shards·min(rf, nodes) / nodes).ceil()` and clamped to `[ceil(average), shards]`.
/// The clamp means that rounding, a negative ε or a NaN ε can never make the placement
/// infeasible, and that no node is ever allowed two replicas of one shard. 0 when there are no
/// nodes.
pub fn load_cap(shards: usize, nodes: usize, replication_factor: usize, epsilon: f64) -> usize {
    if nodes == 0 {
        return 0;
    }
    let replicas = shards * replication_factor.min(nodes);
    let floor = replicas.div_ceil(nodes);
    let slack = if epsilon.is_nan() {
        1.0
    } else {
        1.0 + epsilon.max(0.0)
    };
    let cap = (slack * replicas as f64 / nodes as f64).ceil();
    // `as` saturates, so an infinite ε gives `usize::MAX`, clamped to `shards` below.
    (cap as usize).clamp(floor, shards)
}

/// The bounded-load rendezvous placement of `shards` on `nodes` (both in any order, duplicates
/// ignored): every shard maps to `min(replication_factor, nodes)` distinct nodes, most preferred
/// first, and no node holds more than [`load_cap`] replicas. With no nodes, every shard maps to
/// an empty list. See the module documentation for the algorithm and what moves when nodes come
/// and go.
pub fn place(
    shards: &[ShardId],
    nodes: &[NodeId],
    replication_factor: usize,
    epsilon: f64,
) -> Placement {
    let shards: Vec<ShardId> = sorted_distinct(shards);
    let nodes: Vec<NodeId> = sorted_distinct(nodes);
    let n = nodes.len();
    let r = replication_factor.min(n);
    if r == 0 {
        return shards.iter().map(|&s| (s, Vec::new())).collect();
    }
    let cap = load_cap(shards.len(), n, r, epsilon);
    let mut load = vec![0usize; n];
    let mut out = Placement::new();
    let mut ranked: Vec<(u64, usize)> = Vec::with_capacity(n);
    for (i, &shard) in shards.iter().enumerate() {
        let later = shards.len() - i - 1;
        ranked.clear();
        ranked.extend(
            nodes
                .iter()
                .enumerate()
                .map(|(j, &node)| (score(shard, node), j)),
        );
        // Highest score first; equal scores by ascending node id (`nodes` is sorted).
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

        // The plain rule. If it would strand a later shard, walk the ranking again accepting a
        // node only while a completion within the cap remains possible: a node rejected then
        // cannot be part of any feasible completion later in the walk either, so the walk finds
        // `r` nodes (the state before this shard is feasible by induction), and it picks the
        // same nodes as the plain rule whenever the plain pick is feasible.
        let mut pick: Vec<usize> = ranked
            .iter()
            .map(|&(_, j)| j)
            .filter(|&j| load[j] < cap)
            .take(r)
            .collect();
        if pick.len() < r || !completable(&load, &pick, cap, r, later) {
            pick.clear();
            for &(_, j) in &ranked {
                if pick.len() == r {
                    break;
                }
                if load[j] >= cap {
                    continue;
                }
                pick.push(j);
                if !completable(&load, &pick, cap, r, later) {
                    pick.pop();
                }
            }
            assert_eq!(pick.len(), r, "a feasible state always has a feasible pick");
        }
        for &j in &pick {
            load[j] += 1;
        }
        out.insert(shard, pick.iter().map(|&j| nodes[j]).collect());
    }
    out
}

/// Whether the current shard, already given the distinct nodes `chosen` (indices, all under
/// `cap`), can get `r - chosen.len()` more and then `later` further shards `r` each, without any
/// node exceeding `cap`.
///
/// Exact: completing the current shard with the nodes of largest residual capacity is optimal
/// (exchange argument: `x ↦ min(x, R)` is concave), and `R` shards needing `r` distinct nodes
/// each fit residual capacities `c_j` iff `Σ_j min(c_j, R) ≥ R·r` (Gale–Ryser with equal row
/// sums).
fn completable(load: &[usize], chosen: &[usize], cap: usize, r: usize, later: usize) -> bool {
    let mut residual: Vec<usize> = load.iter().map(|&l| cap - l).collect();
    for &j in chosen {
        residual[j] -= 1;
    }
    let missing = r - chosen.len();
    if missing > 0 {
        let mut others: Vec<usize> = (0..load.len())
            .filter(|j| !chosen.contains(j) && residual[*j] > 0)
            .collect();
        if others.len() < missing {
            return false;
        }
        others.sort_unstable_by(|&a, &b| residual[b].cmp(&residual[a]).then(a.cmp(&b)));
        for &j in &others[..missing] {
            residual[j] -= 1;
        }
    }
    residual.iter().map(|&c| c.min(later)).sum::<usize>() >= later * r
}

/// The rendezvous score of `node` for `shard`: higher is preferred.
fn score(shard: ShardId, node: NodeId) -> u64 {
    hash2(SCORE_DOMAIN, u64::from(shard), node)
}

fn sorted_distinct<T: Ord + Copy>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// What changes from `old` to `new`: one [`Move`] per shard whose replica *set* differs, in shard
/// order. A shard only in `old` removes all its replicas, one only in `new` adds all of them. A
/// change of preference order alone is not a move.
pub fn moves(old: &Placement, new: &Placement) -> Vec<Move> {
    let none = Vec::new();
    let shards: BTreeSet<ShardId> = old.keys().chain(new.keys()).copied().collect();
    shards
        .into_iter()
        .filter_map(|shard| {
            let before = old.get(&shard).unwrap_or(&none);
            let after = new.get(&shard).unwrap_or(&none);
            let add: Vec<NodeId> = after
                .iter()
                .copied()
                .filter(|n| !before.contains(n))
                .collect();
            let remove: Vec<NodeId> = before
                .iter()
                .copied()
                .filter(|n| !after.contains(n))
                .collect();
            (!add.is_empty() || !remove.is_empty()).then_some(Move { shard, add, remove })
        })
        .collect()
}

/// A leader for every shard that has a replica (shards with none are left out), each one of the
/// shard's replicas, balanced optimally: no other choice has a lower maximum or a higher minimum
/// of leaderships per node. See the module documentation.
pub fn leaders(placement: &Placement) -> BTreeMap<ShardId, NodeId> {
    let mut led: BTreeMap<NodeId, usize> = placement
        .values()
        .flatten()
        .map(|&node| (node, 0))
        .collect();
    let mut leader: BTreeMap<ShardId, NodeId> = BTreeMap::new();
    for (&shard, replicas) in placement {
        // Fewest leaderships so far; `min_by_key` keeps the first of equals: replica order.
        if let Some(&node) = replicas.iter().min_by_key(|n| led[*n]) {
            *led.get_mut(&node).expect("every replica is counted") += 1;
            leader.insert(shard, node);
        }
    }
    while let Some(path) = cost_reducing_path(placement, &leader, &led) {
        let (first, _) = path[0];
        let (_, last) = path[path.len() - 1];
        *led.get_mut(&leader[&first]).expect("counted") -= 1;
        *led.get_mut(&last).expect("counted") += 1;
        for (shard, node) in path {
            leader.insert(shard, node);
        }
    }
    leader
}

/// A cost-reducing path, as the leadership hand-overs `(shard, new leader)` along it: a chain
/// `u → shard₁ → v₁ → shard₂ → … → w` where `u` leads `shard₁`, `v₁` holds a replica of `shard₁`
/// and leads `shard₂`, and so on, with `led[w] + 2 ≤ led[u]`. Handing each shard to the next node
/// lowers `u` by one, raises `w` by one and leaves the nodes in between as they were, so `Σ led²`
/// drops and repeating terminates. When no such path exists the assignment is an optimal
/// semi-matching (Harvey, Ladner, Lovász & Tamir, "Semi-matchings for bipartite graphs and load
/// balancing", 2006). Searches from the most loaded nodes first (ties by id), breadth first in id
/// order, so the result is deterministic.
fn cost_reducing_path(
    placement: &Placement,
    leader: &BTreeMap<ShardId, NodeId>,
    led: &BTreeMap<NodeId, usize>,
) -> Option<Vec<(ShardId, NodeId)>> {
    let least = led.values().copied().min()?;
    let mut starts: Vec<(usize, NodeId)> = led
        .iter()
        .filter(|&(_, &c)| c >= least + 2)
        .map(|(&n, &c)| (c, n))
        .collect();
    if starts.is_empty() {
        return None;
    }
    starts.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut led_by: BTreeMap<NodeId, Vec<ShardId>> = BTreeMap::new();
    for (&shard, &node) in leader {
        led_by.entry(node).or_default().push(shard);
    }
    for (top, start) in starts {
        // For each node reached: the shard through which it was reached.
        let mut via: BTreeMap<NodeId, ShardId> = BTreeMap::new();
        let mut seen: BTreeSet<NodeId> = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for &shard in led_by.get(&node).map(Vec::as_slice).unwrap_or(&[]) {
                for &next in &placement[&shard] {
                    if !seen.insert(next) {
                        continue;
                    }
                    via.insert(next, shard);
                    if led[&next] + 2 <= top {
                        let mut path = Vec::new();
                        let mut at = next;
                        while at != start {
                            let shard = via[&at];
                            path.push((shard, at));
                            at = leader[&shard];
                        }
                        path.reverse();
                        return Some(path);
                    }
                    queue.push_back(next);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::collection::btree_set;
    use proptest::prelude::*;

    use super::super::mix64;
    use super::*;

    // -----------------------------------------------------------------------------------------
    // Helpers and reference models
    // -----------------------------------------------------------------------------------------

    fn shard_sets() -> impl Strategy<Value = BTreeSet<ShardId>> {
        prop_oneof![
            btree_set(any::<ShardId>(), 1..=64),
            btree_set(0..128 as ShardId, 1..=64),
        ]
    }

    fn node_sets(max: usize) -> impl Strategy<Value = BTreeSet<NodeId>> {
        prop_oneof![
            btree_set(any::<NodeId>(), 1..=max),
            btree_set(1..=(2 * max as NodeId), 1..=max),
        ]
    }

    fn epsilons() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => Just(DEFAULT_EPSILON),
            1 => Just(0.0),
            1 => Just(0.1),
            1 => Just(1.0),
        ]
    }

    fn vec_of<T: Copy>(set: &BTreeSet<T>) -> Vec<T> {
        set.iter().copied().collect()
    }

    /// Replicas held per node (nodes holding none are absent).
    fn loads(p: &Placement) -> BTreeMap<NodeId, usize> {
        let mut out = BTreeMap::new();
        for &node in p.values().flatten() {
            *out.entry(node).or_default() += 1;
        }
        out
    }

    /// Shards whose replica set differs between `a` and `b`.
    fn changed(a: &Placement, b: &Placement) -> BTreeSet<ShardId> {
        moves(a, b).into_iter().map(|m| m.shard).collect()
    }

    /// The unconstrained top-`r` nodes of `shard`.
    fn top(shard: ShardId, nodes: &[NodeId], rf: usize) -> Vec<NodeId> {
        let mut ranked = sorted_distinct(nodes);
        ranked.sort_by_key(|&n| (std::cmp::Reverse(score(shard, n)), n));
        ranked.truncate(rf);
        ranked
    }

    /// Shards the cap pushed off their unconstrained top-`r`.
    fn displaced(p: &Placement, nodes: &[NodeId], rf: usize) -> BTreeSet<ShardId> {
        p.iter()
            .filter(|(&s, replicas)| **replicas != top(s, nodes, rf))
            .map(|(&s, _)| s)
            .collect()
    }

    /// The brief's `ceil(rf·S/(N+1)·(1+ε)) + rf`, for the larger node count `n_big`.
    fn strict_bound(shards: usize, n_big: usize, rf: usize) -> usize {
        let ideal = rf as f64 * shards as f64 / n_big as f64;
        (ideal * (1.0 + DEFAULT_EPSILON)).ceil() as usize + rf
    }

    /// The measured multiple of [`strict_bound`] that a node joining or leaving stays within.
    fn cascade_factor(rf: usize) -> usize {
        if rf == 1 {
            4
        } else {
            2
        }
    }

    /// The plain bounded-load rule without the feasibility guard; `None` if it gets stuck.
    fn plain_place(shards: &[ShardId], nodes: &[NodeId], rf: usize, eps: f64) -> Option<Placement> {
        let shards = sorted_distinct(shards);
        let nodes = sorted_distinct(nodes);
        let r = rf.min(nodes.len());
        let cap = load_cap(shards.len(), nodes.len(), r, eps);
        let mut load: BTreeMap<NodeId, usize> = nodes.iter().map(|&n| (n, 0)).collect();
        let mut out = Placement::new();
        for &shard in &shards {
            let pick: Vec<NodeId> = top(shard, &nodes, nodes.len())
                .into_iter()
                .filter(|n| load[n] < cap)
                .take(r)
                .collect();
            if pick.len() < r {
                return None;
            }
            for n in &pick {
                *load.get_mut(n).unwrap() += 1;
            }
            out.insert(shard, pick);
        }
        Some(out)
    }

    /// Maximum bipartite b-matching by augmenting paths: `adj[u]` lists the right vertices left
    /// vertex `u` may use, right vertex `v` takes at most `cap[v]` left vertices.
    fn b_matching(adj: &[Vec<usize>], cap: &[usize]) -> usize {
        fn augment(
            u: usize,
            adj: &[Vec<usize>],
            cap: &[usize],
            taken: &mut [Vec<usize>],
            seen: &mut [bool],
        ) -> bool {
            for &v in &adj[u] {
                if seen[v] {
                    continue;
                }
                seen[v] = true;
                if taken[v].len() < cap[v] {
                    taken[v].push(u);
                    return true;
                }
                for k in 0..taken[v].len() {
                    let other = taken[v][k];
                    if augment(other, adj, cap, taken, seen) {
                        taken[v][k] = u;
                        return true;
                    }
                }
            }
            false
        }
        let mut taken = vec![Vec::new(); cap.len()];
        (0..adj.len())
            .filter(|&u| augment(u, adj, cap, &mut taken, &mut vec![false; cap.len()]))
            .count()
    }

    /// (lowest possible maximum, highest possible minimum) leaderships per replica-holding node
    /// over all choices of leaders, by max-flow.
    fn optimal_leader_bounds(p: &Placement) -> (usize, usize) {
        let nodes: Vec<NodeId> = loads(p).into_keys().collect();
        let index = |n: &NodeId| nodes.binary_search(n).unwrap();
        let shards: Vec<&Vec<NodeId>> = p.values().filter(|r| !r.is_empty()).collect();
        let by_shard: Vec<Vec<usize>> = shards
            .iter()
            .map(|r| r.iter().map(index).collect())
            .collect();
        let max = (0..=shards.len())
            .find(|&l| b_matching(&by_shard, &vec![l; nodes.len()]) == shards.len())
            .unwrap();
        // Node j needs `m` shards of its own: left = m copies of each node, right = shards.
        let mut by_node_copy: Vec<Vec<usize>> = Vec::new();
        let mut min = 0;
        for m in 1..=shards.len() {
            by_node_copy.clear();
            for node in &nodes {
                let own: Vec<usize> = (0..shards.len())
                    .filter(|&s| shards[s].contains(node))
                    .collect();
                for _ in 0..m {
                    by_node_copy.push(own.clone());
                }
            }
            if b_matching(&by_node_copy, &vec![1; shards.len()]) < m * nodes.len() {
                break;
            }
            min = m;
        }
        (max, min)
    }

    /// Checks the invariants every placement must satisfy.
    fn check_placement(
        p: &Placement,
        shards: &BTreeSet<ShardId>,
        nodes: &BTreeSet<NodeId>,
        rf: usize,
        eps: f64,
    ) -> Result<(), TestCaseError> {
        let r = rf.min(nodes.len());
        prop_assert_eq!(p.keys().copied().collect::<BTreeSet<_>>(), shards.clone());
        for (shard, replicas) in p {
            prop_assert_eq!(replicas.len(), r, "shard {}", shard);
            let distinct: BTreeSet<NodeId> = replicas.iter().copied().collect();
            prop_assert_eq!(distinct.len(), r, "shard {} has a node twice", shard);
            prop_assert!(distinct.is_subset(nodes), "shard {} on a stranger", shard);
        }
        let cap = load_cap(shards.len(), nodes.len(), rf, eps);
        for (node, held) in loads(p) {
            prop_assert!(held <= cap, "node {} holds {} > cap {}", node, held, cap);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Examples
    // -----------------------------------------------------------------------------------------

    /// Placement is part of the cluster's persistent behaviour: it must never change.
    #[test]
    fn placement_is_stable_across_versions() {
        let p = place(&[0, 1, 2, 3, 4, 5], &[1, 2, 3, 4, 5], 3, DEFAULT_EPSILON);
        let expected: Placement = [
            (0, vec![5, 2, 4]),
            (1, vec![4, 3, 1]),
            (2, vec![4, 3, 2]),
            (3, vec![2, 3, 4]),
            (4, vec![3, 2, 5]),
            (5, vec![5, 3, 4]),
        ]
        .into_iter()
        .collect();
        assert_eq!(p, expected);
        let expected_leaders = [(0, 5), (1, 1), (2, 4), (3, 2), (4, 3), (5, 5)];
        assert_eq!(leaders(&p), expected_leaders.into_iter().collect());
    }

    #[test]
    fn load_cap_follows_the_formula() {
        assert_eq!(load_cap(64, 12, 3, DEFAULT_EPSILON), 20); // average 16
        assert_eq!(load_cap(10, 4, 2, DEFAULT_EPSILON), 7); // average 5, 6.25 rounds up
        assert_eq!(load_cap(10, 4, 2, 0.0), 5);
        assert_eq!(load_cap(10, 4, 2, -1.0), 5);
        assert_eq!(load_cap(10, 4, 2, f64::NAN), 5);
        assert_eq!(load_cap(10, 4, 2, f64::INFINITY), 10);
        assert_eq!(load_cap(10, 2, 3, DEFAULT_EPSILON), 10); // rf capped at N: every node, all
        assert_eq!(load_cap(10, 0, 3, DEFAULT_EPSILON), 0);
        assert_eq!(load_cap(0, 5, 3, DEFAULT_EPSILON), 0);
    }

    #[test]
    fn without_nodes_shards_have_no_replicas_and_no_leader() {
        let p = place(&[3, 1, 2], &[], 3, DEFAULT_EPSILON);
        assert_eq!(
            p,
            [(1, vec![]), (2, vec![]), (3, vec![])]
                .into_iter()
                .collect()
        );
        assert!(leaders(&p).is_empty());
        assert!(place(&[], &[1, 2], 3, DEFAULT_EPSILON).is_empty());
    }

    #[test]
    fn fewer_nodes_than_rf_puts_every_shard_on_every_node() {
        let p = place(&[0, 1, 2, 3], &[9, 8], 3, DEFAULT_EPSILON);
        for replicas in p.values() {
            assert_eq!(sorted_distinct(replicas), vec![8, 9]);
        }
    }

    #[test]
    fn rf_zero_places_nothing() {
        let p = place(&[0, 1], &[1, 2, 3], 0, DEFAULT_EPSILON);
        assert!(p.values().all(Vec::is_empty));
    }

    /// The guard: over small clusters, find placements where the plain rule gets stuck and
    /// check `place` still gives every shard its replicas within the cap.
    #[test]
    fn guard_rescues_placements_the_plain_rule_strands() {
        let mut stuck = 0;
        for s in 1..=12u32 {
            for n in 3..=7u64 {
                for offset in 0..40u32 {
                    for eps in [0.0, DEFAULT_EPSILON] {
                        let shards: Vec<ShardId> = (offset * 100..offset * 100 + s).collect();
                        let nodes: Vec<NodeId> = (1..=n).collect();
                        if plain_place(&shards, &nodes, 3, eps).is_none() {
                            stuck += 1;
                            let p = place(&shards, &nodes, 3, eps);
                            let shard_set = shards.iter().copied().collect();
                            let node_set = nodes.iter().copied().collect();
                            check_placement(&p, &shard_set, &node_set, 3, eps).unwrap();
                        }
                    }
                }
            }
        }
        assert!(stuck > 0, "the sweep should contain stuck cases");
    }

    /// A typical cluster: 64 shards, 12 nodes, rf 3.
    #[test]
    fn a_typical_cluster_is_balanced() {
        let shards: Vec<ShardId> = (0..64).collect();
        let nodes: Vec<NodeId> = (1..=12).collect();
        let p = place(&shards, &nodes, 3, DEFAULT_EPSILON);
        let held = loads(&p);
        assert_eq!(held.values().sum::<usize>(), 192);
        assert!(held.values().all(|&h| h <= 20));
        let mut led: BTreeMap<NodeId, usize> = BTreeMap::new();
        for node in leaders(&p).values() {
            *led.entry(*node).or_default() += 1;
        }
        assert_eq!(led.len(), 12);
        assert!(led.values().all(|&l| l == 5 || l == 6), "{led:?}");
    }

    // -----------------------------------------------------------------------------------------
    // Properties
    // -----------------------------------------------------------------------------------------

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Same sets, any order or duplication, same placement; and every placement has
        /// `min(rf, N)` distinct replicas per shard, all from `nodes`, none above the cap.
        #[test]
        fn placement_is_deterministic_and_valid(
            shards in shard_sets(),
            nodes in node_sets(12),
            rf in 1usize..=3,
            eps in epsilons(),
        ) {
            let p = place(&vec_of(&shards), &vec_of(&nodes), rf, eps);
            let mut shards_mixed: Vec<ShardId> = shards.iter().rev().copied().collect();
            shards_mixed.extend(shards.iter().step_by(2));
            let mut nodes_mixed: Vec<NodeId> = nodes.iter().rev().copied().collect();
            nodes_mixed.extend(nodes.iter().step_by(2));
            prop_assert_eq!(&place(&shards_mixed, &nodes_mixed, rf, eps), &p);
            check_placement(&p, &shards, &nodes, rf, eps)?;
        }

        /// Whenever the plain bounded-load rule does not get stuck, `place` is exactly it.
        #[test]
        fn placement_is_the_plain_rule_unless_it_gets_stuck(
            shards in shard_sets(),
            nodes in node_sets(12),
            rf in 1usize..=3,
            eps in epsilons(),
        ) {
            let (shards, nodes) = (vec_of(&shards), vec_of(&nodes));
            if let Some(plain) = plain_place(&shards, &nodes, rf, eps) {
                prop_assert_eq!(place(&shards, &nodes, rf, eps), plain);
            }
        }

        /// A node joining changes only shards that rank it top-r or are displaced before or
        /// after, and O(rf·S/N) of them (measured factor, see the module documentation).
        #[test]
        fn a_joining_node_changes_few_shards(
            shards in shard_sets(),
            nodes in node_sets(12),
            rf in 1usize..=3,
        ) {
            prop_assume!(nodes.len() >= 2);
            let (shards, all) = (vec_of(&shards), vec_of(&nodes));
            // The joining node: an arbitrary one of the set, not always the largest id.
            let joiner = all[shards[0] as usize % all.len()];
            let before_nodes: Vec<NodeId> = all.iter().copied().filter(|&n| n != joiner).collect();
            let before = place(&shards, &before_nodes, rf, DEFAULT_EPSILON);
            let after = place(&shards, &all, rf, DEFAULT_EPSILON);
            let changed = changed(&before, &after);

            let ranks_it: BTreeSet<ShardId> = shards
                .iter()
                .copied()
                .filter(|&s| top(s, &all, rf).contains(&joiner))
                .collect();
            let mut explained = ranks_it;
            explained.extend(displaced(&before, &before_nodes, rf));
            explained.extend(displaced(&after, &all, rf));
            prop_assert!(changed.is_subset(&explained));

            let bound = cascade_factor(rf) * strict_bound(shards.len(), all.len(), rf);
            prop_assert!(changed.len() <= bound, "{} changed > {}", changed.len(), bound);
            let cap = load_cap(shards.len(), all.len(), rf, DEFAULT_EPSILON);
            prop_assert!(loads(&after).get(&joiner).copied().unwrap_or(0) <= cap);
        }

        /// A node leaving changes every shard it held, plus only shards displaced before or
        /// after, and O(rf·S/N) shards in all.
        #[test]
        fn a_leaving_node_changes_its_shards_and_few_others(
            shards in shard_sets(),
            nodes in node_sets(12),
            rf in 1usize..=3,
        ) {
            prop_assume!(nodes.len() >= 2);
            let (shards, all) = (vec_of(&shards), vec_of(&nodes));
            let leaver = all[shards[shards.len() - 1] as usize % all.len()];
            let rest: Vec<NodeId> = all.iter().copied().filter(|&n| n != leaver).collect();
            let before = place(&shards, &all, rf, DEFAULT_EPSILON);
            let after = place(&shards, &rest, rf, DEFAULT_EPSILON);
            let changed = changed(&before, &after);

            let held: BTreeSet<ShardId> = before
                .iter()
                .filter(|(_, r)| r.contains(&leaver))
                .map(|(&s, _)| s)
                .collect();
            prop_assert!(held.is_subset(&changed), "a shard kept a replica on the leaver");
            prop_assert!(after.values().all(|r| !r.contains(&leaver)));
            let mut explained = held;
            explained.extend(displaced(&before, &all, rf));
            explained.extend(displaced(&after, &rest, rf));
            prop_assert!(changed.is_subset(&explained));

            let bound = cascade_factor(rf) * strict_bound(shards.len(), all.len(), rf);
            prop_assert!(changed.len() <= bound, "{} changed > {}", changed.len(), bound);
        }

        /// Applying the moves to the old replica sets gives the new ones; nothing else is listed.
        #[test]
        fn moves_turn_the_old_placement_into_the_new(
            shards_a in shard_sets(),
            shards_b in shard_sets(),
            nodes_a in node_sets(8),
            nodes_b in node_sets(8),
            rf in 1usize..=3,
        ) {
            let old = place(&vec_of(&shards_a), &vec_of(&nodes_a), rf, DEFAULT_EPSILON);
            let new = place(&vec_of(&shards_b), &vec_of(&nodes_b), rf, DEFAULT_EPSILON);
            prop_assert!(moves(&old, &old).is_empty());
            let forward = moves(&old, &new);
            let shards_listed: Vec<ShardId> = forward.iter().map(|m| m.shard).collect();
            prop_assert!(shards_listed.windows(2).all(|w| w[0] < w[1]));

            let set = |p: &Placement, s: ShardId| -> BTreeSet<NodeId> {
                p.get(&s).map(|r| r.iter().copied().collect()).unwrap_or_default()
            };
            let every: BTreeSet<ShardId> = old.keys().chain(new.keys()).copied().collect();
            for s in every {
                let mut now = set(&old, s);
                if let Some(m) = forward.iter().find(|m| m.shard == s) {
                    prop_assert!(!m.add.is_empty() || !m.remove.is_empty());
                    for n in &m.remove {
                        prop_assert!(now.remove(n));
                    }
                    for n in &m.add {
                        prop_assert!(now.insert(*n));
                    }
                }
                prop_assert_eq!(now, set(&new, s), "shard {}", s);
            }
            let backward = moves(&new, &old);
            prop_assert_eq!(backward.len(), forward.len());
            for (f, b) in forward.iter().zip(&backward) {
                prop_assert_eq!(f.shard, b.shard);
                prop_assert_eq!(sorted_distinct(&f.add), sorted_distinct(&b.remove));
                prop_assert_eq!(sorted_distinct(&f.remove), sorted_distinct(&b.add));
            }
        }

        /// Every shard is led by one of its replicas, and the spread of leaderships is the best
        /// any choice of leaders could achieve (max-flow check); so it is at most 1 whenever
        /// that is achievable at all.
        #[test]
        fn leaders_are_replicas_and_optimally_balanced(
            shards in shard_sets(),
            nodes in node_sets(12),
            rf in 1usize..=3,
        ) {
            let p = place(&vec_of(&shards), &vec_of(&nodes), rf, DEFAULT_EPSILON);
            let chosen = leaders(&p);
            prop_assert_eq!(&leaders(&p), &chosen);
            prop_assert_eq!(chosen.len(), p.len());
            for (shard, node) in &chosen {
                prop_assert!(p[shard].contains(node));
            }
            let mut led: BTreeMap<NodeId, usize> = loads(&p).keys().map(|&n| (n, 0)).collect();
            for node in chosen.values() {
                *led.get_mut(node).unwrap() += 1;
            }
            let max = *led.values().max().unwrap();
            let min = *led.values().min().unwrap();
            prop_assert_eq!((max, min), optimal_leader_bounds(&p));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Measurement (the numbers in the module documentation)
    // -----------------------------------------------------------------------------------------

    /// `TRIALS=100 cargo test -p shoal-server --lib cluster::placement::tests::measure --
    /// --ignored --nocapture`: for S 1..=64, N 1..=12 → N+1, rf 1..=3, `TRIALS` random id sets
    /// each, prints how often the plain rule got stuck, changed shards against the strict bound,
    /// what shards not on a leaving node lost, and the spread of leaderships.
    #[test]
    #[ignore]
    fn measure() {
        let trials: usize = std::env::var("TRIALS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(4);
        let mut seed = 99u64;
        let mut next = move || {
            seed += 1;
            mix64(seed)
        };
        let mut stuck = 0;
        for rf in 1..=3usize {
            let (mut cases, mut above, mut worst) = (0usize, 0usize, 0f64);
            let mut lost = [0usize; 4];
            let mut spread: BTreeMap<usize, usize> = BTreeMap::new();
            for s in 1..=64usize {
                for n in 1..=12usize {
                    for _ in 0..trials {
                        let mut shards = BTreeSet::new();
                        while shards.len() < s {
                            shards.insert(next() as ShardId);
                        }
                        let mut nodes = BTreeSet::new();
                        while nodes.len() < n + 1 {
                            nodes.insert(next());
                        }
                        let (shards, all) = (vec_of(&shards), vec_of(&nodes));
                        let small = place(&shards, &all[..n], rf, DEFAULT_EPSILON);
                        let big = place(&shards, &all, rf, DEFAULT_EPSILON);
                        stuck +=
                            usize::from(plain_place(&shards, &all, rf, DEFAULT_EPSILON).is_none());
                        let c = changed(&small, &big).len();
                        let strict = strict_bound(s, n + 1, rf);
                        cases += 1;
                        above += usize::from(c > strict);
                        worst = worst.max(c as f64 / strict as f64);
                        // big → small is all[n] leaving.
                        for (shard, old) in &big {
                            if !old.contains(&all[n]) {
                                let kept = old.iter().filter(|x| small[shard].contains(x)).count();
                                lost[old.len() - kept] += 1;
                            }
                        }
                        let mut led: BTreeMap<NodeId, usize> =
                            loads(&big).keys().map(|&n| (n, 0)).collect();
                        for node in leaders(&big).values() {
                            *led.get_mut(node).unwrap() += 1;
                        }
                        let d = led.values().max().unwrap() - led.values().min().unwrap();
                        *spread.entry(d).or_default() += 1;
                    }
                }
            }
            println!(
                "rf {rf}: {cases} joins, {above} above the strict bound, worst changed/strict \
                 {worst:.2}; shards not on the leaver that lost 0/1/2/3 replicas: {lost:?}; \
                 leader spread -> cases: {spread:?}"
            );
        }
        println!("plain rule stuck in {stuck} placements");
    }
}
