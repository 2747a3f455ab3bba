//! Two nodes join one swarm; one adds a blob, the other fetches it by its hash, verified piece by
//! piece, and prints its progress.
//!
//! `cargo run -p mesh --example blobs`

use mesh::{DiscoveryKey, Keypair, Node, topology::FullyConnected};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await?;
    let topic = DiscoveryKey::from_party(&Keypair::generate().public());
    let (sharer, fetcher) = (
        Node::builder().signal([server.url()]).spawn().await?,
        Node::builder().signal([server.url()]).spawn().await?,
    );
    let (shared, fetching) =
        (sharer.join(topic, FullyConnected).await?, fetcher.join(topic, FullyConnected).await?);

    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let hash = shared.blobs().add(data);
    println!("shared {} bytes as {hash}", 32 << 20);

    let fetch = fetching.blobs().start_fetch(hash);
    let mut progress = fetch.progress();
    let report = tokio::spawn(async move {
        while progress.changed().await.is_ok() {
            let (held, all) = *progress.borrow();
            if let Some(percent) = (held * 100).checked_div(all) {
                println!("fetched {percent:>3}%");
            }
        }
    });
    let blob = fetch.finished().await?;
    println!("got {} bytes, hash {}", blob.len(), blob.hash());
    report.abort();
    Ok(())
}
