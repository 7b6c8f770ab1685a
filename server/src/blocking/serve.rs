//! One blocked client on the shard's leader: pop at once if a key is ready, else wait in the
//! replica's [`Waiters`](super::Waiters) until woken, the timeout, or the end of this node's
//! leadership (`-UNBLOCKED`, or `MOVED` for a cluster client: never a hang).

use std::sync::Arc;
use std::time::Instant;

use shoal_protocol::Frame;

use super::{is_nothing, unblocked_by_failover, Call};
use crate::node::Node;
use crate::raft::types::NodeId;
use crate::shard::{NotServed, Replica};
use crate::store::{Proposal, WriteOp};

pub enum Outcome {
    Reply(Frame),
    /// Not the leader when it began: nothing was proposed; run it where the leader is.
    NotLeader(Option<NodeId>),
    /// This node stopped leading while the client waited, with no pop in flight: nothing was
    /// taken. A cluster client is sent to the new leader (`MOVED`, as Redis Cluster redirects
    /// a client blocked on a slot its node no longer serves); any other gets
    /// [`unblocked_by_failover`], Redis's reply when a master turns replica.
    LeadershipLost,
}

/// Serves `call` on `replica`, which led its group when the request arrived.
pub async fn serve(node: &Node, replica: Arc<Replica>, call: Call) -> Outcome {
    let deadline = call.timeout.and_then(|t| Instant::now().checked_add(t));
    // Registered before looking at the keys, so a push applied in between wakes it.
    let registration = replica.waiters.register(&call.keys, call.kind);
    let mut attempt = registration.any_key_exists(&call.keys);
    let mut first = true;
    loop {
        if attempt {
            registration.popping();
            let proposal = Proposal {
                now_ms: node.clock.wall_ms(Instant::now()),
                op: WriteOp::Data {
                    args: call.pop.clone(),
                },
            };
            let reply = match replica.submit(proposal).await {
                Ok(ticket) => ticket.reply().await,
                Err(e) => Err(e),
            };
            match reply {
                Ok(reply) if is_nothing(&reply) => registration.missed(),
                Ok(reply) => return Outcome::Reply(call.shape.apply(reply)),
                Err(NotServed::NotLeader(leader)) if first => return Outcome::NotLeader(leader),
                Err(NotServed::NotLeader(_)) => return Outcome::Reply(unblocked_by_failover()),
                Err(e) => return Outcome::Reply(crate::pipeline::not_served(e)),
            }
        }
        first = false;
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = registration.woken() => attempt = true,
            _ = timeout => return Outcome::Reply(call.timed_out()),
            _ = leadership_lost(&replica) => return Outcome::LeadershipLost,
        }
    }
}

/// Resolves once this replica no longer leads its group (stepped down, removed, stopped).
async fn leadership_lost(replica: &Replica) {
    use openraft::async_runtime::WatchReceiver;
    let mut metrics = replica.raft.metrics();
    loop {
        let leads = {
            let m = metrics.borrow_watched();
            let leads = m.state.is_leader() && m.current_leader == Some(m.id);
            if !leads {
                tracing::debug!(
                    group = replica.group,
                    state = ?m.state,
                    leader = ?m.current_leader,
                    term = m.current_term,
                    "leadership lost: unblocking waiting clients"
                );
            }
            leads
        };
        if !leads || metrics.changed().await.is_err() {
            return;
        }
    }
}
