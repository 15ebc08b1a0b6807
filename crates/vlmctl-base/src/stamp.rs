//! When a file's stamp may stand for a hash: the one rule, used by the local verify cache
//! (`vlmctl-weights`' `FileStamp`) and by the stamps pushed files get on a host
//! (`vlmctl-lifecycle`'s `HostStamp`).
//!
//! A stamp records what `stat` says of a file that verified (size, mtime, ctime, inode, device);
//! while none of them changes, the content is taken not to have changed either, and the file is
//! not hashed again. Timestamps come from a coarse clock, though: the kernel stamps a change with
//! its current tick (1/HZ, 1 to 10 ms), not the exact instant. A same-size change made within the
//! tick in which the hash started leaves mtime and ctime where they were, so a hash of the old
//! content would pass for the new one ("racily clean", as git calls it). A stamp is therefore
//! trusted only when the file's last change, both its mtime and its ctime, is older than the
//! hash's start by more than [`RACY_WINDOW_NS`], well above any timestamp tick: a file changed
//! in that window is hashed again next time, and stamped then.

/// How much older than the start of a hash a file's last change (mtime and ctime) must be for
/// the hash to be stamped: 100 ms, well above the kernel's timestamp tick (1/HZ: 1 to 10 ms).
pub const RACY_WINDOW_NS: i128 = 100_000_000;

/// Whether a file whose mtime and ctime (ns since the epoch) are these was settled when its hash
/// started at `hashed_at_ns` (ns since the epoch, the same clock): both strictly older than the
/// start minus [`RACY_WINDOW_NS`]. Only then may the hash be stamped.
#[must_use]
pub fn settled(mtime_ns: i128, ctime_ns: i128, hashed_at_ns: i128) -> bool {
    let limit = hashed_at_ns.saturating_sub(RACY_WINDOW_NS);
    mtime_ns < limit && ctime_ns < limit
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i128 = 1_700_000_000_000_000_000;
    const EDGE: i128 = START - RACY_WINDOW_NS;

    #[test]
    fn a_change_older_than_the_window_is_settled() {
        assert!(settled(EDGE - 1, EDGE - 1, START));
        assert!(settled(0, 0, START));
    }

    #[test]
    fn a_change_exactly_at_the_window_or_inside_it_is_not() {
        assert!(
            !settled(EDGE, EDGE - 1, START),
            "mtime exactly at the window"
        );
        assert!(
            !settled(EDGE - 1, EDGE, START),
            "ctime exactly at the window"
        );
        assert!(!settled(EDGE + 1, EDGE + 1, START), "one ns inside");
        assert!(!settled(START, START, START), "changed as the hash started");
    }

    #[test]
    fn a_ctime_only_change_is_enough_to_distrust() {
        // `touch -r` sets the mtime back after an edit; the ctime it cannot set back.
        assert!(!settled(0, EDGE + 1, START));
        assert!(!settled(0, START + 5, START));
    }

    #[test]
    fn an_mtime_in_the_window_is_enough_to_distrust() {
        assert!(!settled(EDGE + 1, 0, START));
    }

    #[test]
    fn a_start_near_the_bottom_of_the_clock_does_not_overflow() {
        assert!(!settled(i128::MIN, i128::MIN, i128::MIN));
    }
}
