//! Self-verifying messages for the ring's stress and crash tests: each
//! message carries its writer, its per-writer counter, a variable-length
//! body and a checksum of all of that, so any torn or mixed-up entry is
//! detected by the reader alone.

/// FNV-1a, 64-bit: cheap and sensitive to every byte.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// `w=<writer> n=<counter> <body> #<checksum hex>`; the body length varies
/// with the counter (0..=max_body bytes) so entries straddle word and ring
/// boundaries in every way.
pub fn message(writer: u32, counter: u64, max_body: usize) -> Vec<u8> {
    let body_len = (counter.wrapping_mul(2654435761) % (max_body as u64 + 1)) as usize;
    let fill = b'a' + (counter % 26) as u8;
    let mut m = format!("w={writer} n={counter} ").into_bytes();
    m.extend(std::iter::repeat_n(fill, body_len));
    let sum = fnv(&m);
    m.extend_from_slice(format!(" #{sum:016x}").as_bytes());
    m
}

/// Checks a message and returns `(writer, counter)`.
pub fn check(msg: &[u8]) -> Result<(u32, u64), String> {
    let text = std::str::from_utf8(msg).map_err(|_| format!("not UTF-8: {msg:?}"))?;
    let (body, sum) = text
        .rsplit_once(" #")
        .ok_or_else(|| format!("no checksum: {text:?}"))?;
    let sum = u64::from_str_radix(sum, 16).map_err(|_| format!("bad checksum field: {text:?}"))?;
    if fnv(body.as_bytes()) != sum {
        return Err(format!("checksum mismatch (torn entry): {text:?}"));
    }
    let mut it = body.split(' ');
    let w = it
        .next()
        .and_then(|w| w.strip_prefix("w="))
        .and_then(|w| w.parse().ok());
    let n = it
        .next()
        .and_then(|n| n.strip_prefix("n="))
        .and_then(|n| n.parse().ok());
    match (w, n) {
        (Some(w), Some(n)) => Ok((w, n)),
        _ => Err(format!("bad header: {text:?}")),
    }
}
