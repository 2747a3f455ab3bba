//! Party admission: credentials that admit a peer key to a party, issued by the party key or by
//! a delegate it named, with an optional expiry, and the chain a member presents.
//!
//! The wire form is `mesh.v1.Admission` (see `proto/mesh/v1/admission.proto`). A verifier checks
//! every link's signature against its own canonical encoding of the decoded claim, so what was
//! signed never depends on who encoded it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_keys::{Keypair, PublicKey, Signature};
use mesh_proto::mesh::v1 as wire;
use prost::Message;

/// What an issuer signs before the claim's encoding: no signature made for anything else can
/// pass for a credential.
const DOMAIN: &[u8] = b"mesh.v1.AdmissionClaim\n";

/// Links a chain may have at most: the party key's, a few delegations, the member's.
pub const MAX_CHAIN: usize = 8;

/// One credential: `issuer` admits `subject` to `party`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The party.
    pub party: PublicKey,
    /// Who signed it.
    pub issuer: PublicKey,
    /// Who it admits.
    pub subject: PublicKey,
    /// When it ends, if ever.
    pub expires_at: Option<SystemTime>,
    /// Whether the subject may admit others.
    pub delegate: bool,
    signature: Signature,
}

impl Credential {
    /// `issuer` admits `subject` to `party` (as a delegate, who may admit others, or not), until
    /// `expires_at` if given. Times are kept to the second.
    pub fn issue(
        issuer: &Keypair,
        party: PublicKey,
        subject: PublicKey,
        expires_at: Option<SystemTime>,
        delegate: bool,
    ) -> Self {
        let expires_at = expires_at.map(whole_seconds);
        let claim = claim(party, issuer.public(), subject, expires_at, delegate);
        let signature = issuer.sign(&signed_bytes(&claim));
        Self { party, issuer: issuer.public(), subject, expires_at, delegate, signature }
    }

    /// The wire form.
    pub fn to_wire(&self) -> wire::AdmissionCredential {
        wire::AdmissionCredential {
            claim: Some(claim(self.party, self.issuer, self.subject, self.expires_at, self.delegate)),
            signature: self.signature.as_bytes().to_vec(),
        }
    }

    /// Reads the wire form; checks shapes, not the signature (see [`Admission::verify`]).
    pub fn from_wire(credential: &wire::AdmissionCredential) -> Result<Self, AdmissionError> {
        let claim =
            credential.claim.as_ref().ok_or(AdmissionError::Malformed("a credential without a claim"))?;
        let key = |bytes: &[u8], what: &'static str| {
            PublicKey::try_from_slice(bytes).map_err(|_| AdmissionError::Malformed(what))
        };
        Ok(Self {
            party: key(&claim.party, "a party key that is not 32 bytes")?,
            issuer: key(&claim.issuer, "an issuer key that is not 32 bytes")?,
            subject: key(&claim.subject, "a subject key that is not 32 bytes")?,
            expires_at: (claim.expires_at != 0).then(|| UNIX_EPOCH + Duration::from_secs(claim.expires_at)),
            delegate: claim.delegate,
            signature: Signature::try_from_slice(&credential.signature)
                .map_err(|_| AdmissionError::Malformed("a signature that is not 64 bytes"))?,
        })
    }

    /// Checks the issuer's signature and the expiry at `now`.
    fn check(&self, now: SystemTime) -> Result<(), AdmissionError> {
        let claim = claim(self.party, self.issuer, self.subject, self.expires_at, self.delegate);
        self.issuer
            .verify(&signed_bytes(&claim), &self.signature)
            .map_err(|_| AdmissionError::BadSignature { issuer: self.issuer })?;
        match self.expires_at {
            Some(end) if now >= end => Err(AdmissionError::Expired { subject: self.subject }),
            _ => Ok(()),
        }
    }
}

fn whole_seconds(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds(time))
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

fn claim(
    party: PublicKey,
    issuer: PublicKey,
    subject: PublicKey,
    expires_at: Option<SystemTime>,
    delegate: bool,
) -> wire::AdmissionClaim {
    wire::AdmissionClaim {
        party: party.as_bytes().to_vec(),
        issuer: issuer.as_bytes().to_vec(),
        subject: subject.as_bytes().to_vec(),
        // A time at or before the epoch cannot be written; it would read as "never", so it is
        // kept as the first second after, which is long past.
        expires_at: expires_at.map_or(0, |end| seconds(end).max(1)),
        delegate,
    }
}

fn signed_bytes(claim: &wire::AdmissionClaim) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DOMAIN.len() + claim.encoded_len());
    bytes.extend_from_slice(DOMAIN);
    claim.encode(&mut bytes).expect("a Vec grows as needed");
    bytes
}

/// A member's proof of admission: the credentials from the party key down to the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    chain: Vec<Credential>,
}

impl Admission {
    /// The party key's own credential for `member`: a chain of one.
    pub fn direct(credential: Credential) -> Self {
        Self { chain: vec![credential] }
    }

    /// `credential`, issued by the last subject of this chain, appended.
    pub fn extended(mut self, credential: Credential) -> Self {
        self.chain.push(credential);
        self
    }

    /// The party this is an admission to (as the chain says; [`Admission::verify`] checks it).
    pub fn party(&self) -> Option<PublicKey> {
        self.chain.first().map(|credential| credential.party)
    }

    /// The member this admits: the last subject.
    pub fn member(&self) -> Option<PublicKey> {
        self.chain.last().map(|credential| credential.subject)
    }

    /// The wire form.
    pub fn to_wire(&self) -> wire::Admission {
        wire::Admission { chain: self.chain.iter().map(Credential::to_wire).collect() }
    }

    /// The wire form, encoded.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_wire().encode_to_vec()
    }

    /// Reads an encoded admission; checks shapes and length, not signatures.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AdmissionError> {
        let admission =
            wire::Admission::decode(bytes).map_err(|_| AdmissionError::Malformed("not an Admission"))?;
        Self::from_wire(&admission)
    }

    /// Reads the wire form; checks shapes and length, not signatures.
    pub fn from_wire(admission: &wire::Admission) -> Result<Self, AdmissionError> {
        if admission.chain.is_empty() {
            return Err(AdmissionError::Malformed("an empty chain"));
        }
        if admission.chain.len() > MAX_CHAIN {
            return Err(AdmissionError::TooLong(admission.chain.len()));
        }
        let chain = admission.chain.iter().map(Credential::from_wire).collect::<Result<_, _>>()?;
        Ok(Self { chain })
    }

    /// Checks that this admits `member` to `party` at `now`: the first credential is the party
    /// key's, each next one was issued by the previous one's subject, which had to be a delegate;
    /// every signature holds, nothing has expired, and no key on the way is revoked.
    pub fn verify(
        &self,
        party: PublicKey,
        member: PublicKey,
        now: SystemTime,
        revoked: &dyn Fn(&PublicKey) -> bool,
    ) -> Result<(), AdmissionError> {
        let mut issuer = party;
        let mut may_issue = true;
        for credential in &self.chain {
            if credential.party != party {
                return Err(AdmissionError::OtherParty(credential.party));
            }
            if credential.issuer != issuer || !may_issue {
                return Err(AdmissionError::BrokenChain { issuer: credential.issuer });
            }
            if revoked(&credential.issuer) {
                return Err(AdmissionError::Revoked(credential.issuer));
            }
            credential.check(now)?;
            issuer = credential.subject;
            may_issue = credential.delegate;
        }
        if revoked(&issuer) {
            return Err(AdmissionError::Revoked(issuer));
        }
        if issuer != member {
            return Err(AdmissionError::NotTheMember { admitted: issuer });
        }
        Ok(())
    }
}

/// Why an admission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// The bytes are not a well-formed admission.
    #[error("malformed admission: {0}")]
    Malformed(&'static str),
    /// More links than [`MAX_CHAIN`].
    #[error("an admission chain of {0} links, more than {MAX_CHAIN}")]
    TooLong(usize),
    /// A credential of another party.
    #[error("a credential for another party ({})", .0.short())]
    OtherParty(PublicKey),
    /// A credential not issued by the party key or by a delegate before it in the chain.
    #[error("a credential issued by {} who may not admit here", .issuer.short())]
    BrokenChain {
        /// Who issued it.
        issuer: PublicKey,
    },
    /// A signature that does not hold.
    #[error("a credential whose signature by {} does not hold", .issuer.short())]
    BadSignature {
        /// Who should have signed it.
        issuer: PublicKey,
    },
    /// A credential past its expiry.
    #[error("the credential for {} has expired", .subject.short())]
    Expired {
        /// Whom it admitted.
        subject: PublicKey,
    },
    /// A revoked key on the way.
    #[error("{} is revoked", .0.short())]
    Revoked(PublicKey),
    /// The chain admits someone else.
    #[error("the admission is for {}, not for this peer", .admitted.short())]
    NotTheMember {
        /// Whom it admits.
        admitted: PublicKey,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn nobody_revoked(_: &PublicKey) -> bool {
        false
    }

    struct Party {
        key: Keypair,
        delegate: Keypair,
        member: Keypair,
    }

    impl Party {
        fn new() -> Self {
            Self { key: Keypair::generate(), delegate: Keypair::generate(), member: Keypair::generate() }
        }

        /// party → delegate → member, both for `valid` from now.
        fn delegated(&self, valid: Duration) -> Admission {
            let until = Some(SystemTime::now() + valid);
            let party = self.key.public();
            Admission::direct(Credential::issue(&self.key, party, self.delegate.public(), until, true))
                .extended(Credential::issue(&self.delegate, party, self.member.public(), until, false))
        }
    }

    #[test]
    fn a_delegated_chain_admits_its_member_and_survives_the_wire() {
        let party = Party::new();
        let admission = party.delegated(HOUR);
        let decoded = Admission::from_bytes(&admission.to_bytes()).unwrap();
        assert_eq!(decoded, admission);
        decoded
            .verify(party.key.public(), party.member.public(), SystemTime::now(), &nobody_revoked)
            .unwrap();
        assert_eq!(decoded.member(), Some(party.member.public()));
    }

    #[test]
    fn the_encoding_is_canonical() {
        let party = Party::new();
        let admission = party.delegated(HOUR);
        let bytes = admission.to_bytes();
        assert_eq!(
            Admission::from_bytes(&bytes).unwrap().to_bytes(),
            bytes,
            "decode then encode is the identity"
        );
    }

    #[test]
    fn expired_revoked_foreign_and_forged_chains_are_refused() {
        let party = Party::new();
        let (key, member) = (party.key.public(), party.member.public());
        let now = SystemTime::now();
        let admission = party.delegated(HOUR);

        let later = now + 2 * HOUR;
        assert!(matches!(
            admission.verify(key, member, later, &nobody_revoked),
            Err(AdmissionError::Expired { .. })
        ));

        let delegate = party.delegate.public();
        let revoked = |k: &PublicKey| *k == delegate;
        assert_eq!(admission.verify(key, member, now, &revoked), Err(AdmissionError::Revoked(delegate)));
        let revoked = |k: &PublicKey| *k == member;
        assert_eq!(admission.verify(key, member, now, &revoked), Err(AdmissionError::Revoked(member)));

        let stranger = Keypair::generate().public();
        assert!(matches!(
            admission.verify(key, stranger, now, &nobody_revoked),
            Err(AdmissionError::NotTheMember { .. })
        ));
        assert!(matches!(
            admission.verify(stranger, member, now, &nobody_revoked),
            Err(AdmissionError::OtherParty(_))
        ));

        // A member that is not a delegate cannot admit anyone.
        let intruder = Keypair::generate();
        let onward =
            admission.clone().extended(Credential::issue(&party.member, key, intruder.public(), None, false));
        assert!(matches!(
            onward.verify(key, intruder.public(), now, &nobody_revoked),
            Err(AdmissionError::BrokenChain { .. })
        ));

        // A credential someone signed for themselves, or with a changed claim.
        let selfmade = Admission::direct(Credential::issue(&intruder, key, intruder.public(), None, false));
        assert!(matches!(
            selfmade.verify(key, intruder.public(), now, &nobody_revoked),
            Err(AdmissionError::BrokenChain { .. })
        ));
        let mut wire = admission.to_wire();
        wire.chain[1].claim.as_mut().unwrap().expires_at += 3600;
        let tampered = Admission::from_wire(&wire).unwrap();
        assert!(matches!(
            tampered.verify(key, member, now, &nobody_revoked),
            Err(AdmissionError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_admissions_are_refused() {
        assert!(Admission::from_bytes(b"\xff\xff").is_err());
        assert_eq!(Admission::from_bytes(&[]), Err(AdmissionError::Malformed("an empty chain")));
        let party = Party::new();
        let link = party.delegated(HOUR).to_wire().chain[0].clone();
        let long = wire::Admission { chain: vec![link.clone(); MAX_CHAIN + 1] };
        assert_eq!(Admission::from_wire(&long), Err(AdmissionError::TooLong(MAX_CHAIN + 1)));
        let mut short_key = link;
        short_key.claim.as_mut().unwrap().subject.pop();
        let chain = wire::Admission { chain: vec![short_key] };
        assert!(matches!(Admission::from_wire(&chain), Err(AdmissionError::Malformed(_))));
    }
}
