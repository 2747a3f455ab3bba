//! Connection setup with and without authentication: two mesh peers join a fresh topic through
//! an in-process signal server over TCP loopback; the time from the first peer hearing that the
//! second is available to both having gossip running on the connection. Plain: gossip starts
//! when Teleport does. Authenticated: each side first proves its key over the connection
//! (`dxos.mesh.teleport.auth`). Party: and presents an admission (a chain of two credentials)
//! that the other verifies. 50 pairs per mode after 2 warm-ups, modes interleaved; p50 and p99,
//! and the ratio to plain.
//!
//! `cargo bench -p mesh-benches --bench auth` (release).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mesh::{
    JoinOptions, Node,
    auth::{Admission, Credential, PartyPolicy},
    topology::FullyConnected,
};
use mesh_keys::{DiscoveryKey, Keypair};
use mesh_signal::Event as SignalEvent;

const PAIRS: usize = 50;
const WARM_UP: usize = 2;
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Authenticated,
    Party,
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let server = mesh_signal_server::Server::start(mesh_signal_server::Config::default()).await?;
        let modes = [Mode::Plain, Mode::Authenticated, Mode::Party];
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
        for round in 0..WARM_UP + PAIRS {
            for (index, mode) in modes.iter().enumerate() {
                let elapsed = pair(&server.url(), *mode).await.with_context(|| format!("{mode:?} pair {round}"))?;
                if round >= WARM_UP {
                    times[index].push(elapsed);
                }
            }
        }
        println!("connection setup over TCP loopback, peer available -> gossip running on both sides ({PAIRS} pairs each)");
        let quantile = |times: &mut Vec<Duration>, q: f64| {
            times.sort();
            times[((times.len() - 1) as f64 * q).round() as usize]
        };
        let plain_p50 = quantile(&mut times[0], 0.5);
        for (index, mode) in modes.iter().enumerate() {
            let (p50, p99) = (quantile(&mut times[index], 0.5), quantile(&mut times[index], 0.99));
            println!(
                "  {:<14} p50 {:6.2} ms   p99 {:6.2} ms   p50 / plain {:.2}",
                format!("{mode:?}").to_lowercase(),
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                p50.as_secs_f64() / plain_p50.as_secs_f64()
            );
        }
        Ok(())
    })
}

fn options(mode: Mode, party: &Keypair, member: &Keypair) -> JoinOptions {
    match mode {
        Mode::Plain => JoinOptions::default(),
        Mode::Authenticated => JoinOptions::default().authenticated(),
        Mode::Party => {
            // Admitted through a delegate: two signatures to check per remote.
            let delegate = Keypair::generate();
            let admission =
                Admission::direct(Credential::issue(party, party.public(), delegate.public(), None, true))
                    .extended(Credential::issue(&delegate, party.public(), member.public(), None, false));
            JoinOptions::default().party(PartyPolicy::new(party.public()), admission)
        }
    }
}

async fn pair(url: &str, mode: Mode) -> Result<Duration> {
    let party = Keypair::generate();
    let topic = DiscoveryKey::from_party(&party.public());
    let (key_a, key_b) = (Keypair::generate(), Keypair::generate());
    let a = Node::builder().signal([url.to_owned()]).key(key_a.clone()).spawn().await?;
    let b = Node::builder().signal([url.to_owned()]).key(key_b.clone()).spawn().await?;
    let mut signals = a.signaling().events();
    let swarm_a = a.join_with(topic, FullyConnected, options(mode, &party, &key_a)).await?;
    let available = async {
        loop {
            if let SignalEvent::PeerAvailable { peer, .. } = signals.recv().await?
                && peer == key_b.public()
            {
                return anyhow::Ok(Instant::now());
            }
        }
    };
    let (available, swarm_b) = tokio::join!(
        tokio::time::timeout(PATIENCE, available),
        b.join_with(topic, FullyConnected, options(mode, &party, &key_b))
    );
    let available = available.context("b never became available")??;
    let swarm_b = swarm_b?;
    let (mut peers_a, mut peers_b) = (swarm_a.gossip().watch_peers(), swarm_b.gossip().watch_peers());
    tokio::time::timeout(PATIENCE, async {
        tokio::try_join!(
            peers_a.wait_for(|peers| peers.len() == 1),
            peers_b.wait_for(|peers| peers.len() == 1)
        )
    })
    .await
    .context("gossip never ran")??;
    let elapsed = available.elapsed();
    swarm_a.leave().await?;
    swarm_b.leave().await?;
    Ok(elapsed)
}
