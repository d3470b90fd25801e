//! The command-line client of the admin API: the HTTP client (`client.rs`) and the tables it
//! prints for people (`human.rs`). The commands themselves are in `main.rs`.

pub mod client;
pub mod human;
