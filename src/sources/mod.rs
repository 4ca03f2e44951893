//! Sources bring lines into the ring: the memlogd fd-passing socket first.
