//! The ring's synchronisation primitives, imported through one place so the
//! same protocol code runs on real atomics and under the loom model checker
//! (the `loom` feature), the way tokio shims its own.
//!
//! Under loom the 128-bit claim word is one loom `AtomicU64` packing both
//! halves: loom has no 128-bit atomic, and a single 64-bit location with the
//! same orderings keeps every weak-memory behaviour the model must explore
//! (a mutex would hide them: its lock order is total).

#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, Ordering};

#[cfg(feature = "loom")]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};

/// Stores `value` into `word` past the caches (x86-64 `movnti`), for rings
/// much larger than the caches: a plain store first reads the line it
/// writes into the cache (for a 1M-entry ring, from DRAM), a streaming
/// store does not, which halves the cost of an append (about 18 → 9 ns per
/// 128 bytes of entry here).
#[cfg(all(not(feature = "loom"), target_arch = "x86_64"))]
pub(crate) fn store_streaming(word: &AtomicU64, value: u64) {
    // SAFETY: an asm block must behave like some Rust code could; this one
    // behaves like `word.store(value, Ordering::Relaxed)`. `movnti` to an
    // 8-aligned quadword (an `AtomicU64` is) is a single-copy-atomic store
    // (Intel SDM vol. 3A §9.1.1), so readers see the old or the new value,
    // never a mix: the same as a relaxed atomic store, which is how every
    // reader accesses these words. Its ordering is weaker than a plain
    // `mov`: it can pass later stores. A relaxed store promises no order
    // either; where the protocol needs one (publishing a batch with a
    // release store) writers first call [`streaming_fence`], and it cannot
    // pass the locked compare-and-swap that claimed the room (SDM §9.2.2).
    // The pointer is valid: it comes from a live `&AtomicU64`.
    unsafe {
        std::arch::asm!(
            "movnti qword ptr [{p}], {v}",
            p = in(reg) word.as_ptr(),
            v = in(reg) value,
            options(nostack, preserves_flags),
        );
    }
}

/// Orders every earlier [`store_streaming`] before every later store.
#[cfg(all(not(feature = "loom"), target_arch = "x86_64"))]
pub(crate) fn streaming_fence() {
    // SAFETY: `sfence` only orders stores; it touches no memory or register
    // the compiler knows of.
    unsafe { std::arch::asm!("sfence", options(nostack, preserves_flags)) };
}

/// Without streaming stores, a relaxed store.
#[cfg(any(feature = "loom", not(target_arch = "x86_64")))]
pub(crate) fn store_streaming(word: &AtomicU64, value: u64) {
    word.store(value, Ordering::Relaxed);
}

#[cfg(any(feature = "loom", not(target_arch = "x86_64")))]
pub(crate) fn streaming_fence() {}

/// Whether [`load_pairs`] may be used: x86-64 processors that enumerate AVX
/// guarantee that 16-byte-aligned `MOVDQA` loads are single-copy atomic
/// (Intel SDM vol. 3A §9.1.1; AMD APM vol. 2 §7.3.2). portable-atomic relies
/// on the same guarantee for its 128-bit loads.
#[cfg(all(not(feature = "loom"), target_arch = "x86_64"))]
pub(crate) fn wide_loads() -> bool {
    std::arch::is_x86_feature_detected!("avx")
}

#[cfg(any(feature = "loom", not(target_arch = "x86_64")))]
pub(crate) fn wide_loads() -> bool {
    false
}

/// Copies `pairs` pairs of words from `src` to `dst` with 16-byte loads:
/// streaming a large ring from memory, 16-byte loads move about 1.5 times
/// the bytes per second that 8-byte loads do here (11 vs 7.3 GB/s).
///
/// # Safety
/// [`wide_loads`] returned true; `pairs >= 1`; `src` is 16-byte aligned and
/// the `2 * pairs` words from it are live `AtomicU64`s; `dst` is valid for
/// `16 * pairs` bytes of writes that nothing else reads or writes meanwhile.
#[cfg(all(not(feature = "loom"), target_arch = "x86_64"))]
pub(crate) unsafe fn load_pairs(src: &AtomicU64, pairs: usize, dst: *mut u8) {
    // SAFETY: an asm block must behave like some Rust code could; this one
    // behaves like `pairs` iterations of two relaxed atomic loads of the
    // words at `src` followed by plain stores of their bytes to `dst`. Each
    // aligned 16-byte `MOVDQA` load is single-copy atomic on a processor
    // with AVX (the caller checked `wide_loads`), so it observes each of
    // the two words as some value a relaxed load could return, never a mix
    // of two writes; every other access to these words is atomic, so there
    // is no data race. The caller guarantees the alignment, that the words
    // are live, and that `dst` may be written; the block touches no stack
    // and clobbers only the registers declared.
    unsafe {
        std::arch::asm!(
            "2:",
            "movdqa {x}, xmmword ptr [{src}]",
            "movdqu xmmword ptr [{dst}], {x}",
            "add {src}, 16",
            "add {dst}, 16",
            "dec {n}",
            "jnz 2b",
            src = inout(reg) src.as_ptr() => _,
            dst = inout(reg) dst => _,
            n = inout(reg) pairs => _,
            x = out(xmm_reg) _,
            options(nostack),
        );
    }
}

#[cfg(any(feature = "loom", not(target_arch = "x86_64")))]
pub(crate) unsafe fn load_pairs(_src: &AtomicU64, _pairs: usize, _dst: *mut u8) {
    unreachable!("wide_loads() is false here");
}

/// Asks the CPU to start loading the cache line holding `word` into its
/// caches. Only a hint: it reads nothing the program can see, cannot fault
/// (any address is allowed), and does nothing where it is not supported.
#[inline(always)]
pub(crate) fn prefetch(word: *const AtomicU64) {
    #[cfg(all(not(feature = "loom"), target_arch = "x86_64"))]
    // SAFETY: PREFETCHT0 has no architectural effect: it accesses no memory
    // the program observes, raises no fault for any address, and changes no
    // register or flag, so it behaves like Rust code that does nothing.
    unsafe {
        std::arch::asm!(
            "prefetcht0 [{p}]",
            p = in(reg) word,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(any(feature = "loom", not(target_arch = "x86_64")))]
    let _ = word;
}

/// Gives the CPU (or, under loom, the model) to another thread while waiting
/// for a predecessor writer.
#[cfg(not(feature = "loom"))]
pub(crate) fn spin_wait(step: &mut u32) {
    if *step < 6 {
        for _ in 0..(1u32 << *step) {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
    *step = step.saturating_add(1);
}

#[cfg(feature = "loom")]
pub(crate) fn spin_wait(_step: &mut u32) {
    loom::thread::yield_now();
}

/// The claim word: `(next seq, next data word position)`, changed only by a
/// compare-and-swap of both halves at once so that a batch gets a seq range
/// and a byte range in the same order as every other batch.
#[cfg(not(feature = "loom"))]
pub(crate) struct ClaimWord<'a> {
    /// Header words 8 and 9 of the ring's region.
    word: &'a portable_atomic::AtomicU128,
}

#[cfg(not(feature = "loom"))]
impl ClaimWord<'_> {
    /// # Safety
    /// `ptr` must be 16-byte aligned, valid for reads and writes for as long
    /// as the returned value lives, and only ever accessed atomically.
    pub(crate) unsafe fn from_ptr<'a>(ptr: *mut u64) -> ClaimWord<'a> {
        // SAFETY: the caller guarantees alignment, validity for the lifetime
        // of the value, and atomic-only access; `AtomicU128` has the size and
        // alignment of `u128`, which is what the two words form.
        let word = unsafe { portable_atomic::AtomicU128::from_ptr(ptr.cast::<u128>()) };
        ClaimWord { word }
    }

    pub(crate) fn load(&self) -> (u64, u64) {
        split(self.word.load(Ordering::Acquire))
    }

    /// Replaces `current` by `new`; on failure returns what was there.
    pub(crate) fn compare_exchange(
        &self,
        current: (u64, u64),
        new: (u64, u64),
    ) -> Result<(), (u64, u64)> {
        self.word
            .compare_exchange_weak(
                join(current),
                join(new),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(split)
    }

    /// Stores a value outside any concurrent use (open and recovery).
    pub(crate) fn store(&self, value: (u64, u64)) {
        self.word.store(join(value), Ordering::Release)
    }
}

#[cfg(not(feature = "loom"))]
fn split(v: u128) -> (u64, u64) {
    ((v >> 64) as u64, v as u64)
}

#[cfg(not(feature = "loom"))]
fn join((seq, pos): (u64, u64)) -> u128 {
    ((seq as u128) << 64) | pos as u128
}

/// Under loom the claim word is one loom `AtomicU64` holding both halves
/// (seq in the high 32 bits): like the real 128-bit word it is a single
/// atomic location with the same orderings, so loom models the weak-memory
/// behaviour around it faithfully. Models stay far below 2^32.
#[cfg(feature = "loom")]
pub(crate) struct ClaimWord {
    word: AtomicU64,
}

#[cfg(feature = "loom")]
impl ClaimWord {
    pub(crate) fn new() -> ClaimWord {
        ClaimWord {
            word: AtomicU64::new(1 << 32),
        }
    }

    pub(crate) fn load(&self) -> (u64, u64) {
        split(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn compare_exchange(
        &self,
        current: (u64, u64),
        new: (u64, u64),
    ) -> Result<(), (u64, u64)> {
        self.word
            .compare_exchange(
                join(current),
                join(new),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(split)
    }

    pub(crate) fn store(&self, value: (u64, u64)) {
        self.word.store(join(value), Ordering::Release)
    }
}

#[cfg(feature = "loom")]
fn split(v: u64) -> (u64, u64) {
    (v >> 32, v & 0xffff_ffff)
}

#[cfg(feature = "loom")]
fn join((seq, pos): (u64, u64)) -> u64 {
    assert!(
        seq < 1 << 32 && pos < 1 << 32,
        "loom models use small rings"
    );
    seq << 32 | pos
}

/// Wakes followers. Writers call [`Notifier::notify`] after every
/// publication; with no follower waiting that is one atomic load and no
/// syscall (event-listener's fast path).
///
/// A publication wakes one waiting follower, and each follower that wakes
/// to something new wakes the next one ([`Notifier::pass_on`]) before it
/// reads: a chain. Waking them all at once handed the runtime a queue of
/// tasks at once, and tokio woke a second worker thread to steal from it:
/// with two followers, each line cost two extra thread wake-ups and a
/// contended scheduler lock (measured with `strace` and per-thread context
/// switch counts), which doubled the followers' tail latency. A chain lets
/// each woken task land in the current worker's next-task slot, so the
/// thread that stored the line delivers it to every follower, the way a
/// single-threaded relay does.
///
/// Why no follower is missed: followers wait in the order they started
/// waiting, and [`pass_on`](Notifier::pass_on) wakes the oldest one not yet
/// woken. Every follower that started waiting before a publication either
/// is woken by the chain or is still waiting behind a woken one that has
/// not run yet; that one sees the publication when it runs (it is stored
/// before the notification) and passes the wake on. A woken follower that
/// is dropped before it runs passes its wake on (event-listener does that
/// for a notified listener dropped unused). A follower that starts waiting
/// after a publication checks for new entries after it starts waiting, so
/// it needs no wake. A follower woken with nothing new (by a chain from an
/// older publication) does not pass the wake on, so the chain ends.
#[cfg(not(feature = "loom"))]
#[derive(Default)]
pub(crate) struct Notifier {
    event: event_listener::Event,
}

#[cfg(not(feature = "loom"))]
impl Notifier {
    /// After a publication: wakes the oldest waiting follower, unless one
    /// is woken and has not run yet (it will see this publication).
    pub(crate) fn notify(&self) {
        self.event.notify(1);
    }

    /// Called by a follower woken to something new: wakes the next one.
    pub(crate) fn pass_on(&self) {
        use event_listener::IntoNotification as _;
        self.event.notify(1.additional());
    }

    pub(crate) fn listen(&self) -> event_listener::EventListener {
        self.event.listen()
    }
}

/// Under loom followers poll with `yield_now`, so nothing needs waking.
#[cfg(feature = "loom")]
#[derive(Default)]
pub(crate) struct Notifier;

#[cfg(feature = "loom")]
impl Notifier {
    pub(crate) fn notify(&self) {}

    #[allow(dead_code)]
    pub(crate) fn pass_on(&self) {}
}
