//! Accepts client connections, enforcing `maxclients`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::node::Node;

pub async fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = node.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (mut stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Running out of file descriptors must not end the server: wait and go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        node.stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let laddr = stream.local_addr().unwrap_or(addr);
        let max = node.config.read().maxclients;
        match node.clients.register(addr, laddr, max) {
            Some(handle) => {
                tokio::spawn(super::connection::serve(node.clone(), stream, handle));
            }
            None => {
                node.stats
                    .rejected_connections
                    .fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = stream
                        .write_all(b"-ERR max number of clients reached\r\n")
                        .await;
                });
            }
        }
    }
}
