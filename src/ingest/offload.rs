//! Where the CPU work on one message (parsing, hashing) runs: a large
//! message goes to the blocking pool so it does not hold up the I/O
//! threads; a small one is done right here, because handing it to the pool
//! and back costs two thread wake-ups, which on a busy gateway take longer
//! than parsing 10 KB. Either way a panic becomes an `Err`, not a crash.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Up to this many bytes a message is worked on in place.
pub const INLINE_MAX: usize = 64 * 1024;

/// A panic inside the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Runs `work` on a message of `size` bytes: in place up to [`INLINE_MAX`],
/// on the blocking pool above it.
pub async fn run<T, F>(size: usize, work: F) -> Result<T, Panicked>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if size <= INLINE_MAX {
        catch_unwind(AssertUnwindSafe(work)).map_err(|_| Panicked)
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Panicked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_work_runs_on_the_calling_thread_and_large_work_does_not() {
        let here = std::thread::current().id();
        let small = run(INLINE_MAX, move || std::thread::current().id())
            .await
            .unwrap();
        assert_eq!(small, here);
        let large = run(INLINE_MAX + 1, move || std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(large, here);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_either_way() {
        for size in [10, INLINE_MAX + 1] {
            let outcome: Result<(), Panicked> = run(size, || panic!("parser bug")).await;
            assert_eq!(outcome, Err(Panicked), "size {size}");
        }
    }
}
