//! Store reads are synchronous (redb), so each runs on the blocking pool.

use super::error::ApiError;
use crate::store::{Store, StoreError};

pub async fn read<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r.map_err(ApiError::Store),
        Err(e) => Err(ApiError::Store(StoreError::Failed(e.to_string()))),
    }
}
