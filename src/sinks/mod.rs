//! Sinks send entries out of the ring: per-source files with rotation.
