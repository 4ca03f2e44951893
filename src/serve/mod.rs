//! Serving readers: the memlogd query socket, the HTTP API (with the Loki
//! API and the dashboard).

pub mod dashboard;
pub mod follow;
pub mod http;
pub mod loki;
pub mod memlogq;
