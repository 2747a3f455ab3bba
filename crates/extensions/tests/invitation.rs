//! Invitations between two Teleports: a member's code is redeemed once for an admission that
//! holds, and then fails when reused; a wrong secret fails on both sides; an expired invitation
//! is refused.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use mesh_extensions::auth::{
    Admission, Credential, InvitationCode, InvitationError, Invitations, Redemption, invitation::NAME,
};
use mesh_keys::{Keypair, PublicKey};
use mesh_teleport::{Params, Teleport};

const PATIENCE: Duration = Duration::from_secs(30);

/// Connects a guest redeeming `code` to the member serving `invitations`; returns the outcome.
async fn redeem(
    invitations: &Invitations,
    code: InvitationCode,
    guest: &Keypair,
) -> Result<Admission, InvitationError> {
    let member = Keypair::generate().public();
    let (a_io, b_io) = tokio::io::duplex(64 << 10);
    let host = Teleport::new(a_io, Params::new(true, member, guest.public()));
    let visitor = Teleport::new(b_io, Params::new(false, guest.public(), member));
    host.add_extension(NAME, invitations.extension()).unwrap();
    let redemption = Redemption::new(code, guest.clone());
    visitor.add_extension(NAME, redemption.extension()).unwrap();
    let outcome = tokio::time::timeout(PATIENCE, redemption.admission()).await.expect("an outcome in time");
    let _ = tokio::join!(host.close(), visitor.close());
    outcome
}

/// The same invitation id with another secret: the member's proof does not hold for the guest.
fn wrong_secret(code: InvitationCode) -> InvitationCode {
    let text = code.to_string();
    let last = if text.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &text[..text.len() - 1]).parse().unwrap()
}

fn admits(admission: &Admission, party: PublicKey, member: PublicKey) -> bool {
    admission.verify(party, member, SystemTime::now(), &|_| false).is_ok()
}

#[tokio::test]
async fn an_invitation_admits_its_guest_once() {
    let party = Keypair::generate();
    let invitations = Invitations::new(party.clone(), party.public(), None);
    let code = invitations.create(Duration::from_secs(600));
    let guest = Keypair::generate();
    let admission = redeem(&invitations, code, &guest).await.unwrap();
    assert!(admits(&admission, party.public(), guest.public()), "the admission holds for the guest");
    assert_eq!(*invitations.granted().borrow(), [guest.public()]);

    let again = redeem(&invitations, code, &Keypair::generate()).await;
    assert!(matches!(again, Err(InvitationError::Refused(_))), "a used invitation is refused: {again:?}");
}

#[tokio::test]
async fn a_delegate_invites_with_its_own_chain() {
    let (party, delegate) = (Keypair::generate(), Keypair::generate());
    let chain = Admission::direct(Credential::issue(&party, party.public(), delegate.public(), None, true));
    let invitations = Invitations::new(delegate, party.public(), Some(chain));
    let guest = Keypair::generate();
    let admission = redeem(&invitations, invitations.create(Duration::from_secs(600)), &guest).await.unwrap();
    assert!(admits(&admission, party.public(), guest.public()));
}

#[tokio::test]
async fn a_wrong_secret_fails_and_spends_an_attempt() {
    let party = Keypair::generate();
    let invitations = Invitations::new(party.clone(), party.public(), None);
    let code = invitations.create(Duration::from_secs(600));
    let result = redeem(&invitations, wrong_secret(code), &Keypair::generate()).await;
    assert_eq!(result.unwrap_err(), InvitationError::WrongSecret);
    assert!(invitations.granted().borrow().is_empty());

    // The right secret still works (one guess was spent), until the attempts run out.
    let guest = Keypair::generate();
    assert!(redeem(&invitations, code, &guest).await.is_ok());
}

#[tokio::test]
async fn attempts_run_out() {
    let party = Keypair::generate();
    let invitations = Invitations::new(party.clone(), party.public(), None);
    let code = invitations.create(Duration::from_secs(600));
    let wrong = wrong_secret(code);
    for _ in 0..mesh_extensions::auth::invitation::ATTEMPTS {
        assert!(redeem(&invitations, wrong, &Keypair::generate()).await.is_err());
    }
    let late = redeem(&invitations, code, &Keypair::generate()).await;
    assert!(matches!(late, Err(InvitationError::Refused(_))), "the invitation is gone: {late:?}");
}

#[tokio::test]
async fn an_expired_invitation_is_refused() {
    let party = Keypair::generate();
    let invitations = Invitations::new(party.clone(), party.public(), None);
    let code = invitations.create(Duration::ZERO);
    let result = redeem(&invitations, code, &Keypair::generate()).await;
    assert!(matches!(result, Err(InvitationError::Refused(_))), "{result:?}");
}
