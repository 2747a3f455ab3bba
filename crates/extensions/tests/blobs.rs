//! Blob sync between Teleport connections: along a chain of three, across a link cut in the
//! middle of a transfer and restored, and 100 MiB along a chain of three over TCP whose second
//! link is cut mid-way and restored, with every piece received once.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mesh_extensions::blobs::{Blobs, EXTENSION};
use mesh_keys::PublicKey;
use mesh_teleport::{Params, Teleport};
use tokio::net::{TcpListener, TcpStream};

const PATIENCE: Duration = Duration::from_secs(60);

fn content(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ salt).collect()
}

/// Connects two stores over an in-memory pipe; the link lives as long as the Teleports.
fn link(a: &Blobs, b: &Blobs) -> [Teleport; 2] {
    let (a_key, b_key) = (PublicKey::random(), PublicKey::random());
    let (a_io, b_io) = tokio::io::duplex(64 << 10);
    let a_end = Teleport::new(a_io, Params::new(true, a_key, b_key));
    let b_end = Teleport::new(b_io, Params::new(false, b_key, a_key));
    a_end.add_extension(EXTENSION, a.extension()).unwrap();
    b_end.add_extension(EXTENSION, b.extension()).unwrap();
    [a_end, b_end]
}

#[tokio::test]
async fn a_blob_travels_a_chain_of_three_verified() {
    let (a, b, c) = (Blobs::default(), Blobs::default(), Blobs::default());
    let _ab = link(&a, &b);
    let _bc = link(&b, &c);
    let data = content(8 << 20, 1);
    let hash = a.add(data.clone());
    // The far end asks first; the middle peer fetches too, and once it holds the blob it serves it.
    let far = tokio::spawn({
        let c = c.clone();
        async move { c.fetch(hash).await }
    });
    let middle = tokio::time::timeout(PATIENCE, b.fetch(hash)).await.unwrap().unwrap();
    let far = tokio::time::timeout(PATIENCE, far).await.unwrap().unwrap().unwrap();
    assert_eq!(middle.data(), &data[..]);
    assert_eq!(far.data(), &data[..]);
    assert_eq!(c.stats().received, data.len() as u64, "every piece reached the far end once");
    assert_eq!(c.stats().invalid, 0);
}

#[tokio::test]
async fn a_transfer_cut_midway_resumes_and_fetches_no_piece_twice() {
    let (a, b) = (Blobs::default(), Blobs::default());
    let data = content(16 << 20, 2);
    let hash = a.add(data.clone());
    let first = link(&a, &b);
    let fetch = b.start_fetch(hash);
    let mut progress = fetch.progress();
    // Cut the link once a quarter arrived.
    tokio::time::timeout(PATIENCE, progress.wait_for(|(held, all)| *all > 0 && held * 4 >= *all))
        .await
        .unwrap()
        .unwrap();
    let (held_at_cut, all) = *progress.borrow();
    assert!(held_at_cut < all, "the cut came before the end");
    for end in &first {
        end.close().await;
    }
    drop(first);
    // The link comes back; the fetch carries on from what is missing.
    let _second = link(&a, &b);
    let blob = tokio::time::timeout(PATIENCE, fetch.finished()).await.unwrap().unwrap();
    assert_eq!(blob.data(), &data[..]);
    assert_eq!(b.stats().received, data.len() as u64, "no piece was fetched twice");
}

/// Connects two stores over a TCP connection on loopback.
async fn tcp_link(a: &Blobs, b: &Blobs) -> [Teleport; 2] {
    let (a_key, b_key) = (PublicKey::random(), PublicKey::random());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let a_end = Teleport::new(dialled.unwrap(), Params::new(true, a_key, b_key));
    let b_end = Teleport::new(accepted.unwrap().0, Params::new(false, b_key, a_key));
    a_end.add_extension(EXTENSION, a.extension()).unwrap();
    b_end.add_extension(EXTENSION, b.extension()).unwrap();
    [a_end, b_end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_mebibytes_cross_a_tcp_chain_whose_second_link_is_cut_and_restored() {
    let (a, b, c) = (Blobs::default(), Blobs::default(), Blobs::default());
    let _ab = tcp_link(&a, &b).await;
    let bc = tcp_link(&b, &c).await;
    let data = content(100 << 20, 3);
    let hash = a.add(data.clone());
    let far = c.start_fetch(hash);
    let mut progress = far.progress();
    let middle = tokio::time::timeout(PATIENCE, b.fetch(hash)).await.unwrap().unwrap();
    assert_eq!(middle.data(), &data[..]);

    // The far end fetches from the middle peer; its link is cut a third of the way.
    tokio::time::timeout(PATIENCE, progress.wait_for(|(held, all)| *all > 0 && held * 3 >= *all))
        .await
        .unwrap()
        .unwrap();
    assert!(!far_done(&c, &hash), "the cut came before the end");
    for end in &bc {
        end.close().await;
    }
    drop(bc);
    let _restored = tcp_link(&b, &c).await;
    let blob = tokio::time::timeout(PATIENCE, far.finished()).await.unwrap().unwrap();
    assert_eq!(blob.hash(), hash);
    assert_eq!(blob.data(), &data[..]);
    assert_eq!(c.stats().received, data.len() as u64, "no piece reached the far end twice");
}

fn far_done(blobs: &Blobs, hash: &mesh_extensions::blobs::BlobHash) -> bool {
    blobs.get(hash).is_some()
}
