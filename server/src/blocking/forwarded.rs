//! Forwarded waits that their client abandoned.
//!
//! A blocking command forwarded to a shard's leader waits there, possibly for long. When its
//! client leaves (or is unblocked) on the forwarding node, that node sends
//! `PeerRequest::CancelWait` for the wait's id, so the leader drops the waiter instead of
//! popping an element for nobody later. Ids are the forwarding node's id and a number it
//! never reuses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::raft::types::NodeId;
use crate::rpc::PeerRequest;

/// A forwarded wait: the forwarding node and its number there.
pub type WaitId = (NodeId, u64);

/// How long the forwarding node tries to deliver a cancellation.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// The leader's side: forwarded waits in progress, by id, each with the token that ends it.
#[derive(Default)]
pub struct ForwardedWaits {
    waits: DashMap<WaitId, CancellationToken>,
    next: AtomicU64,
}

impl ForwardedWaits {
    /// A new id for a wait this node forwards.
    pub fn next_id(&self, this_node: NodeId) -> WaitId {
        (this_node, self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Registers a wait that arrived; its token is already cancelled if the cancellation
    /// overtook the request. Unregistered when the guard drops.
    pub fn register(&self, id: WaitId) -> Registered<'_> {
        let token = self.waits.entry(id).or_default().clone();
        Registered {
            waits: self,
            id,
            token,
        }
    }

    /// Ends the wait `id` (or, if it has not arrived yet, the wait that will).
    pub fn cancel(&self, id: WaitId) {
        self.waits.entry(id).or_default().cancel();
    }
}

pub struct Registered<'a> {
    waits: &'a ForwardedWaits,
    id: WaitId,
    pub token: CancellationToken,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.waits.waits.remove(&self.id);
    }
}

/// The forwarding node's side: sends `CancelWait` for `id` to `leader` when dropped armed
/// (the client's wait was abandoned before its reply came).
pub struct CancelOnDrop {
    pub node: Arc<Node>,
    pub leader: NodeId,
    pub id: WaitId,
    pub armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (node, leader, id) = (self.node.clone(), self.leader, self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let request = PeerRequest::CancelWait {
                    origin: id.0,
                    wait: id.1,
                };
                if let Err(e) = node.call_peer(leader, request, CANCEL_TIMEOUT).await {
                    tracing::info!(leader, error = %e, "could not cancel a forwarded wait");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancellation_that_overtakes_its_wait_still_ends_it() {
        let waits = ForwardedWaits::default();
        waits.cancel((2, 7));
        let registered = waits.register((2, 7));
        assert!(registered.token.is_cancelled());
        drop(registered);
        assert!(waits.waits.is_empty());
        let registered = waits.register((2, 8));
        assert!(!registered.token.is_cancelled());
        waits.cancel((2, 8));
        assert!(registered.token.is_cancelled());
    }
}
