//! Work on a long slice shared out among the cores: one contiguous part a thread, the results
//! in the slice's order (the jobs of a large config read, the fires of thousands of distinct
//! triggers worked out for `list`).

/// `work` on each part of `items`, one part a core, but no part shorter than `per_thread`
/// (fewer items are worked on the calling thread); the parts' results joined in order. A
/// panic in a part is raised again here.
pub fn in_order<T: Sync, R: Send>(
    items: &[T],
    per_thread: usize,
    work: impl Fn(&[T]) -> Vec<R> + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len() / per_thread.max(1))
        .max(1);
    if threads == 1 {
        return work(items);
    }
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|part| s.spawn(|| work(part)))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_results_come_back_in_the_order_of_the_items() {
        let items: Vec<u32> = (0..10_007).collect();
        let doubled = in_order(&items, 1_000, |part| part.iter().map(|i| i * 2).collect());
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        // Below `per_thread`, and with none at all.
        assert_eq!(
            in_order(&items[..3], 1_000, |part| part.to_vec()),
            [0, 1, 2]
        );
        assert!(in_order(&[] as &[u32], 0, |part| part.to_vec()).is_empty());
    }
}
