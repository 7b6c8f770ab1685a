//! The client against a real 3-node shoal cluster (8 shards, each replicated on all 3 nodes).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{all_slots_at, name, runtime, scripted_server, shared_cluster};
use shoal_client::{
    key_slot, Client, Cmd, Error, Frame, ServerErrorKind, SetOptions, SetOutcome, Ttl,
};

const FLAGS: &[&str] = &["--shards", "8", "--replicas", "3", "--appendfsync", "no"];

fn b(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn typed_string_methods_match_redis() {
    let cluster = shared_cluster(FLAGS);
    runtime().block_on(async {
        let c = Client::connect(cluster.addrs()).await.expect("connect");
        assert!(c.is_cluster());
        c.ping().await.expect("ping");

        c.set("t:s", "v1").await.unwrap();
        assert_eq!(c.get("t:s").await.unwrap(), b("v1"));
        assert_eq!(c.get("t:missing").await.unwrap(), None);
        assert_eq!(c.getset("t:s", "v2").await.unwrap(), b("v1"));
        assert_eq!(c.append("t:s", "xy").await.unwrap(), 4);
        assert_eq!(c.strlen("t:s").await.unwrap(), 4);
        assert_eq!(c.getrange("t:s", 1, -2).await.unwrap(), Bytes::from("2x"));
        assert_eq!(c.setrange("t:s", 1, "Z").await.unwrap(), 4);
        assert_eq!(c.get("t:s").await.unwrap(), b("vZxy"));
        assert_eq!(c.getdel("t:s").await.unwrap(), b("vZxy"));
        assert_eq!(c.get("t:s").await.unwrap(), None);
        assert!(c.setnx("t:nx", "1").await.unwrap());
        assert!(!c.setnx("t:nx", "2").await.unwrap());

        assert_eq!(c.incr("t:n").await.unwrap(), 1);
        assert_eq!(c.incr_by("t:n", 10).await.unwrap(), 11);
        assert_eq!(c.decr("t:n").await.unwrap(), 10);
        assert_eq!(c.decr_by("t:n", 4).await.unwrap(), 6);
        assert_eq!(c.incr_by_float("t:n", 0.5).await.unwrap(), 6.5);
        assert_eq!(c.key_type("t:n").await.unwrap(), "string");
        assert_eq!(c.key_type("t:missing").await.unwrap(), "none");

        // Server errors keep their kind, distinct from I/O errors.
        c.set("t:word", "abc").await.unwrap();
        match c.incr("t:word").await {
            Err(e @ Error::Server { .. }) => {
                assert_eq!(e.server_kind(), Some(&ServerErrorKind::Err));
                assert!(e.to_string().contains("not an integer"), "{e}");
                assert!(!e.is_io());
            }
            other => panic!("INCR of a word: {other:?}"),
        }
        let e = c.cmd(["GET"]).await.expect_err("GET without a key");
        assert_eq!(e.server_kind(), Some(&ServerErrorKind::Err));
        // Keys of different slots in one generic command are refused before sending.
        assert!(matches!(
            c.cmd(["MGET", "t:a", "t:b"]).await,
            Err(Error::CrossSlot)
        ));
        // The generic command covers everything else; hash tags keep keys together.
        assert_eq!(
            c.cmd(["MSET", "{t}a", "1", "{t}b", "2"]).await.unwrap(),
            Frame::ok()
        );
        c.rename("{t}a", "{t}c").await.unwrap();
        assert_eq!(c.get("{t}c").await.unwrap(), b("1"));
        let v: Vec<Option<Bytes>> = c
            .query(Cmd::new("MGET").arg("{t}b").arg("{t}c"))
            .await
            .unwrap();
        assert_eq!(v, vec![b("2"), b("1")]);
    });
}

#[test]
fn set_options_and_expiry_methods() {
    let cluster = shared_cluster(FLAGS);
    runtime().block_on(async {
        let c = Client::connect(cluster.addrs()).await.expect("connect");
        let set = |k: &'static str, v: &'static str, o: SetOptions| {
            let c = c.clone();
            async move { c.set_with(k, v, o).await.unwrap() }
        };
        c.del(["o:k"]).await.unwrap();
        assert_eq!(
            set("o:k", "1", SetOptions::new().xx()).await,
            SetOutcome::NotWritten
        );
        assert_eq!(
            set("o:k", "1", SetOptions::new().nx()).await,
            SetOutcome::Written
        );
        assert_eq!(
            set("o:k", "2", SetOptions::new().nx()).await,
            SetOutcome::NotWritten
        );
        assert_eq!(
            set("o:k", "3", SetOptions::new().get()).await,
            SetOutcome::Previous(b("1"))
        );
        assert_eq!(
            set("o:new", "x", SetOptions::new().get()).await,
            SetOutcome::Previous(None)
        );

        assert_eq!(c.ttl("o:k").await.unwrap(), Ttl::Persistent);
        assert_eq!(c.ttl("o:none").await.unwrap(), Ttl::NoKey);
        set("o:k", "4", SetOptions::new().ex(100)).await;
        assert!(matches!(c.ttl("o:k").await.unwrap(), Ttl::Expires(s) if (90..=100).contains(&s)));
        set("o:k", "5", SetOptions::new().keep_ttl()).await;
        assert!(matches!(c.ttl("o:k").await.unwrap(), Ttl::Expires(s) if s > 0));
        set("o:k", "6", SetOptions::new().px(50_000).xx()).await;
        assert!(
            matches!(c.pttl("o:k").await.unwrap(), Ttl::Expires(ms) if (40_000..=50_000).contains(&ms))
        );
        assert!(c.persist("o:k").await.unwrap());
        assert_eq!(c.ttl("o:k").await.unwrap(), Ttl::Persistent);
        assert!(c.expire("o:k", 200).await.unwrap());
        assert!(matches!(c.ttl("o:k").await.unwrap(), Ttl::Expires(s) if s > 100));
        assert!(c.pexpire("o:k", 300_000).await.unwrap());
        assert!(!c.expire("o:none", 10).await.unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(c.expireat("o:k", now + 1000).await.unwrap());
        assert!(matches!(c.ttl("o:k").await.unwrap(), Ttl::Expires(s) if s > 900));

        // A short expiry really expires.
        set("o:short", "x", SetOptions::new().px(100)).await;
        let mut gone = false;
        for _ in 0..100 {
            if c.get("o:short").await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "a 100 ms key still exists after 5 s");
    });
}

#[test]
fn ten_thousand_keys_spread_over_all_shards() {
    let cluster = shared_cluster(FLAGS);
    runtime().block_on(async {
        let c = Client::connect(cluster.addrs()).await.expect("connect");
        let keys: Vec<String> = (0..10_000).map(|i| format!("spread:{i}")).collect();
        // Written in one pipeline (grouped per node), read back with a split MGET.
        let mut pipe = c.pipeline();
        for (i, k) in keys.iter().enumerate() {
            pipe.set(k, format!("value-{i}"));
        }
        for (i, r) in pipe.execute().await.into_iter().enumerate() {
            assert_eq!(r.unwrap_or_else(|e| panic!("SET #{i}: {e}")), Frame::ok());
        }
        let values = c.mget(&keys).await.expect("mget");
        for (i, v) in values.iter().enumerate() {
            assert_eq!(
                v.as_deref(),
                Some(format!("value-{i}").as_bytes()),
                "key {i}"
            );
        }
        assert_eq!(c.exists(&keys).await.unwrap(), 10_000);
        // Every shard got keys (node 0 hosts all 8 shards; its replicas may lag a little).
        assert!(common::eventually(Duration::from_secs(20), || {
            let per_shard = cluster.keys_per_shard(0);
            per_shard.len() == 8 && per_shard.values().all(|&n| n > 500)
        }));
        assert_eq!(c.del(&keys).await.unwrap(), 10_000);
        assert_eq!(c.exists(&keys).await.unwrap(), 0);
        // mset is split by slot too.
        c.mset(keys.iter().take(2000).map(|k| (k.as_str(), "m")))
            .await
            .unwrap();
        assert_eq!(c.exists(&keys).await.unwrap(), 2000);
        assert_eq!(c.unlink(&keys).await.unwrap(), 2000);
    });
}

#[test]
fn pipeline_of_a_thousand_mixed_commands_keeps_order() {
    let cluster = shared_cluster(FLAGS);
    runtime().block_on(async {
        let c = Client::connect(cluster.addrs()).await.expect("connect");
        c.del(["p:counter"]).await.unwrap();
        let mut pipe = c.pipeline();
        for i in 0..250 {
            pipe.set(format!("p:{i}"), i.to_string())
                .incr("p:counter")
                .get(format!("p:{i}"))
                .cmd(["STRLEN", &format!("p:{i}")]);
        }
        assert_eq!(pipe.len(), 1000);
        let results = pipe.execute().await;
        assert_eq!(results.len(), 1000);
        for i in 0..250usize {
            let r = &results[i * 4..i * 4 + 4];
            assert_eq!(r[0].as_ref().unwrap(), &Frame::ok(), "SET {i}");
            assert_eq!(
                r[1].as_ref().unwrap(),
                &Frame::Integer(i as i64 + 1),
                "INCR {i}"
            );
            assert_eq!(
                r[2].as_ref().unwrap(),
                &Frame::bulk(i.to_string()),
                "GET {i}"
            );
            assert_eq!(
                r[3].as_ref().unwrap(),
                &Frame::Integer(i.to_string().len() as i64),
                "STRLEN {i}"
            );
        }
        // An error reply takes its place without disturbing the others.
        let mut pipe = c.pipeline();
        pipe.set("p:x", "word").incr("p:x").get("p:x");
        let r = pipe.execute().await;
        assert!(r[0].is_ok());
        assert_eq!(
            r[1].as_ref().unwrap_err().server_kind(),
            Some(&ServerErrorKind::Err)
        );
        assert_eq!(r[2].as_ref().unwrap(), &Frame::bulk("word"));
    });
}

#[test]
fn a_dead_first_seed_is_skipped() {
    let cluster = shared_cluster(FLAGS);
    // A port nothing listens on: bound, then released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    runtime().block_on(async {
        let mut seeds = vec![dead.to_string()];
        seeds.extend(cluster.addrs());
        let c = Client::connect(&seeds)
            .await
            .expect("connect past a dead seed");
        c.set("seed:k", "v").await.unwrap();
        assert_eq!(c.get("seed:k").await.unwrap(), b("v"));
        // Only dead seeds: a clear error, quickly.
        let only_dead = Client::connect([dead.to_string()]).await;
        assert!(
            matches!(only_dead, Err(Error::NoReachableSeed(_))),
            "{:?}",
            only_dead.err()
        );
    });
}

#[test]
fn resp3_and_replica_reads() {
    let cluster = shared_cluster(FLAGS);
    runtime().block_on(async {
        let c = Client::builder(cluster.addrs())
            .resp3(true)
            .read_from_replicas(true)
            .pool_size(2)
            .build()
            .await
            .expect("connect");
        for i in 0..50 {
            c.set(format!("r3:{i}"), "v").await.unwrap();
        }
        // Replica reads may lag; each key becomes visible within a bounded time.
        for i in 0..50 {
            let key = format!("r3:{i}");
            let mut seen = false;
            for _ in 0..250 {
                if c.get(&key).await.unwrap() == b("v") {
                    seen = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(seen, "{key} never became visible");
        }
        assert_eq!(c.incr_by_float("r3:f", 1.25).await.unwrap(), 1.25);
        assert_eq!(c.ttl("r3:0").await.unwrap(), Ttl::Persistent);
        let nodes = c.nodes();
        assert!(nodes.len() >= 2, "reads spread over nodes: {nodes:?}");
    });
}

/// A scripted seed claims every slot and redirects `GET` to a real node with `MOVED`: the
/// client must update its map and get the value from the real cluster.
#[test]
fn moved_redirects_update_the_map() {
    let cluster = shared_cluster(FLAGS);
    runtime().block_on(async {
        let real: std::net::SocketAddr = cluster.addrs()[0].parse().unwrap();
        let setter = Client::connect(cluster.addrs()).await.unwrap();
        setter.set("mv:k", "real").await.unwrap();
        let slot = key_slot(b"mv:k");
        let me = Arc::new(std::sync::OnceLock::new());
        let me2 = me.clone();
        let seed = scripted_server(move |args| {
            Some(match name(args).as_str() {
                "CLUSTER" => all_slots_at(*me2.get().expect("address")),
                _ => Frame::Error(format!("MOVED {slot} {real}")),
            })
        })
        .await;
        me.set(seed).unwrap();
        let c = Client::connect([seed.to_string()]).await.unwrap();
        assert_eq!(c.get("mv:k").await.unwrap(), b("real"));
        assert!(c.stats().moved_redirects >= 1, "{:?}", c.stats());
    });
}

/// `ASK` (shoal never sends it): the client sends `ASKING` and the command to the named node,
/// for that request only.
#[test]
fn ask_redirects_send_asking_once() {
    let cluster = shared_cluster(FLAGS);
    runtime().block_on(async {
        let setter = Client::connect(cluster.addrs()).await.unwrap();
        setter.set("ask:k", "from-ask-target").await.unwrap();
        // The ASK target is a second scripted node that records what it receives and serves
        // GET only after ASKING.
        let asked = Arc::new(AtomicUsize::new(0));
        let asked2 = asked.clone();
        let target = scripted_server(move |args| {
            Some(match name(args).as_str() {
                // The client's connection set-up asks for the topology; any answer will do.
                "CLUSTER" => all_slots_at("127.0.0.1:1".parse().expect("address")),
                "ASKING" => {
                    asked2.fetch_add(1, Ordering::SeqCst);
                    Frame::ok()
                }
                "GET" if asked2.load(Ordering::SeqCst) > 0 => Frame::bulk("from-ask-target"),
                _ => Frame::Error("ERR expected ASKING first".into()),
            })
        })
        .await;
        let me = Arc::new(std::sync::OnceLock::new());
        let me2 = me.clone();
        let slot = key_slot(b"ask:k");
        let seed = scripted_server(move |args| {
            Some(match name(args).as_str() {
                "CLUSTER" => all_slots_at(*me2.get().expect("address")),
                _ => Frame::Error(format!("ASK {slot} {target}")),
            })
        })
        .await;
        me.set(seed).unwrap();
        let c = Client::connect([seed.to_string()]).await.unwrap();
        assert_eq!(c.get("ask:k").await.unwrap(), b("from-ask-target"));
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(c.stats().ask_redirects, 1);
        // ASK does not change the map: the slot still belongs to the seed.
        assert_eq!(c.leader_of_slot(slot), Some(seed.to_string()));
    });
}

/// A single server without `CLUSTER` support (scripted: shoal always speaks CLUSTER).
#[test]
fn a_single_server_without_cluster_support_works() {
    runtime().block_on(async {
        let store = Arc::new(single_server::Store::default());
        let s = store.clone();
        let addr = scripted_server(move |args| Some(s.run(args))).await;
        let c = Client::connect([addr.to_string()]).await.unwrap();
        assert!(!c.is_cluster());
        c.set("a", "1").await.unwrap();
        c.set("b", "2").await.unwrap();
        assert_eq!(c.get("a").await.unwrap(), b("1"));
        // Multi-key commands are not split for a single server.
        assert_eq!(
            c.mget(["a", "b", "c"]).await.unwrap(),
            vec![b("1"), b("2"), None]
        );
        assert_eq!(store.mgets(), 1);
    });
}

/// A node that accepts connections but never answers (hung, or a black hole on the path): the
/// breaker opens after three timeouts, then every request fails at once instead of waiting
/// for its own timeout. (A single server has no other node to retry on.)
#[test]
fn a_hung_node_costs_fast_failures_once_the_breaker_opens() {
    runtime().block_on(async {
        let addr = scripted_server(|args| match name(args).as_str() {
            "CLUSTER" => Some(Frame::Error("ERR unknown command 'CLUSTER'".into())),
            _ => None,
        })
        .await;
        let c = Client::builder([addr.to_string()])
            .response_timeout(Duration::from_secs(1))
            .retry_deadline(Duration::from_secs(10))
            .circuit_breaker(3, Duration::from_secs(30))
            .build()
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let first = c.get("k").await.expect_err("nobody answers");
        assert!(first.is_io(), "{first}");
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "three timeouts come first"
        );
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let e = c.get("k").await.expect_err("breaker open");
            assert!(matches!(e, Error::CircuitOpen { .. }), "{e}");
            // Well under one response timeout, even on a loaded machine.
            assert!(
                started.elapsed() < Duration::from_millis(250),
                "not fast: {:?}",
                started.elapsed()
            );
        }
        assert_eq!(c.stats().breaker_opens, 1);
        assert_eq!(c.nodes()[0].breaker, shoal_client::BreakerState::Open);
    });
}

/// A minimal key-value store for the scripted single server.
mod single_server {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use bytes::Bytes;
    use shoal_client::Frame;

    #[derive(Default)]
    pub struct Store {
        data: Mutex<HashMap<Bytes, Bytes>>,
        mgets: AtomicUsize,
    }

    impl Store {
        pub fn run(&self, args: &[Bytes]) -> Frame {
            let mut data = self.data.lock().unwrap();
            match super::name(args).as_str() {
                "CLUSTER" => Frame::Error("ERR unknown command 'CLUSTER'".into()),
                "SET" if args.len() == 3 => {
                    data.insert(args[1].clone(), args[2].clone());
                    Frame::ok()
                }
                "GET" if args.len() == 2 => Frame::bulk_or_null(data.get(&args[1]).cloned()),
                "MGET" => {
                    self.mgets.fetch_add(1, Ordering::SeqCst);
                    Frame::Array(
                        args[1..]
                            .iter()
                            .map(|k| Frame::bulk_or_null(data.get(k).cloned()))
                            .collect(),
                    )
                }
                _ => Frame::Error("ERR unsupported by the scripted server".into()),
            }
        }

        pub fn mgets(&self) -> usize {
            self.mgets.load(Ordering::SeqCst)
        }
    }
}
