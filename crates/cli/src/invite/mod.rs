//! `mesh invite` and `mesh join`: letting a new peer into a party with a one-time code.
//!
//! The member runs `mesh invite`, which prints a code and waits in the code's invitation swarm;
//! the new peer runs `mesh join CODE`. Both prove they know the code's secret without sending it,
//! the member issues an admission for the new peer's key, and `mesh join` stores it next to the
//! key (`KEY.admission`, hex of its protobuf encoding), from where the party's swarms read it.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use mesh::{
    JoinOptions, Node,
    auth::{Admission, InvitationCode, Invitations, Redemption, invitation::NAME},
    topology::FullyConnected,
};
use serde_json::json;

use crate::{
    peer::keypair,
    transport::{ReachArgs, TransportChoice},
};

/// Options of `mesh invite`.
#[derive(Debug, clap::Args)]
pub(crate) struct InviteArgs {
    /// Signal server URL (ws:// or wss://); repeat for several servers.
    #[arg(long = "signal", required = true)]
    signals: Vec<String>,
    /// The inviting member's secret key file: the party key itself, or a delegate's key with
    /// `--admission`.
    #[arg(long)]
    key: PathBuf,
    /// The member's admission file (`KEY.admission`), when the key is a delegate's rather than
    /// the party key; it must let the member admit others.
    #[arg(long)]
    admission: Option<PathBuf>,
    /// Seconds the invitation stays valid.
    #[arg(long, default_value_t = 600)]
    valid_for: u64,
    /// How to connect to the new peer.
    #[arg(long, value_enum, default_value_t = TransportChoice::Tcp)]
    transport: TransportChoice,
    #[command(flatten)]
    reach: ReachArgs,
}

/// Options of `mesh join`.
#[derive(Debug, clap::Args)]
pub(crate) struct JoinArgs {
    /// The code `mesh invite` printed.
    code: String,
    /// Signal server URL (ws:// or wss://); repeat for several servers.
    #[arg(long = "signal", required = true)]
    signals: Vec<String>,
    /// This peer's secret key file (from `mesh keygen`); the admission is written next to it.
    #[arg(long)]
    key: PathBuf,
    /// Seconds to wait for the member.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// How to connect to the member.
    #[arg(long, value_enum, default_value_t = TransportChoice::Tcp)]
    transport: TransportChoice,
    #[command(flatten)]
    reach: ReachArgs,
}

/// Where the admission for the key at `key` is kept.
pub(crate) fn admission_path(key: &std::path::Path) -> PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push(".admission");
    PathBuf::from(path)
}

/// Reads an admission file (hex of the protobuf encoding).
pub(crate) fn read_admission(path: &std::path::Path) -> Result<Admission> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?;
    Admission::from_bytes(&bytes).with_context(|| format!("{} holds no admission", path.display()))
}

async fn node(
    signals: &[String],
    key: &mesh::Keypair,
    transport: TransportChoice,
    reach: &ReachArgs,
) -> Result<Node> {
    Ok(Node::builder()
        .signal(signals.iter().cloned())
        .key(key.clone())
        .transport(transport.factory(reach, key)?)
        .spawn()
        .await?)
}

pub(crate) async fn invite(args: InviteArgs) -> Result<()> {
    let key = keypair(Some(&args.key))?;
    let (party, chain) = match &args.admission {
        None => (key.public(), None),
        Some(path) => {
            let chain = read_admission(path)?;
            let party = chain.party().context("an empty admission")?;
            (party, Some(chain))
        }
    };
    let invitations = Invitations::new(key.clone(), party, chain);
    let valid_for = Duration::from_secs(args.valid_for);
    let code = invitations.create(valid_for);
    let node = node(&args.signals, &key, args.transport, &args.reach).await?;
    let serving = invitations.clone();
    let options = JoinOptions::default().extension(NAME, move || serving.extension());
    let swarm = node.join_with(code.topic(), FullyConnected, options).await?;
    println!("{}", json!({"event": "invitation", "code": code.to_string(), "party": party.to_hex()}));
    let mut granted = invitations.granted();
    let guest = tokio::time::timeout(valid_for, granted.wait_for(|granted| !granted.is_empty()))
        .await
        .context("the invitation expired unused")??
        .first()
        .copied()
        .context("granted to nobody")?;
    // Leaving closes the connection gracefully, so the grant reaches the guest before we exit.
    swarm.leave().await?;
    println!("{}", json!({"event": "granted", "peer": guest.to_hex()}));
    Ok(())
}

pub(crate) async fn join(args: JoinArgs) -> Result<()> {
    let code: InvitationCode = args.code.parse()?;
    let key = keypair(Some(&args.key))?;
    let out = admission_path(&args.key);
    if out.exists() {
        bail!("{} exists: this key has an admission already", out.display());
    }
    let redemption = Redemption::new(code, key.clone());
    let node = node(&args.signals, &key, args.transport, &args.reach).await?;
    let redeeming = Arc::clone(&redemption);
    let options = JoinOptions::default().extension(NAME, move || redeeming.extension());
    let _swarm = node.join_with(code.topic(), FullyConnected, options).await?;
    let admission = tokio::time::timeout(Duration::from_secs(args.timeout), redemption.admission())
        .await
        .context("no member answered the invitation in time")??;
    std::fs::write(&out, hex::encode(admission.to_bytes()) + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    let party = admission.party().context("an empty admission")?;
    println!(
        "{}",
        json!({"event": "admitted", "party": party.to_hex(), "peer": key.public().to_hex(), "admission": out})
    );
    Ok(())
}
