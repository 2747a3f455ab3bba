//! Key parsing from text and bytes, as peers send them: every byte and text form round-trips, and
//! any other input is refused with a typed error, never a panic.

use mesh_keys::{DiscoveryKey, Keypair, ParseKeyError, PublicKey, SecretKey, Signature};
use proptest::{collection::vec, prelude::*};

/// Checks what parsing `text` gives against what it should give.
fn check_text(text: &str) -> Result<(), TestCaseError> {
    let public = text.parse::<PublicKey>();
    let discovery = text.parse::<DiscoveryKey>();
    prop_assert_eq!(public.clone().map(|key| key.to_bytes()), discovery.map(|key| key.to_bytes()));
    let expected = (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex_bytes(text));
    prop_assert_eq!(public.clone().ok().map(|key| key.to_bytes()), expected);
    if let Ok(key) = public {
        prop_assert_eq!(key.to_hex(), text.to_ascii_lowercase());
    }
    // A secret key file may end in a newline: surrounding whitespace is allowed there.
    let secret = text.parse::<SecretKey>().ok().map(|key| *key.as_bytes());
    prop_assert_eq!(secret, text.trim().parse::<PublicKey>().ok().map(|key| key.to_bytes()));
    Ok(())
}

fn hex_bytes(text: &str) -> [u8; 32] {
    let mut bytes = [0; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).expect("checked hex");
    }
    bytes
}

proptest! {
    #[test]
    fn byte_forms_round_trip_and_wrong_lengths_are_refused(bytes in vec(any::<u8>(), 0..80)) {
        let length_error = |expected| ParseKeyError::InvalidLength { expected, actual: bytes.len() };
        match PublicKey::try_from_slice(&bytes) {
            Ok(key) => prop_assert_eq!(key.as_bytes().as_slice(), bytes.as_slice()),
            Err(err) => prop_assert_eq!(err, length_error(32)),
        }
        match DiscoveryKey::try_from(bytes.as_slice()) {
            Ok(key) => prop_assert_eq!(key.as_bytes().as_slice(), bytes.as_slice()),
            Err(err) => prop_assert_eq!(err, length_error(32)),
        }
        match SecretKey::try_from_slice(&bytes) {
            Ok(key) => prop_assert_eq!(key.as_bytes().as_slice(), bytes.as_slice()),
            Err(err) => prop_assert_eq!(err, length_error(32)),
        }
        match Signature::try_from_slice(&bytes) {
            Ok(signature) => prop_assert_eq!(signature.as_bytes().as_slice(), bytes.as_slice()),
            Err(err) => prop_assert_eq!(err, length_error(64)),
        }
    }

    #[test]
    fn hex_text_round_trips_in_either_case(bytes in any::<[u8; 32]>(), upper in vec(any::<bool>(), 64)) {
        let text: String = PublicKey::from_bytes(bytes)
            .to_hex()
            .chars()
            .zip(&upper)
            .map(|(c, upper)| if *upper { c.to_ascii_uppercase() } else { c })
            .collect();
        check_text(&text)?;
        prop_assert_eq!(text.parse::<PublicKey>(), Ok(PublicKey::from_bytes(bytes)));
        prop_assert_eq!(text.parse::<DiscoveryKey>(), Ok(DiscoveryKey::from_bytes(bytes)));
    }

    #[test]
    fn near_miss_text_is_refused_with_a_typed_error(text in "[0-9a-fA-Fg-z\\s]{60,68}|\\PC{0,70}") {
        check_text(&text)?;
    }

    #[test]
    fn signatures_from_arbitrary_bytes_never_verify_by_accident(
        key in any::<[u8; 32]>(),
        signature in any::<[u8; 32]>().prop_flat_map(|half| (Just(half), any::<[u8; 32]>())),
        message in vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = [0; 64];
        bytes[..32].copy_from_slice(&signature.0);
        bytes[32..].copy_from_slice(&signature.1);
        // Any 32 bytes as a key and any 64 as a signature: an error, not a panic.
        prop_assert!(PublicKey::from_bytes(key).verify(&message, &Signature::from_bytes(bytes)).is_err());
        let pair = Keypair::from_secret(&SecretKey::from_bytes(key));
        let signed = pair.sign(&message);
        prop_assert_eq!(Signature::try_from_slice(signed.as_bytes()), Ok(signed));
        prop_assert_eq!(pair.public().verify(&message, &signed), Ok(()));
    }
}
