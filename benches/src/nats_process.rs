//! A NATS server (Debian's `nats-server`) in a child process on a free loopback port, for the
//! federation bench. Dropping it kills the server.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// The longest a NATS server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running `nats-server`.
pub struct NatsProcess {
    child: Child,
    url: String,
}

impl NatsProcess {
    /// Starts `nats-server` and waits until it accepts connections.
    pub fn spawn() -> Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .context("finding a free port")?
            .port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting nats-server (`cargo xtask test` installs it, or `apt-get install nats-server`)",
            )?;
        let server = Self { child, url: format!("nats://127.0.0.1:{port}") };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + START_LIMIT;
        // nats-server offers nothing to wait on but its port.
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not accept connections on {addr} within {START_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The URL servers connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
