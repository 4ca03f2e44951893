//! Serving readers: the memlogd query socket, the HTTP API, and the daemon that ties sources, ring and servers together.

pub mod daemon;
pub mod dashboard;
pub mod http;
pub mod loki;
pub mod memlogq;
