//! Serving readers: the memlogd query socket, and the daemon that ties sources, ring and servers together.

pub mod daemon;
pub mod loki;
pub mod memlogq;
