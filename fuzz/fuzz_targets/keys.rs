//! Key parsing: `PublicKey`, `DiscoveryKey` and `SecretKey` from text and bytes, `Signature` from
//! bytes, and verifying any signature with any key.
//!
//! The input is used whole, as text (when it is UTF-8) and as bytes. Checked: nothing panics,
//! whatever parses prints back to the same text (in lowercase) or the same bytes, and the key
//! types agree with each other.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_keys::{DiscoveryKey, PublicKey, SecretKey, Signature};
use mesh_proto::dxos::keys::PublicKey as KeyMessage;

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        let public = text.parse::<PublicKey>();
        let discovery = text.parse::<DiscoveryKey>();
        assert_eq!(public.clone().map(PublicKey::to_bytes), discovery.map(DiscoveryKey::to_bytes));
        if let Ok(key) = public {
            assert_eq!(key.to_hex(), text.to_ascii_lowercase());
        }
        if let Ok(secret) = text.parse::<SecretKey>() {
            assert_eq!(secret.to_hex(), text.trim().to_ascii_lowercase());
        }
    }
    let public = PublicKey::try_from_slice(input);
    assert_eq!(public.is_ok(), input.len() == 32);
    assert_eq!(
        public.clone().map(|key| key.as_bytes().to_vec()),
        DiscoveryKey::try_from(input).map(|key| key.as_bytes().to_vec())
    );
    assert_eq!(SecretKey::try_from_slice(input).is_ok(), input.len() == 32);
    let message = KeyMessage { data: input.to_vec() };
    assert_eq!(message.to_key().ok(), public.clone().ok());
    // The first 32 bytes as a key, the next 64 as a signature over the rest.
    if input.len() >= 96 {
        let key = PublicKey::try_from_slice(&input[..32]);
        let signature = Signature::try_from_slice(&input[32..96]);
        if let (Ok(key), Ok(signature)) = (key, signature) {
            let _ = key.verify(&input[96..], &signature);
            assert_eq!(signature.as_bytes().as_slice(), &input[32..96]);
        }
    }
});
