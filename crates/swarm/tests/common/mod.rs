//! What the network tests share: a small protocol that proves both ends talk, and waiting for it.
#![allow(dead_code, unreachable_pub)]

use std::{collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use mesh_keys::{DiscoveryKey, Keypair, PublicKey};
use mesh_swarm::{ConnectionInfo, Protocol};
use mesh_transport::ByteStream;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

/// How long a test waits for what must happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Each side writes its key and reads the other's, reports the pair, then holds the connection
/// until either side closes it.
pub struct Hello(pub mpsc::UnboundedSender<(PublicKey, PublicKey)>);

#[async_trait]
impl Protocol for Hello {
    async fn run(
        &self,
        info: ConnectionInfo,
        mut stream: ByteStream,
        close: CancellationToken,
    ) -> Result<(), String> {
        stream.write_all(info.own.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut remote = [0u8; 32];
        stream.read_exact(&mut remote).await.map_err(|e| e.to_string())?;
        if remote != *info.remote.as_bytes() {
            return Err("the other side is not who the swarm said".into());
        }
        let _ = self.0.send((info.own, info.remote));
        let mut rest = [0u8; 1];
        tokio::select! {
            () = close.cancelled() => Ok(()),
            _ = stream.read(&mut rest) => Ok(()),
        }
    }
}

/// A new topic.
pub fn topic() -> DiscoveryKey {
    DiscoveryKey::from_party(&Keypair::generate().public())
}

/// Waits until every ordered pair of `keys` said hello.
pub async fn wait_hellos(hellos: &mut mpsc::UnboundedReceiver<(PublicKey, PublicKey)>, keys: &[PublicKey]) {
    let expected: BTreeSet<(PublicKey, PublicKey)> =
        keys.iter().flat_map(|a| keys.iter().filter(move |b| *b != a).map(move |b| (*a, *b))).collect();
    let mut seen = BTreeSet::new();
    tokio::time::timeout(PATIENCE, async {
        while seen != expected {
            seen.insert(hellos.recv().await.expect("hello channel open"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {} hellos", seen.len(), expected.len()));
}
