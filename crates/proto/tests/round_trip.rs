//! Every generated message, and the hand-written Struct, survives encode → decode → encode.

use std::fmt::Debug;

use mesh_proto::{Message, Struct, for_each_message};
use proptest::{
    arbitrary::{Arbitrary, any},
    prop_assert_eq,
    test_runner::{Config, TestRunner},
};

fn check_round_trip<M: Message + Default + PartialEq + Debug + Arbitrary>() {
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    let result = runner.run(&any::<M>(), |message| {
        let bytes = message.encode_to_vec();
        let decoded = M::decode(bytes.as_slice()).expect("our own encoding decodes");
        prop_assert_eq!(&decoded, &message);
        prop_assert_eq!(decoded.encode_to_vec(), bytes);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{} does not round-trip: {failure}", std::any::type_name::<M>());
    }
}

#[test]
fn every_generated_message_round_trips() {
    macro_rules! check_all {
        ($($message:path),* $(,)?) => {{
            let mut count = 0;
            $( check_round_trip::<$message>(); count += 1; )*
            count
        }};
    }
    let checked = for_each_message!(check_all);
    // Guards the macro itself: the spec's packages hold well over 30 messages.
    assert!(checked >= 30, "only {checked} message types checked");
}

#[test]
fn struct_round_trips() {
    check_round_trip::<Struct>();
}

#[test]
fn struct_keeps_field_order_and_last_value_wins() {
    let mut object = Struct::new().with("type", "offer").with("sdp", "v=0");
    assert_eq!(object.fields.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["type", "sdp"]);
    object.insert("type", "answer");
    assert_eq!(object.get("type").and_then(|v| v.as_str()), Some("answer"));
    assert_eq!(object.fields.len(), 2);

    let mut repeated = object.clone();
    repeated.fields.push(mesh_proto::wkt::Field { key: "sdp".into(), value: Some("later".into()) });
    assert_eq!(repeated.get("sdp").and_then(|v| v.as_str()), Some("later"));
}

#[test]
fn empty_struct_key_is_written_like_protobufjs() {
    // protobufjs always writes a map entry's key, even an empty one.
    let object = Struct::new().with("", true);
    assert_eq!(object.encode_to_vec(), [0x0a, 0x06, 0x0a, 0x00, 0x12, 0x02, 0x20, 0x01]);
}

#[test]
fn malformed_bytes_give_errors_not_panics() {
    let garbage = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01];
    assert!(mesh_proto::dxos::rpc::RpcMessage::decode(garbage.as_slice()).is_err());
    assert!(Struct::decode([0x0a, 0x05, 0x0a].as_slice()).is_err());
}

proptest::proptest! {
    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = mesh_proto::dxos::rpc::RpcMessage::decode(bytes.as_slice());
        let _ = mesh_proto::dxos::mesh::signal::Message::decode(bytes.as_slice());
        let _ = mesh_proto::dxos::mesh::swarm::SwarmMessage::decode(bytes.as_slice());
        let _ = mesh_proto::dxos::mesh::muxer::Command::decode(bytes.as_slice());
    }
}
