//! The generated types (see `gen/`), kept apart so lints for hand-written code do not apply.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, rustdoc::all)]

include!("gen/mod.rs");
include!("gen/messages.rs");
