//! Key text forms, ordering, signatures and discovery keys.

use mesh_keys::{DiscoveryKey, Keypair, ParseKeyError, PublicKey, SecretKey, Signature, SignatureError};
use proptest::prelude::*;

#[test]
fn text_form_is_lowercase_hex() {
    let key = PublicKey::from_bytes([0xAB; 32]);
    assert_eq!(key.to_string(), "ab".repeat(32));
    assert_eq!(format!("{key:?}"), format!("PublicKey({})", "ab".repeat(32)));
}

#[test]
fn parse_accepts_uppercase() {
    let key: PublicKey = "AB".repeat(32).parse().unwrap();
    assert_eq!(key, PublicKey::from_bytes([0xab; 32]));
}

#[test]
fn parse_rejects_bad_text_with_typed_errors() {
    assert_eq!("ab".parse::<PublicKey>(), Err(ParseKeyError::InvalidLength { expected: 32, actual: 1 }));
    assert_eq!("abc".parse::<PublicKey>(), Err(ParseKeyError::OddLength));
    assert_eq!("".parse::<PublicKey>(), Err(ParseKeyError::InvalidLength { expected: 32, actual: 0 }));
    let mut text = "00".repeat(32);
    text.replace_range(5..6, "g");
    assert_eq!(text.parse::<PublicKey>(), Err(ParseKeyError::InvalidHex { character: 'g', index: 5 }));
    // A multi-byte character of the right byte length must not panic on a char boundary.
    let text = format!("é{}", "0".repeat(62));
    assert!(matches!(text.parse::<PublicKey>(), Err(ParseKeyError::InvalidHex { .. })));
}

#[test]
fn slices_of_wrong_length_are_rejected() {
    assert_eq!(
        PublicKey::try_from_slice(&[0; 31]),
        Err(ParseKeyError::InvalidLength { expected: 32, actual: 31 })
    );
    assert_eq!(
        Signature::try_from_slice(&[0; 63]),
        Err(ParseKeyError::InvalidLength { expected: 64, actual: 63 })
    );
    assert!(SecretKey::try_from_slice(&[0; 33]).is_err());
}

#[test]
fn order_is_byte_order_and_equals_hex_order() {
    let low = PublicKey::from_bytes([0x01; 32]);
    let mut high_bytes = [0x01; 32];
    high_bytes[31] = 0x02;
    let high = PublicKey::from_bytes(high_bytes);
    assert!(low < high);
    assert!(low.to_hex() < high.to_hex());
}

#[test]
fn signature_verifies_only_for_its_message_and_key() {
    let alice = Keypair::generate();
    let bob = Keypair::generate();
    let signature = alice.sign(b"challenge");
    assert_eq!(alice.public().verify(b"challenge", &signature), Ok(()));
    assert_eq!(alice.public().verify(b"other", &signature), Err(SignatureError::Mismatch));
    assert_eq!(bob.public().verify(b"challenge", &signature), Err(SignatureError::Mismatch));
}

#[test]
fn keypair_is_restored_from_its_secret() {
    let pair = Keypair::generate();
    let text = pair.secret().to_hex();
    let restored = Keypair::from_secret(&text.parse().unwrap());
    assert_eq!(restored.public(), pair.public());
    assert_eq!(format!("{:?}", pair.secret()), "SecretKey(..)");
}

#[test]
fn discovery_key_is_domain_separated_and_stable() {
    let party = PublicKey::from_bytes([7; 32]);
    let topic = DiscoveryKey::from_party(&party);
    assert_eq!(topic, DiscoveryKey::from_party(&party));
    assert_ne!(topic.as_bytes(), blake3::hash(party.as_bytes()).as_bytes());
    assert_ne!(topic, DiscoveryKey::from_party(&PublicKey::from_bytes([8; 32])));
    assert_eq!(DiscoveryKey::from(party).as_bytes(), party.as_bytes());
}

proptest! {
    #[test]
    fn public_key_text_round_trips(bytes in any::<[u8; 32]>()) {
        let key = PublicKey::from_bytes(bytes);
        let text = key.to_string();
        prop_assert_eq!(text.len(), 64);
        prop_assert!(text.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        prop_assert_eq!(text.parse::<PublicKey>(), Ok(key));
        prop_assert_eq!(text.to_uppercase().parse::<PublicKey>(), Ok(key));
    }

    #[test]
    fn discovery_key_text_round_trips(bytes in any::<[u8; 32]>()) {
        let key = DiscoveryKey::from_bytes(bytes);
        prop_assert_eq!(key.to_hex().parse::<DiscoveryKey>(), Ok(key));
    }

    #[test]
    fn secret_key_text_round_trips(bytes in any::<[u8; 32]>()) {
        let secret = SecretKey::from_bytes(bytes);
        let parsed: SecretKey = secret.to_hex().parse().unwrap();
        prop_assert_eq!(parsed.as_bytes(), secret.as_bytes());
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".{0,80}") {
        let _ = text.parse::<PublicKey>();
        let _ = text.parse::<SecretKey>();
    }

    #[test]
    fn order_matches_hex_order(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        let (a, b) = (PublicKey::from_bytes(a), PublicKey::from_bytes(b));
        prop_assert_eq!(a.cmp(&b), a.to_hex().cmp(&b.to_hex()));
    }
}
