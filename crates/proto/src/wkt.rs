//! Well-known types written to match what DXOS (protobufjs) puts on the wire, byte for byte.
//!
//! - `google.protobuf.Struct`: prost-types stores the fields in a `BTreeMap`, which re-encodes them
//!   sorted by key. protobufjs writes them in insertion order: `{type: "offer", sdp}` as `type` then
//!   `sdp`. A map on the wire is a repeated entry message, so keeping the entries as a `Vec` reads
//!   and writes the same bytes and loses nothing.
//! - `google.protobuf.Any`: protobufjs writes `type_url` and `value` even when empty, and a DXOS
//!   RPC client reads a reply's `value` unconditionally, so an empty reply must carry `value`.
//!
//! The other well-known types (Timestamp, Empty) come from prost-types.

/// A typed payload: `google.protobuf.Any`. Both fields are always written, as protobufjs writes them.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
pub struct Any {
    /// The payload's type: its full name, with or without a leading dot (see [`crate::any`]).
    #[prost(string, required, tag = "1")]
    pub type_url: String,
    /// The encoded payload.
    #[prost(bytes = "vec", required, tag = "2")]
    pub value: Vec<u8>,
}

/// A JSON-like object: `google.protobuf.Struct`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Struct {
    /// The fields in wire order. A repeated key means the last one wins, as for a protobuf map.
    #[prost(message, repeated, tag = "1")]
    pub fields: Vec<Field>,
}

/// One field of a [`Struct`]: the map entry message `google.protobuf.Struct.FieldsEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Field {
    /// Written even when empty, as protobufjs writes map keys.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Value>,
}

/// A JSON-like value: `google.protobuf.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// Which kind of value, if any.
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<Kind>,
}

/// The kinds of [`Value`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// JSON `null` (always [`NullValue::NullValue`], as an `i32`).
    #[prost(enumeration = "NullValue", tag = "1")]
    NullValue(i32),
    /// A JSON number.
    #[prost(double, tag = "2")]
    NumberValue(f64),
    /// A JSON string.
    #[prost(string, tag = "3")]
    StringValue(String),
    /// A JSON boolean.
    #[prost(bool, tag = "4")]
    BoolValue(bool),
    /// A JSON object.
    #[prost(message, tag = "5")]
    StructValue(Struct),
    /// A JSON array.
    #[prost(message, tag = "6")]
    ListValue(ListValue),
}

/// A JSON array: `google.protobuf.ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    /// The elements.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<Value>,
}

/// `google.protobuf.NullValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum NullValue {
    /// The only value.
    NullValue = 0,
}

impl Struct {
    /// An empty struct.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key` (the last one, if the key repeats).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().rev().find(|field| field.key == key).and_then(|field| field.value.as_ref())
    }

    /// Sets `key`, replacing an earlier value in place or adding the field at the end.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        let (key, value) = (key.into(), Some(value.into()));
        match self.fields.iter_mut().rev().find(|field| field.key == key) {
            Some(field) => field.value = value,
            None => self.fields.push(Field { key, value }),
        }
        self
    }

    /// Builder form of [`Struct::insert`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Struct {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut result = Self::new();
        for (key, value) in iter {
            result.insert(key, value);
        }
        result
    }
}

impl Value {
    /// JSON `null`.
    pub fn null() -> Self {
        Self { kind: Some(Kind::NullValue(NullValue::NullValue as i32)) }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Some(Kind::StringValue(text)) => Some(text),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            Some(Kind::NumberValue(number)) => Some(number),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Some(Kind::BoolValue(flag)) => Some(flag),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub fn as_struct(&self) -> Option<&Struct> {
        match &self.kind {
            Some(Kind::StructValue(object)) => Some(object),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_list(&self) -> Option<&[Value]> {
        match &self.kind {
            Some(Kind::ListValue(list)) => Some(&list.values),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Self { kind: Some(Kind::StringValue(text.to_owned())) }
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Self { kind: Some(Kind::StringValue(text)) }
    }
}

impl From<f64> for Value {
    fn from(number: f64) -> Self {
        Self { kind: Some(Kind::NumberValue(number)) }
    }
}

impl From<u16> for Value {
    fn from(number: u16) -> Self {
        Self::from(f64::from(number))
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Self {
        Self { kind: Some(Kind::BoolValue(flag)) }
    }
}

impl From<Struct> for Value {
    fn from(object: Struct) -> Self {
        Self { kind: Some(Kind::StructValue(object)) }
    }
}

impl From<Vec<Value>> for Value {
    fn from(values: Vec<Value>) -> Self {
        Self { kind: Some(Kind::ListValue(ListValue { values })) }
    }
}
