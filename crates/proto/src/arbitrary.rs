//! proptest strategies for every message (enabled by the `proptest` feature).
//!
//! Generated types derive `Arbitrary`; fields whose types come from prost-types use the strategies
//! here, and [`Struct`] is recursive, so it gets a hand-written impl with bounded depth.

use proptest::{arbitrary::Arbitrary, collection::vec, prelude::*, strategy::BoxedStrategy};
use prost_types::Timestamp;

use crate::wkt::{Field, Kind, ListValue, NullValue, Struct, Value};

/// Any `google.protobuf.Timestamp`, including out-of-range ones (the wire allows them).
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
}

fn leaf_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::null()),
        // NaN never equals itself, so round-trip checks use finite numbers.
        any::<f64>().prop_filter("finite", |n| n.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value { kind: None }),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf_value().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4)
                .prop_map(|values| Value { kind: Some(Kind::ListValue(ListValue { values })) }),
            vec((".{0,8}", proptest::option::of(inner)), 0..4).prop_map(|fields| Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: fields.into_iter().map(|(key, value)| Field { key, value }).collect(),
                })),
            }),
        ]
    })
}

impl Arbitrary for Value {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;

    fn arbitrary_with((): ()) -> Self::Strategy {
        value().boxed()
    }
}

impl Arbitrary for Struct {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;

    fn arbitrary_with((): ()) -> Self::Strategy {
        vec((".{0,8}", proptest::option::of(value())), 0..5)
            .prop_map(|fields| Struct {
                fields: fields.into_iter().map(|(key, value)| Field { key, value }).collect(),
            })
            .boxed()
    }
}

impl Arbitrary for ListValue {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;

    fn arbitrary_with((): ()) -> Self::Strategy {
        vec(value(), 0..4).prop_map(|values| ListValue { values }).boxed()
    }
}

impl Arbitrary for NullValue {
    type Parameters = ();
    type Strategy = Just<Self>;

    fn arbitrary_with((): ()) -> Self::Strategy {
        Just(NullValue::NullValue)
    }
}
