//! The process's open-file limit: raised to the hard limit at start, and
//! the part of it the listeners' connections may hold
//! (`posthorn_ratelimit::FdBudget`), so that idle connections on one
//! listener cannot leave the store, delivery, DNS or the other listeners
//! without descriptors: a listener refuses (SMTP `421 4.3.2`, HTTP 503)
//! while `accept` still works, long before it would fail with `EMFILE`.

use posthorn_ratelimit::FdBudget;

/// Descriptors kept back for everything that is not a listener's
/// connection, besides delivery's and the store's own connections: the
/// store's files, DNS sockets, webhook and Redis connections, TLS refusal
/// handshakes, log files.
pub const BASE_RESERVE: u64 = 256;

/// The fewest descriptors connections get whatever the limit, so that a
/// tiny limit still serves a few.
const MIN_BUDGET: u64 = 32;

/// What [`raise`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit the process started with.
    pub was: u64,
    /// The soft limit now.
    pub limit: u64,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (what systemd's
/// `LimitNOFILE=` or `ulimit -Hn` allows). `None` when the limit cannot be
/// read.
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, narrower elsewhere
pub fn raise() -> Option<FdLimit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return None;
    }
    let was = rl.rlim_cur as u64;
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given. It fails where
        // the hard limit is "unlimited" but the kernel caps it lower
        // (macOS); the old soft limit then stays.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(FdLimit {
                was,
                limit: rl.rlim_max as u64,
            });
        }
    }
    Some(FdLimit { was, limit: was })
}

/// Descriptors open now (`/proc/self/fd`, else `/dev/fd`; 0 when neither
/// can be read).
pub fn open_now() -> u64 {
    ["/proc/self/fd", "/dev/fd"]
        .iter()
        .find_map(|dir| std::fs::read_dir(dir).ok())
        .map(|entries| entries.count() as u64)
        .unwrap_or(0)
}

/// The budget of `limit` descriptors when `open` are open already and
/// `reserve` more are kept for the rest of the process.
pub fn budget(limit: u64, open: u64, reserve: u64) -> FdBudget {
    FdBudget::new(
        limit
            .saturating_sub(open)
            .saturating_sub(reserve)
            .max(MIN_BUDGET),
    )
}

/// The most one listener family (SMTP, HTTP) may take of `budget`: three
/// quarters, so whichever fills up the others keep a quarter, and never
/// more than its own `configured` cap (0: none).
pub fn share(budget: &FdBudget, configured: u64) -> u64 {
    let most = (budget.total() * 3 / 4).max(1);
    if configured == 0 {
        most
    } else {
        configured.min(most)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unnecessary_cast)]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let found = raise().expect("getrlimit");
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
        assert_eq!(found.limit, rl.rlim_cur as u64);
        assert!(found.limit >= found.was);
        assert!(open_now() >= 3, "stdin, stdout and stderr at least");
    }

    #[test]
    fn the_budget_keeps_the_reserve_and_each_family_a_share() {
        let b = budget(65_536, 40, 500);
        assert_eq!(b.total(), 64_996);
        assert_eq!(share(&b, 10_000), 10_000);
        assert_eq!(share(&b, 0), 48_747);
        let small = budget(1_024, 40, 500);
        assert_eq!(small.total(), 484);
        assert_eq!(share(&small, 10_000), 363);
        // Whichever family fills its share, the other gets the rest.
        assert!(share(&small, 10_000) * 2 > small.total());
        assert!(small.total() - share(&small, 10_000) >= small.total() / 4);
        assert_eq!(budget(300, 40, 500).total(), MIN_BUDGET);
    }
}
