//! A real NATS cluster on loopback (Debian's `nats-server`), started, killed and restarted by the
//! tests. The CLI and facade tests include this file too (`#[path]`), so there is one harness.
#![allow(dead_code, unreachable_pub)]

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
    time::sleep,
};

/// Long enough for a node to start on loopback; a test that waits this long has failed.
const PATIENCE: Duration = Duration::from_secs(20);
/// How often readiness is polled: nats-server offers no event to wait on but its endpoints.
const POLL: Duration = Duration::from_millis(20);

struct Node {
    client: u16,
    cluster: u16,
    monitor: u16,
    child: Option<Child>,
}

/// `n` nats-server processes routed to each other as one cluster.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until each serves clients and routes to every other.
    pub async fn start(n: usize) -> Self {
        let nodes = (0..n).map(|_| Node {
            client: free_port(),
            cluster: free_port(),
            monitor: free_port(),
            child: None,
        });
        let mut cluster = Self { nodes: nodes.collect() };
        for index in 0..n {
            cluster.spawn(index);
        }
        for index in 0..n {
            cluster.wait_ready(index).await;
        }
        cluster
    }

    /// The client URL of node `index`.
    pub fn url(&self, index: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[index].client)
    }

    /// Every node's client URL, node `first` first.
    pub fn urls_from(&self, first: usize) -> Vec<String> {
        let n = self.nodes.len();
        (0..n).map(|offset| self.url((first + offset) % n)).collect()
    }

    /// Kills node `index` (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            child.kill().await.expect("nats-server can be killed");
        }
    }

    /// Starts node `index` again on its ports and waits until it has rejoined the cluster.
    pub async fn restart(&mut self, index: usize) {
        self.spawn(index);
        self.wait_ready(index).await;
    }

    fn running(&self) -> usize {
        self.nodes.iter().filter(|node| node.child.is_some()).count()
    }

    fn spawn(&mut self, index: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, node)| format!("nats://127.0.0.1:{}", node.cluster))
            .collect();
        let node = &self.nodes[index];
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &node.client.to_string(), "-m", &node.monitor.to_string()])
            .args(["--cluster_name", "mesh-test", "-n", &format!("node{index}")])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", node.cluster), "--routes", &routes.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("nats-server cannot start ({err}): run `cargo xtask test`, which installs it")
            });
        self.nodes[index].child = Some(child);
    }

    /// Waits until node `index` routes to every other running node.
    async fn wait_ready(&self, index: usize) {
        let monitor = SocketAddr::from((Ipv4Addr::LOCALHOST, self.nodes[index].monitor));
        let want = self.running() - 1;
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(routes) = get(monitor, "/routez").await.and_then(|body| num_routes(&body))
                    && routes >= want
                {
                    return;
                }
                sleep(POLL).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("NATS node {index} did not join its cluster"));
    }
}

/// A port free now (the kernel picks it; nothing else on loopback takes it before the server).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The body of a plain HTTP GET, or `None` while the server is not up.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

fn num_routes(routez: &str) -> Option<usize> {
    let value: serde_json::Value = serde_json::from_str(routez).ok()?;
    value["num_routes"].as_u64().map(|routes| routes as usize)
}
