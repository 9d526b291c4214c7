use super::staged::is_empty_range;
use super::*;
use std::collections::BTreeMap;

#[tokio::test]
async fn batch_apply_range_and_reopen() {
    let dir = std::env::temp_dir().join(format!("confab-store-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store = SledStore::open(&dir).unwrap();
        let mut batch = WriteBatch::default();
        batch.put(Tree::Users, b"a".to_vec(), b"1".to_vec());
        batch.put(Tree::Users, b"b".to_vec(), b"2".to_vec());
        batch.put(Tree::Chats, b"a".to_vec(), b"x".to_vec());
        store.apply(batch).unwrap();
        store.flush().await.unwrap();
        let all = store.range(Tree::Users, prefix_range(b""), true, 10).unwrap();
        assert_eq!(all, vec![(b"b".to_vec(), b"2".to_vec()), (b"a".to_vec(), b"1".to_vec())]);
        let mut batch = WriteBatch::default();
        batch.delete(Tree::Users, b"a".to_vec());
        store.apply(batch).unwrap();
        store.flush().await.unwrap();
    }
    let store = SledStore::open(&dir).unwrap();
    assert_eq!(store.get(Tree::Users, b"a").unwrap(), None);
    assert_eq!(store.get(Tree::Chats, b"a").unwrap(), Some(b"x".to_vec()));
    assert_eq!(prefix_range(&[1, 255]), (Bound::Included(vec![1, 255]), Bound::Excluded(vec![2])));
    let _ = std::fs::remove_dir_all(&dir);
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("confab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// What a crash leaves: log segments sled never saw, the last one ending in half a record.
/// Opening replays the whole records in order (a later delete wins over an earlier put),
/// drops the half one, and leaves only a fresh segment.
#[test]
fn open_replays_the_log_a_crash_left() {
    let dir = fresh_dir("store-replay");
    let log_dir = wal::directory(&dir);
    let mut first = wal::create_segment(&log_dir, 7).unwrap();
    let mut batch = WriteBatch::default();
    batch.put(Tree::Users, b"alice".to_vec(), b"1".to_vec());
    batch.put(Tree::Chats, b"c".to_vec(), b"x".to_vec());
    first.append(&wal::encode_record(&batch).unwrap()).unwrap();
    let mut second = wal::create_segment(&log_dir, 8).unwrap();
    let mut batch = WriteBatch::default();
    batch.delete(Tree::Users, b"alice".to_vec());
    batch.put(Tree::Users, b"bob".to_vec(), b"2".to_vec());
    second.append(&wal::encode_record(&batch).unwrap()).unwrap();
    let mut torn = WriteBatch::default();
    torn.put(Tree::Users, b"carol".to_vec(), b"3".to_vec());
    let torn = wal::encode_record(&torn).unwrap();
    second.append(&torn[..torn.len() - 1]).unwrap();
    drop((first, second));

    let store = SledStore::open(&dir).unwrap();
    assert_eq!(store.get(Tree::Users, b"alice").unwrap(), None);
    assert_eq!(store.get(Tree::Users, b"bob").unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get(Tree::Chats, b"c").unwrap(), Some(b"x".to_vec()));
    assert_eq!(store.get(Tree::Users, b"carol").unwrap(), None);
    assert_eq!(wal::segment_numbers(&log_dir).unwrap(), vec![9]);
    drop(store);
    // A clean close checkpoints: nothing left to replay.
    assert_eq!(wal::segment_numbers(&log_dir).unwrap(), Vec::<u64>::new());
    let store = SledStore::open(&dir).unwrap();
    assert_eq!(store.get(Tree::Users, b"bob").unwrap(), Some(b"2".to_vec()));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Full segments are closed, checkpointed and deleted while writes go on, and nothing
/// written is lost across the rotations.
#[test]
fn full_segments_are_checkpointed_and_deleted() {
    let dir = fresh_dir("store-rotate");
    let log_dir = wal::directory(&dir);
    let store = SledStore::open_with_options(&dir, DEFAULT_CACHE_BYTES, 4096).unwrap();
    for i in 0u32..400 {
        let mut batch = WriteBatch::default();
        batch.put(Tree::Messages, i.to_be_bytes().to_vec(), vec![b'm'; 100]);
        store.apply(batch).unwrap();
        store.flush_blocking().unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while wal::segment_numbers(&log_dir).unwrap().len() > 2 {
        assert!(std::time::Instant::now() < deadline, "segments never deleted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(wal::segment_numbers(&log_dir).unwrap()[0] > 5);
    drop(store);
    let store = SledStore::open(&dir).unwrap();
    let all = store.range(Tree::Messages, prefix_range(b""), false, 1000).unwrap();
    assert_eq!(all.len(), 400);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plain in-memory store: the model the staged view is checked against.
#[derive(Default)]
struct Model(BTreeMap<Vec<u8>, Vec<u8>>);

impl KvRead for Model {
    fn get(&self, _tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.get(key).cloned())
    }

    fn scan(&self, _tree: Tree, scan: Scan) -> Result<Vec<KeyValue>, StoreError> {
        if is_empty_range(&scan.range) {
            return Ok(Vec::new());
        }
        let entries = self.0.range(scan.range).map(|(k, v)| (k.clone(), v.clone()));
        Ok(if scan.reverse {
            entries.rev().take(scan.limit).collect()
        } else {
            entries.take(scan.limit).collect()
        })
    }
}

fn key() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..4, 0..3)
}

fn bound() -> impl proptest::strategy::Strategy<Value = Bound<Vec<u8>>> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

proptest::proptest! {
    /// Reads through staged writes equal reads of the store with the writes applied, and
    /// `take` hands back exactly those writes.
    #[test]
    fn staged_reads_match_the_applied_model(
        stored in proptest::collection::btree_map(key(), key(), 0..12),
        writes in proptest::collection::vec((key(), proptest::option::of(key())), 0..12),
        start in bound(),
        end in bound(),
        reverse in proptest::bool::ANY,
        limit in 0usize..8,
    ) {
        let base = Model(stored);
        let mut staged = Staged::default();
        let mut applied = Model(base.0.clone());
        for (key, value) in &writes {
            let mut batch = WriteBatch::default();
            match value {
                Some(value) => {
                    batch.put(Tree::Users, key.clone(), value.clone());
                    applied.0.insert(key.clone(), value.clone());
                }
                None => {
                    batch.delete(Tree::Users, key.clone());
                    applied.0.remove(key);
                }
            }
            staged.stage(batch);
        }
        let view = staged.over(&base);
        let range = (start, end);
        proptest::prop_assert_eq!(
            view.range(Tree::Users, range.clone(), reverse, limit).unwrap(),
            applied.range(Tree::Users, range, reverse, limit).unwrap()
        );
        for (key, _) in &writes {
            proptest::prop_assert_eq!(
                view.get(Tree::Users, key).unwrap(),
                applied.get(Tree::Users, key).unwrap()
            );
        }
        let mut replayed = Model(base.0.clone());
        for (tree, key, value) in staged.take().ops {
            proptest::prop_assert_eq!(tree, Tree::Users);
            match value {
                Some(value) => replayed.0.insert(key, value),
                None => replayed.0.remove(&key),
            };
        }
        proptest::prop_assert_eq!(replayed.0, applied.0);
        proptest::prop_assert!(staged.is_empty());
    }
}
