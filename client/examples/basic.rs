//! Connect to the local cluster, then set, get and expire a key.
//!
//! ```text
//! scripts/cluster.sh up
//! cargo run -p shoal-client --example basic
//! ```
//! `SHOAL_SEEDS=host:port,host:port` points it at another cluster (default: the one
//! `scripts/cluster.sh up` starts on 127.0.0.1:7001-7003).

use shoal_client::{Client, SetOptions, Ttl};

#[tokio::main]
async fn main() -> Result<(), shoal_client::Error> {
    let seeds = std::env::var("SHOAL_SEEDS")
        .unwrap_or_else(|_| "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".to_owned());
    let client = Client::connect(seeds.split(',')).await?;

    client.set("greeting", "hello").await?;
    let value = client.get("greeting").await?;
    println!("GET greeting -> {value:?}");

    client.expire("greeting", 60).await?;
    match client.ttl("greeting").await? {
        Ttl::Expires(seconds) => println!("greeting expires in {seconds} s"),
        other => println!("greeting: {other:?}"),
    }

    // SET with options: only if absent, expiring in 1.5 s.
    let outcome = client
        .set_with("session:42", "token", SetOptions::new().px(1500).nx())
        .await?;
    println!("SET session:42 PX 1500 NX -> {outcome:?}");

    let visits = client.incr("visits").await?;
    println!("INCR visits -> {visits}");
    println!("counters: {:?}", client.stats());
    Ok(())
}
