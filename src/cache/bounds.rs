//! How much an in-process cache may hold.

/// How much an in-process cache may hold: both bounds apply, neither more than `max_entries`
/// entries nor more than `max_bytes` (estimated) are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBounds {
    pub max_entries: u64,
    pub max_bytes: u64,
}

impl MemoryBounds {
    /// The weight a moka cache bounded by `max_bytes` counts for an entry of `bytes` (moka
    /// weighs in `u32`): its bytes, but at least `max_bytes / max_entries`, so the count bound
    /// holds as well.
    pub fn weight(&self, bytes: usize) -> u32 {
        let floor = self.max_bytes.div_ceil(self.max_entries.max(1));
        u32::try_from((bytes as u64).max(floor)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_weighs_its_estimated_bytes_but_at_least_its_share_of_the_entry_count() {
        let bounds = MemoryBounds { max_entries: 1_000, max_bytes: 1_000_000 };

        assert_eq!(bounds.weight(5_000), 5_000);
        assert_eq!(bounds.weight(10), 1_000);
    }
}
