//! Tool policies as operators write them: YAML or JSON documents, validated into the
//! protocol's `Policy` (docs/policy.md). The decision itself lives in the protocol crate, so
//! that `guardctl policy check` and the filter agree.

pub mod check;
pub mod document;
