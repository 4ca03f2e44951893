//! ringtail: a host's recent logs in a fixed-size, lock-free ring in memory,
//! served to every kind of reader.
//!
//! The modules follow the data path: [`sources`] bring lines in, the
//! [`ring`] keeps them, [`serve`] answers readers, [`sinks`] send entries
//! out. [`entry`] is the one entry model all of them share.
//!
//! `unsafe` is denied outside [`ring`], which lists the files that hold it.

#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod daemon;
pub mod entry;
pub mod filter;
pub mod format;
pub mod listener;
pub mod ring;
pub mod selflog;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod timefmt;
