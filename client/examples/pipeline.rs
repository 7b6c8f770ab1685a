//! Send many commands at once: the pipeline groups them per node (one write per node) and
//! returns the results in the order they were added.
//!
//! ```text
//! scripts/cluster.sh up
//! cargo run -p shoal-client --example pipeline
//! ```

use shoal_client::{Client, Frame};

#[tokio::main]
async fn main() -> Result<(), shoal_client::Error> {
    let seeds = std::env::var("SHOAL_SEEDS")
        .unwrap_or_else(|_| "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".to_owned());
    let client = Client::connect(seeds.split(',')).await?;

    let mut pipe = client.pipeline();
    for i in 0..100 {
        pipe.set(format!("user:{i}:name"), format!("user-{i}"))
            .incr("users:count")
            .expire(format!("user:{i}:name"), 3600);
    }
    pipe.get("user:7:name").cmd(["STRLEN", "user:7:name"]);
    let results = pipe.execute().await;

    let errors = results.iter().filter(|r| r.is_err()).count();
    println!("{} commands, {errors} errors", results.len());
    // The last two results belong to the last two commands added.
    if let [.., get, strlen] = results.as_slice() {
        println!("GET user:7:name -> {get:?}");
        println!("STRLEN user:7:name -> {strlen:?}");
    }
    // Each command's result sits at its own position, whichever node ran it.
    if let Some(Ok(Frame::Integer(n))) = results.get(1) {
        println!("the first INCR of users:count returned {n}");
    }
    println!("counters: {:?}", client.stats());
    Ok(())
}
