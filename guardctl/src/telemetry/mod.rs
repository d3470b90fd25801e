//! What guardctl tells operators: log lines (`logging.rs`) and Prometheus metrics
//! (`metrics.rs`).

pub mod logging;
pub mod metrics;
