//! Accepts client connections, enforcing protected mode and `maxclients`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use tokio_rustls::TlsAcceptor;

use crate::clients::ClientHandle;
use crate::node::Node;

/// Accepts clients on `listener` until shutdown; with `tls`, each does a TLS handshake first.
pub async fn accept_loop(node: Arc<Node>, listener: TcpListener, tls: Option<TlsAcceptor>) {
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
        if refused_by_protected_mode(&node, addr.ip()) {
            node.stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = stream.write_all(PROTECTED_MODE_DENIED.as_bytes()).await;
            });
            continue;
        }
        let laddr = stream.local_addr().unwrap_or(addr);
        let max = node.config.read().maxclients;
        match node.clients.register(addr, laddr, tls.is_some(), max) {
            Some(handle) => {
                let _ = stream.set_nodelay(true);
                match &tls {
                    None => {
                        tokio::spawn(super::connection::serve(node.clone(), stream, handle));
                    }
                    Some(tls) => {
                        tokio::spawn(serve_tls(node.clone(), tls.clone(), stream, handle));
                    }
                }
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

/// Finishes the TLS handshake (bounded in time), then serves the connection like any other.
async fn serve_tls(
    node: Arc<Node>,
    tls: TlsAcceptor,
    stream: tokio::net::TcpStream,
    handle: Arc<ClientHandle>,
) {
    let id = handle.id;
    match tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => super::connection::serve(node, stream, handle).await,
        Ok(Err(e)) => {
            tracing::info!(client = id, addr = %handle.addr, error = %e, "TLS handshake failed");
            node.clients.unregister(id);
        }
        Err(_) => {
            tracing::info!(client = id, addr = %handle.addr, "TLS handshake timed out");
            node.clients.unregister(id);
        }
    }
}

/// Protected mode refuses a remote client while the `default` user has no password.
fn refused_by_protected_mode(node: &Node, ip: IpAddr) -> bool {
    !ip.to_canonical().is_loopback()
        && node.config.read().protected_mode == "yes"
        && node.default_user_open()
}

/// Redis's reply to a client refused by protected mode, word for word.
const PROTECTED_MODE_DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";
