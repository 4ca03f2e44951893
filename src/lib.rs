//! ringtail: a host's recent logs in a fixed-size, lock-free ring in memory,
//! served to every kind of reader.
//!
//! The modules follow the data path: [`sources`] bring lines in, the
//! [`ring`] keeps them, `serve` answers readers, `sinks` send entries out.

pub mod entry;
pub mod ring;
