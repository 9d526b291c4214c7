//! The organisation's key pair, kept as its seed under `org_key` in `meta/v1`: made and flushed
//! on the node's first start, read by the engine, the push sender, federation and the CLI.

use crate::store::{KvRead, KvStore, StoreError, Tree, WriteBatch};
use confab_protocol::OrgKey;

/// Errors reading or making the organisation key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored organisation key is damaged")]
    BadKey,
    #[error("random number generator failed: {0}")]
    Random(String),
}

/// The organisation key, if the store has one.
pub fn read_org_key(store: &dyn KvRead) -> Result<Option<OrgKey>, KeyError> {
    let Some(seed) = store.get(Tree::Meta, b"org_key")? else {
        return Ok(None);
    };
    let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| KeyError::BadKey)?;
    Ok(Some(OrgKey::from_seed(seed)))
}

/// Loads the organisation key from the store, creating and flushing it on first start.
pub async fn load_or_create_org_key(store: &dyn KvStore) -> Result<OrgKey, KeyError> {
    if let Some(key) = read_org_key(store)? {
        return Ok(key);
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let mut batch = WriteBatch::default();
    batch.put(Tree::Meta, b"org_key".to_vec(), seed.to_vec());
    store.apply(batch)?;
    store.flush().await?;
    Ok(OrgKey::from_seed(seed))
}
