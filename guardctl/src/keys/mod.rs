//! What a key is and the rules it follows, shared by the API and the CLI: issuing tokens
//! (`token.rs`), the rules of names, labels and lifetimes (`rules.rs`), and import rows
//! (`import.rs`).

pub mod import;
pub mod rules;
pub mod token;
