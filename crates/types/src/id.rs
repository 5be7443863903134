use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A message identifier: 48 bits of Unix milliseconds followed by 80 random
/// bits, written as 26 Crockford base-32 characters (the ULID layout), made
/// monotonic within a process. Identifiers sort by the time they were made,
/// which keeps the queue tables append-mostly.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(u128);

/// The last identifier this process made.
static LAST: Mutex<u128> = Mutex::new(0);

impl MessageId {
    /// A new identifier, greater than every identifier this process made
    /// before (even within one millisecond, or if the clock steps back).
    pub fn generate() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
        let candidate = ((now as u128) << 80) | random;
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let id = candidate.max(last.wrapping_add(1));
        *last = id;
        Self(id)
    }

    /// The smallest identifier made at Unix millisecond `ms` (ids made
    /// from then on are not less): a bound for time windows.
    pub fn first_at(ms: u64) -> Self {
        Self((ms as u128) << 80)
    }

    /// The identifier just before this one, if any.
    pub fn checked_pred(&self) -> Option<Self> {
        self.0.checked_sub(1).map(Self)
    }

    /// Milliseconds since the Unix epoch at which the identifier was made.
    pub fn timestamp_ms(&self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 26];
        let mut v = self.0;
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(v & 31) as usize];
            v >>= 5;
        }
        f.write_str(std::str::from_utf8(&out).expect("alphabet is ASCII"))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// The error for text that is not a message identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessageId;

impl fmt::Display for BadMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a message id (26 characters of Crockford base 32)")
    }
}

impl std::error::Error for BadMessageId {}

impl FromStr for MessageId {
    type Err = BadMessageId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 26 {
            return Err(BadMessageId);
        }
        let mut v: u128 = 0;
        for (i, c) in s.bytes().enumerate() {
            let c = c.to_ascii_uppercase();
            let digit = ALPHABET.iter().position(|&a| a == c).ok_or(BadMessageId)? as u128;
            if i == 0 && digit > 7 {
                return Err(BadMessageId); // would overflow 128 bits
            }
            v = (v << 5) | digit;
        }
        Ok(Self(v))
    }
}

/// A short random identifier for one HTTP request (`X-Request-Id`, the
/// `request_id` of the API's errors) and for webhook ids: 16 hex digits.
pub fn new_request_id() -> String {
    let v: u64 = rand::random();
    format!("{:016x}", v)
}

/// A random (version 4) UUID, lower case, `8-4-4-4-12`: the `RequestId` of
/// a business error line, in the form the Tencent guide shows.
pub fn new_uuid() -> String {
    let v: u128 = rand::random();
    let v = (v & !(0xf << 76)) | (0x4 << 76); // version 4
    let v = (v & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_creation() {
        let ids: Vec<MessageId> = (0..10_000).map(|_| MessageId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let (a, b) = (ids[0], ids[1]);
        assert!(a.to_string() < b.to_string());
        let parsed: MessageId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        assert_eq!(a.to_string().len(), 26);
    }

    #[test]
    fn rejects_malformed_ids() {
        assert!("".parse::<MessageId>().is_err());
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<MessageId>().is_err());
        assert!("0123456789ABCDEFGHJKMNPQRU".parse::<MessageId>().is_err());
    }
}
