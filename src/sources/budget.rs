//! The daemon-wide budget of request bytes held while they are decoded and
//! stored (`--http-max-inflight`), shared by every HTTP way in
//! (`POST /api/v1/entries`, `POST /loki/api/v1/push`).
//!
//! What it promises: however many requests arrive at once, the bytes they
//! hold (bodies as received, a protobuf push once decompressed, and a fixed
//! working allowance per request for the batch being stored) stay under the
//! budget, so memory is bounded by configuration. A request that cannot get
//! its share waits up to [`Budget::wait`] for others to finish, then is
//! refused as overloaded (HTTP 429 with `Retry-After`, Loki's answer when
//! it sheds load); one that needs more than the whole budget is refused at
//! once. Nothing is allocated before it is paid for: bodies are charged
//! chunk by chunk as they arrive, a protobuf body's decompressed size
//! (known from its header) before it is decompressed.
//!
//! Built on a tokio semaphore counting KiB, so a waiting request costs no
//! CPU and is woken as soon as bytes are given back (fairly, in order).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default budget: 64 MiB.
pub const DEFAULT_BYTES: usize = 64 << 20;
/// How long a request waits for its share by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// What every request is charged besides its body: the batch it stores
/// (at most 1 MiB of messages, see `loki_push`) and the decoder's buffers.
pub const WORKING_BYTES: usize = 2 << 20;

/// The budget. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
    total_kib: u32,
    wait: Duration,
    /// Requests refused because the budget stayed spent.
    refused: AtomicU64,
}

/// Why a request got no share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    /// The budget stayed spent for the whole wait: retry later.
    #[error(
        "ringtail is decoding {in_use} KiB of other requests, its whole --http-max-inflight \
         budget; retry in a moment"
    )]
    Busy { in_use: u32 },
    /// The request alone needs more than the whole budget.
    #[error(
        "this request needs {need} KiB while it is decoded, more than the whole \
         --http-max-inflight budget of {total} KiB; send smaller requests or raise the budget"
    )]
    TooLarge { need: u64, total: u32 },
}

/// Bytes taken from the budget; given back when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// KiB held.
    pub fn kib(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    fn add(&mut self, more: OwnedSemaphorePermit) {
        match &mut self.permit {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
    }
}

impl Budget {
    /// A budget of `bytes` (rounded up to KiB, at least 1 MiB); requests
    /// wait up to `wait` for their share.
    pub fn new(bytes: usize, wait: Duration) -> Arc<Budget> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX >> 4)
            .clamp(1024, u32::MAX >> 4);
        Arc::new(Budget {
            semaphore: Arc::new(Semaphore::new(kib as usize)),
            total_kib: kib,
            wait,
            refused: AtomicU64::new(0),
        })
    }

    /// How long a request waits for its share.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// KiB in use now.
    pub fn in_use_kib(&self) -> u32 {
        self.total_kib - self.semaphore.available_permits() as u32
    }

    pub fn total_kib(&self) -> u32 {
        self.total_kib
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Adds `bytes` to `charge`, waiting up to [`wait`](Self::wait) for
    /// them. On an error the charge keeps what it held (the caller drops
    /// it, with the request).
    pub async fn take(&self, charge: &mut Charge, bytes: usize) -> Result<(), Overloaded> {
        if bytes == 0 {
            return Ok(());
        }
        let kib = bytes.div_ceil(1024) as u64;
        let held = charge.kib() as u64;
        if kib + held > u64::from(self.total_kib) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Overloaded::TooLarge {
                need: kib + held,
                total: self.total_kib,
            });
        }
        let acquire = self.semaphore.clone().acquire_many_owned(kib as u32);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => {
                charge.add(permit);
                Ok(())
            }
            // The semaphore is never closed; a timeout means overloaded.
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(Overloaded::Busy {
                    in_use: self.in_use_kib(),
                })
            }
        }
    }

    /// [`take`](Self::take) from a blocking thread (a decoder running on
    /// tokio's blocking pool).
    pub fn take_blocking(&self, charge: &mut Charge, bytes: usize) -> Result<(), Overloaded> {
        tokio::runtime::Handle::current().block_on(self.take(charge, bytes))
    }
}

/// Reads a request body, charging what it allocates to `budget` as it
/// grows (the allocation, not just the bytes: a buffer grows by doubling);
/// at most `max` bytes. `size_hint` (the `Content-Length`, when sent) lets
/// the buffer be allocated once, at its size.
pub async fn collect(
    body: axum::body::Body,
    max: usize,
    size_hint: Option<u64>,
    budget: &Budget,
    charge: &mut Charge,
) -> Result<axum::body::Bytes, CollectError> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut out: Vec<u8> = Vec::new();
    if let Some(n) = size_hint {
        let n = usize::try_from(n).map_err(|_| CollectError::TooLarge)?;
        if n > max {
            return Err(CollectError::TooLarge);
        }
        budget
            .take(charge, n)
            .await
            .map_err(CollectError::Overloaded)?;
        out.reserve_exact(n);
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CollectError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let need = out.len() + data.len();
        if need > max {
            return Err(CollectError::TooLarge);
        }
        if need > out.capacity() {
            let grown = need.max(out.capacity().saturating_mul(2)).min(max);
            budget
                .take(charge, grown - out.capacity())
                .await
                .map_err(CollectError::Overloaded)?;
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&data);
    }
    Ok(axum::body::Bytes::from(out))
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("the request body is over the size limit")]
    TooLarge,
    #[error("{0}")]
    Overloaded(Overloaded),
    #[error("cannot read the request body: {0}")]
    Read(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_share_the_budget_and_wait_then_are_refused() {
        let budget = Budget::new(2 << 20, Duration::from_millis(50));
        let mut a = Charge::default();
        budget.take(&mut a, 1 << 20).await.unwrap();
        budget.take(&mut a, 512 << 10).await.unwrap();
        assert_eq!(a.kib(), 1536);
        let mut b = Charge::default();
        assert!(matches!(
            budget.take(&mut b, 1 << 20).await,
            Err(Overloaded::Busy { .. })
        ));
        assert_eq!(budget.refused(), 1);
        // Given back when the first request ends.
        drop(a);
        budget.take(&mut b, 1 << 20).await.unwrap();
        let mut c = Charge::default();
        assert!(matches!(
            budget.take(&mut c, 3 << 20).await,
            Err(Overloaded::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_waiting_request_gets_its_share_when_bytes_are_given_back() {
        let budget = Budget::new(1 << 20, Duration::from_secs(30));
        let mut a = Charge::default();
        budget.take(&mut a, 1 << 20).await.unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut b = Charge::default();
                budget.take(&mut b, 1 << 20).await.map(|()| b.kib())
            })
        };
        tokio::task::yield_now().await;
        drop(a);
        assert_eq!(waiter.await.unwrap(), Ok(1024));
    }
}
