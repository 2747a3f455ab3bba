//! `mesh peer` end to end: a `mesh signal` process and three `mesh peer --json` processes form a
//! swarm and exchange lines, over TCP and over WebRTC; eight on an MMST swarm gossip lines to
//! peers they have no connection to and see each other online and offline.
#![allow(clippy::unwrap_used)]

mod common;

use tokio::process::Child;

use common::peer::Peer;

async fn three_peers_exchange_lines(transport: &[&str]) {
    let (_server, url) = common::signal_server().await;
    let topic = "ab".repeat(32);

    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(Peer::spawn(&url, &topic, transport).await);
    }
    let keys: Vec<String> = peers.iter().map(|p| p.key.clone()).collect();
    for (index, peer) in peers.iter_mut().enumerate() {
        let others: Vec<String> =
            keys.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, k)| k.clone()).collect();
        peer.wait_connected(&others).await;
    }

    peers[0].say("hello from the first peer").await;
    for peer in &mut peers[1..] {
        let message = peer.wait(|e| e["event"] == "message").await;
        assert_eq!(message["author"], keys[0].as_str());
        assert_eq!(message["payload"], "hello from the first peer");
    }

    // The first peer leaves; the others see it go.
    let first = peers.remove(0);
    first.exit().await;
    for peer in &mut peers {
        peer.wait(|e| e["event"] == "disconnected" && e["peer"] == keys[0].as_str()).await;
    }
    for peer in peers {
        peer.exit().await;
    }
}

#[tokio::test]
async fn three_peers_exchange_lines_over_tcp() {
    // The advertised host is dialled instead of localhost, as a peer on another machine would.
    three_peers_exchange_lines(&["--transport", "tcp", "--advertise-host", "127.0.0.1"]).await;
}

#[tokio::test]
async fn three_peers_exchange_lines_over_webrtc() {
    three_peers_exchange_lines(&["--transport", "webrtc"]).await;
}

/// A peer killed outright sends nothing; over UDP its neighbours learn of it only when ICE
/// gives up (10 s of silence), and then reconnect to nobody.
#[tokio::test]
async fn a_killed_webrtc_peer_is_seen_gone_by_its_neighbour() {
    let (_server, url) = common::signal_server().await;
    let topic = "cd".repeat(32);
    let mut victim = Peer::spawn(&url, &topic, &["--transport", "webrtc"]).await;
    let mut survivor = Peer::spawn(&url, &topic, &["--transport", "webrtc"]).await;
    survivor.wait_connected(std::slice::from_ref(&victim.key)).await;
    victim.wait_connected(std::slice::from_ref(&survivor.key)).await;
    victim.child.kill().await.unwrap();
    let gone = survivor.wait(|e| e["event"] == "disconnected").await;
    assert_eq!(gone["peer"], victim.key.as_str());
    survivor.exit().await;
}

/// A server that requires authentication refuses what an unproven peer opens or sends: the peers
/// prove their keys first, then meet and talk as anywhere else.
#[tokio::test]
async fn peers_prove_their_keys_to_a_server_that_requires_it_and_exchange_lines() {
    let (_server, url) = common::signal_server_with(&["--auth", "required"]).await;
    let topic = "ef".repeat(32);
    let transport = ["--transport", "tcp"];
    let mut first = Peer::spawn(&url, &topic, &transport).await;
    let mut second = Peer::spawn(&url, &topic, &transport).await;
    first.wait_connected(std::slice::from_ref(&second.key)).await;
    second.wait_connected(std::slice::from_ref(&first.key)).await;

    first.say("proven and heard").await;
    let message = second.wait(|e| e["event"] == "message").await;
    assert_eq!(message["author"], first.key.as_str());
    assert_eq!(message["payload"], "proven and heard");
    first.exit().await;
    second.exit().await;
}

/// Sends `signal` (e.g. "STOP") to a child process.
fn send_signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the process runs").to_string();
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A restarted peer's new connection displaces its old one, which closes only afterwards (the old
/// process is frozen, so the old connection's graceful close runs into its timeout). The old
/// connection ending must not take the new one down with it: lines keep flowing both ways.
#[tokio::test]
async fn after_a_displacement_lines_keep_flowing_both_ways() {
    let (_server, url) = common::signal_server().await;
    let topic = "12".repeat(32);
    let transport = ["--transport", "tcp"];
    let dir = std::env::temp_dir().join(format!("mesh-displacement-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("restarted.key");
    let keygen = std::process::Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["keygen", "--force", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let key_arg = ["--key", key_file.to_str().unwrap()];

    let mut stayer = Peer::spawn(&url, &topic, &transport).await;
    let old = Peer::spawn_with(&url, &topic, &transport, &key_arg).await;
    let restarted_key = old.key.clone();
    let first = stayer.wait(|e| e["event"] == "connected" && e["peer"] == restarted_key.as_str()).await;
    let old_session = first["session"].as_str().unwrap().to_owned();

    // The old process freezes (its sockets stay open); the same key comes back as a new process.
    send_signal(&old.child, "STOP");
    let mut restarted = Peer::spawn_with(&url, &topic, &transport, &key_arg).await;
    restarted.wait_connected(std::slice::from_ref(&stayer.key)).await;
    // The new connection comes up and, only once the old one has fully ended, does the defect
    // show. Either may be reported first (the old one's close timeout races the new setup).
    let (mut reconnected, mut old_closed) = (false, false);
    stayer
        .wait(|e| {
            reconnected |= e["event"] == "connected"
                && e["peer"] == restarted_key.as_str()
                && e["session"] != old_session.as_str();
            old_closed |= e["event"] == "closed" && e["session"] == old_session.as_str();
            reconnected && old_closed
        })
        .await;

    for n in 0..10 {
        stayer.say(&format!("to the restarted peer {n}")).await;
        restarted.say(&format!("to the stayer {n}")).await;
    }
    for n in 0..10 {
        let heard = restarted.wait(|e| e["event"] == "message").await;
        assert_eq!(heard["payload"], format!("to the restarted peer {n}"));
        let heard = stayer.wait(|e| e["event"] == "message").await;
        assert_eq!(heard["author"], restarted_key.as_str());
        assert_eq!(heard["payload"], format!("to the stayer {n}"));
    }

    send_signal(&old.child, "KILL");
    drop(old);
    stayer.exit().await;
    restarted.exit().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Others than `index` among `keys`.
fn others(keys: &[String], index: usize) -> Vec<String> {
    keys.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, k)| k.clone()).collect()
}

impl Peer {
    /// Waits until presence reported every one of `peers` online.
    async fn wait_online(&mut self, peers: &[String]) {
        let mut missing: Vec<String> = peers.to_vec();
        while !missing.is_empty() {
            let event = self.wait(|e| e["event"] == "online").await;
            missing.retain(|peer| event["peer"] != peer.as_str());
        }
    }
}

/// On MMST each peer links to a few others only; gossip still takes a line to every peer, once.
#[tokio::test]
async fn on_an_mmst_swarm_of_eight_a_line_reaches_all_other_peers_and_presence_follows() {
    let (_server, url) = common::signal_server().await;
    let topic = "5e".repeat(32);
    let options =
        ["--transport", "tcp", "--topology", "mmst", "--presence-interval", "0.2", "--presence-timeout", "3"];
    let mut peers = Vec::new();
    for _ in 0..8 {
        peers.push(Peer::spawn(&url, &topic, &options).await);
    }
    let keys: Vec<String> = peers.iter().map(|p| p.key.clone()).collect();
    for (index, peer) in peers.iter_mut().enumerate() {
        peer.wait_online(&others(&keys, index)).await;
    }

    peers[3].say("across the swarm").await;
    for (index, peer) in peers.iter_mut().enumerate().filter(|(index, _)| *index != 3) {
        let message = peer.wait(|e| e["event"] == "message").await;
        assert_eq!(message["author"], keys[3].as_str(), "peer {index}");
        assert_eq!(message["payload"], "across the swarm", "peer {index}");
    }

    // A peer killed outright goes offline for everyone: at once for its neighbours, after the
    // presence timeout for the rest.
    let killed = peers.pop().unwrap();
    send_signal(&killed.child, "KILL");
    for peer in &mut peers {
        peer.wait(|e| e["event"] == "offline" && e["peer"] == killed.key.as_str()).await;
    }
    // Each line was printed once: the next message every peer prints is the next line.
    peers[0].say("once more").await;
    for peer in &mut peers[1..] {
        let message = peer.wait(|e| e["event"] == "message").await;
        assert_eq!(message["payload"], "once more");
    }
    for peer in peers {
        peer.exit().await;
    }
}

/// One peer shares a file; another fetches it by hash, verified, into a file of its own.
#[tokio::test]
async fn a_shared_file_is_fetched_by_hash_by_another_peer() {
    let (_server, url) = common::signal_server().await;
    let topic = "b1".repeat(32);
    let dir = std::env::temp_dir().join(format!("mesh-share-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (source, copy) = (dir.join("source.bin"), dir.join("copy.bin"));
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&source, &content).unwrap();

    let share = ["--share", source.to_str().unwrap()];
    let mut sharer = Peer::spawn_with(&url, &topic, &["--transport", "tcp"], &share).await;
    let shared = sharer.wait(|e| e["event"] == "shared").await;
    let hash = shared["hash"].as_str().unwrap().to_owned();
    assert_eq!(shared["bytes"], content.len());

    let fetch = ["--fetch", &hash, "--out", copy.to_str().unwrap()];
    let mut fetcher = Peer::spawn_with(&url, &topic, &["--transport", "tcp"], &fetch).await;
    let fetched = fetcher.wait(|e| e["event"] == "fetched").await;
    assert_eq!(fetched["hash"], hash.as_str());
    assert_eq!(std::fs::read(&copy).unwrap(), content);

    sharer.exit().await;
    fetcher.exit().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_peer_arguments_exit_with_code_2() {
    let mesh = || std::process::Command::new(env!("CARGO_BIN_EXE_mesh"));
    let no_topic = mesh().args(["peer", "--signal", "ws://127.0.0.1:1/x"]).output().unwrap();
    assert_eq!(no_topic.status.code(), Some(2));
    let bad_topic =
        mesh().args(["peer", "--signal", "ws://127.0.0.1:1/x", "--topic", "zz"]).output().unwrap();
    assert_eq!(bad_topic.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_topic.stderr).contains("--topic"));
    let topic = "ab".repeat(32);
    let peer = |extra: &[&str]| {
        mesh()
            .args(["peer", "--signal", "ws://127.0.0.1:1/x", "--topic", &topic])
            .args(extra)
            .output()
            .unwrap()
    };
    let memory = peer(&["--transport", "memory"]);
    assert_eq!(memory.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&memory.stderr).contains("mesh demo --transport memory"));
    let ring = peer(&["--topology", "ring"]);
    assert_eq!(ring.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ring.stderr).contains("unknown topology"));
    let carrier_pigeon = peer(&["--transport", "pigeon"]);
    assert_eq!(carrier_pigeon.status.code(), Some(2));
}
