//! Tests of the search index, each on a real on-disk index in its own temporary directory.

use super::query::CHAT_TERMS_MAX;
use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "confab-search-test-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const HEAP: usize = 20_000_000;

fn open() -> (TempDir, SearchIndex) {
    let dir = TempDir::new();
    let index = SearchIndex::open(&dir.0, HEAP).unwrap();
    (dir, index)
}

fn chat(n: u8) -> ChatId {
    ChatId::from_bytes([n; 16])
}

fn message(ms: u64, n: u8) -> MessageId {
    let mut bytes = [0u8; 20];
    bytes[0..6].copy_from_slice(&ms.to_be_bytes()[2..8]);
    bytes[19] = n;
    MessageId::from_bytes(bytes)
}

fn user(name: &str) -> UserId {
    UserId::new(name, "acme").unwrap()
}

fn doc(chat_n: u8, ms: u64, author: &str, body: &str) -> SearchDoc {
    SearchDoc {
        chat: chat(chat_n),
        message: message(ms, chat_n),
        author: user(author),
        body: body.to_string(),
        created_ms: ms,
        has_attachment: false,
    }
}

fn query(text: &str, chats: &[u8]) -> SearchQuery {
    SearchQuery {
        text: text.to_string(),
        chats: chats.iter().map(|n| chat(*n)).collect(),
        limit: 20,
        ..SearchQuery::default()
    }
}

fn ids(page: &SearchPage) -> Vec<u64> {
    page.hits.iter().map(|hit| hit.message.time_ms()).collect()
}

fn add(index: &SearchIndex, docs: &[SearchDoc]) {
    index.upsert_many(docs).unwrap();
    index.commit().unwrap();
}

/// A small corpus: chats 1–3, messages at ms 1000..
fn corpus(index: &SearchIndex) {
    let mut with_file = doc(2, 1004, "bob", "The quarterly report is attached");
    with_file.has_attachment = true;
    add(
        index,
        &[
            doc(1, 1001, "alice", "Lunch at noon? The pizza place"),
            doc(1, 1002, "bob", "Pizza sounds great, see you at noon"),
            doc(1, 1003, "alice", "Quarterly report draft is ready"),
            with_file,
            doc(3, 1005, "carol", "Secret pizza plans for the offsite"),
        ],
    );
}

#[test]
fn hits_and_misses() {
    let (_dir, index) = open();
    corpus(&index);
    assert_eq!(index.doc_count(), 5);

    let page = index.search(&query("pizza", &[1, 2, 3])).unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(ids(&page), vec![1005, 1002, 1001]);

    // Case and accents fold; all words must occur.
    let page = index.search(&query("PÍZZA noon", &[1, 2, 3])).unwrap();
    assert_eq!(ids(&page), vec![1002, 1001]);

    let page = index.search(&query("sushi", &[1, 2, 3])).unwrap();
    assert_eq!(page.total, 0);
    assert!(page.hits.is_empty());
    let page = index.search(&query("pizza sushi", &[1, 2, 3])).unwrap();
    assert_eq!(page.total, 0);
}

#[test]
fn blank_text_lists_everything_newest_first() {
    let (_dir, index) = open();
    corpus(&index);
    let page = index.search(&query("  ", &[1, 2])).unwrap();
    assert_eq!(ids(&page), vec![1004, 1003, 1002, 1001]);
    // Blank text in relevance order falls back to newest first.
    let mut q = query("", &[1, 2]);
    q.order = SearchOrder::Relevance;
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1004, 1003, 1002, 1001]);
    // Snippets then are the start of the body, unhighlighted.
    let first = &index.search(&query("", &[2])).unwrap().hits[0];
    assert_eq!(
        first.snippet,
        vec![SnippetPart { text: "The quarterly report is attached".into(), highlighted: false }]
    );
}

#[test]
fn punctuation_only_text_matches_nothing() {
    let (_dir, index) = open();
    corpus(&index);
    let page = index.search(&query(":::", &[1, 2, 3])).unwrap();
    assert_eq!(page.total, 0);
}

#[test]
fn chat_filter() {
    let (_dir, index) = open();
    corpus(&index);
    assert_eq!(ids(&index.search(&query("pizza", &[1])).unwrap()), vec![1002, 1001]);
    assert_eq!(ids(&index.search(&query("pizza", &[3])).unwrap()), vec![1005]);
    assert_eq!(index.search(&query("pizza", &[2])).unwrap().total, 0);
}

#[test]
fn never_a_hit_from_a_chat_not_in_the_set() {
    let (_dir, index) = open();
    corpus(&index);
    // No chats: no hits, whatever the text.
    for text in ["", "pizza", "secret", "((( AND OR :::"] {
        let page = index.search(&query(text, &[])).unwrap();
        assert_eq!(page.total, 0, "{text:?}");
        assert!(page.hits.is_empty());
    }
    // Chat 3's secret is invisible from chats 1 and 2, in every order and filter.
    for order in [SearchOrder::Newest, SearchOrder::Relevance] {
        for text in ["", "secret", "pizza", "offsite plans"] {
            let mut q = query(text, &[1, 2, 9]);
            q.order = order;
            let page = index.search(&q).unwrap();
            assert!(page.hits.iter().all(|hit| hit.chat != chat(3)), "{text:?}");
            q.author = Some(user("carol"));
            assert_eq!(index.search(&q).unwrap().total, 0, "{text:?}");
        }
    }
    // Leaving a chat: the same query without it in the set stops finding its messages.
    let mut q = query("pizza", &[1, 3]);
    assert!(index.search(&q).unwrap().hits.iter().any(|hit| hit.chat == chat(3)));
    q.chats.retain(|c| *c != chat(3));
    let page = index.search(&q).unwrap();
    assert_eq!(page.total, 2);
    assert!(page.hits.iter().all(|hit| hit.chat == chat(1)));
}

#[test]
fn author_filter() {
    let (_dir, index) = open();
    corpus(&index);
    let mut q = query("", &[1, 2, 3]);
    q.author = Some(user("alice"));
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1003, 1001]);
    q.text = "pizza".into();
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1001]);
    q.author = Some(user("nobody"));
    assert_eq!(index.search(&q).unwrap().total, 0);
}

#[test]
fn date_range_filter() {
    let (_dir, index) = open();
    corpus(&index);
    let mut q = query("", &[1, 2, 3]);
    q.from_ms = Some(1002);
    q.to_ms = Some(1004);
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1003, 1002]);
    q.to_ms = None;
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1005, 1004, 1003, 1002]);
    q.from_ms = None;
    q.to_ms = Some(1002);
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1001]);
    q.text = "pizza".into();
    q.from_ms = Some(1002);
    q.to_ms = Some(1006);
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1005, 1002]);
    // An empty or inverted range matches nothing.
    q.from_ms = Some(1003);
    q.to_ms = Some(1003);
    assert_eq!(index.search(&q).unwrap().total, 0);
}

#[test]
fn attachment_filter() {
    let (_dir, index) = open();
    corpus(&index);
    let mut q = query("quarterly report", &[1, 2]);
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1004, 1003]);
    q.has_attachment = Some(true);
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1004]);
    q.has_attachment = Some(false);
    assert_eq!(ids(&index.search(&q).unwrap()), vec![1003]);
}

#[test]
fn paging() {
    let (_dir, index) = open();
    let docs: Vec<SearchDoc> =
        (0..25).map(|n| doc(1, 2000 + n, "alice", &format!("standup notes number {n}"))).collect();
    add(&index, &docs);
    let mut q = query("standup", &[1]);
    q.limit = 10;
    let mut seen = Vec::new();
    for offset in [0, 10, 20, 30] {
        q.offset = offset;
        let page = index.search(&q).unwrap();
        assert_eq!(page.total, 25);
        seen.extend(ids(&page));
    }
    let expected: Vec<u64> = (0..25).rev().map(|n| 2000 + n).collect();
    assert_eq!(seen, expected);
    // limit 0 counts only.
    q.offset = 0;
    q.limit = 0;
    let page = index.search(&q).unwrap();
    assert_eq!(page.total, 25);
    assert!(page.hits.is_empty());
}

#[test]
fn newest_versus_relevance() {
    let (_dir, index) = open();
    add(
        &index,
        &[
            doc(1, 3001, "alice", "rust rust rust rust, all about rust"),
            doc(1, 3002, "bob", "a long message that mentions rust only once among many words"),
            doc(1, 3003, "carol", "nothing relevant here"),
        ],
    );
    let mut q = query("rust", &[1]);
    let newest = index.search(&q).unwrap();
    assert_eq!(ids(&newest), vec![3002, 3001]);
    assert!(newest.hits.iter().all(|hit| hit.score == 0.0));
    q.order = SearchOrder::Relevance;
    let relevant = index.search(&q).unwrap();
    assert_eq!(ids(&relevant), vec![3001, 3002]);
    assert!(relevant.hits[0].score > relevant.hits[1].score);
    assert!(relevant.hits[1].score > 0.0);
}

#[test]
fn edit_replaces() {
    let (_dir, index) = open();
    corpus(&index);
    let mut edited = doc(1, 1001, "alice", "Lunch at one instead: sushi");
    edited.created_ms = 1001;
    index.upsert(&edited).unwrap();
    index.commit().unwrap();
    assert_eq!(index.doc_count(), 5);
    assert_eq!(ids(&index.search(&query("pizza", &[1])).unwrap()), vec![1002]);
    assert_eq!(ids(&index.search(&query("sushi", &[1])).unwrap()), vec![1001]);
    // Two versions of one message in one batch: the last wins.
    index
        .upsert_many(&[
            doc(1, 1001, "alice", "first version kiwi"),
            doc(1, 1001, "alice", "second version mango"),
        ])
        .unwrap();
    index.commit().unwrap();
    assert_eq!(index.doc_count(), 5);
    assert_eq!(index.search(&query("kiwi", &[1])).unwrap().total, 0);
    assert_eq!(index.search(&query("mango", &[1])).unwrap().total, 1);
}

#[test]
fn remove_and_clear() {
    let (_dir, index) = open();
    corpus(&index);
    index.remove(&chat(1), &message(1002, 1)).unwrap();
    // Removing something absent is fine.
    index.remove(&chat(7), &message(1, 7)).unwrap();
    index.commit().unwrap();
    assert_eq!(ids(&index.search(&query("pizza", &[1])).unwrap()), vec![1001]);
    assert_eq!(index.doc_count(), 4);

    index.clear().unwrap();
    assert_eq!(index.search(&query("", &[1, 2, 3])).unwrap().total, 0);
    assert_eq!(index.doc_count(), 0);
    // Rebuild after clear.
    corpus(&index);
    assert_eq!(index.doc_count(), 5);
    assert_eq!(index.search(&query("pizza", &[1, 3])).unwrap().total, 3);
}

#[test]
fn garbage_syntax_does_not_error() {
    let (_dir, index) = open();
    corpus(&index);
    add(&index, &[doc(1, 1010, "bob", "this OR that and more")]);
    for text in [
        "\"((( AND OR :::",
        "body:pizza",
        "pizza AND",
        "NOT",
        "*",
        "pizza~2 ^3 [a TO b]",
        "\"unclosed phrase",
        "-pizza",
        "\u{0}\u{1f600}",
    ] {
        let page = index.search(&query(text, &[1, 2, 3]));
        assert!(page.is_ok(), "{text:?}: {page:?}");
    }
    // Syntax is plain words: `AND OR` are searched as words.
    let page = index.search(&query("\"((( AND OR :::", &[1])).unwrap();
    assert_eq!(ids(&page), vec![1010]);
    // `body:pizza` is the words `body` and `pizza`, not a field query.
    assert_eq!(index.search(&query("body:pizza", &[1])).unwrap().total, 0);
}

#[test]
fn limits_are_typed_errors() {
    let (_dir, index) = open();
    let mut q = query(&"a".repeat(MAX_TEXT_CHARS + 1), &[1]);
    assert!(matches!(index.search(&q), Err(SearchError::TextTooLong { .. })));
    q.text = "é".repeat(MAX_TEXT_CHARS); // counted in characters, not bytes
    assert!(index.search(&q).is_ok());
    q.text.clear();
    q.limit = MAX_LIMIT + 1;
    let error = index.search(&q).unwrap_err();
    assert!(matches!(error, SearchError::LimitTooLarge { .. }));
    assert!(error.is_bad_query());
    q.limit = MAX_LIMIT;
    q.offset = MAX_OFFSET + 1;
    assert!(matches!(index.search(&q), Err(SearchError::OffsetTooLarge { .. })));
    q.offset = MAX_OFFSET;
    assert!(index.search(&q).is_ok());
}

#[test]
fn snippets_highlight_query_words() {
    let (_dir, index) = open();
    corpus(&index);
    let long = format!(
        "{} the deployment finished and then {}",
        "filler words ".repeat(40),
        "more trailing text ".repeat(40)
    );
    add(&index, &[doc(1, 1020, "alice", &long)]);

    let page = index.search(&query("pizza noon", &[1])).unwrap();
    let hit = &page.hits[0];
    let text: String = hit.snippet.iter().map(|part| part.text.as_str()).collect();
    assert_eq!(text, "Pizza sounds great, see you at noon");
    let highlighted: Vec<&str> =
        hit.snippet.iter().filter(|part| part.highlighted).map(|part| part.text.as_str()).collect();
    assert_eq!(highlighted, vec!["Pizza", "noon"]);

    // A long body gives a bounded snippet around the word.
    let page = index.search(&query("deployment", &[1])).unwrap();
    let snippet = &page.hits[0].snippet;
    let length: usize = snippet.iter().map(|part| part.text.chars().count()).sum();
    assert!(length <= SNIPPET_MAX_CHARS, "{length}");
    assert!(snippet.iter().any(|part| part.highlighted && part.text == "deployment"));

    // Serialized as plain segments, never HTML.
    let json = serde_json::to_value(&page).unwrap();
    assert_eq!(json["total"], 1);
    assert!(json["hits"][0]["snippet"][0]["highlighted"].is_boolean());
    assert!(!json.to_string().contains("<b>"));
}

#[test]
fn snippet_text_is_not_markup() {
    let (_dir, index) = open();
    add(&index, &[doc(1, 1, "alice", "<script>alert(1)</script> & pizza")]);
    let page = index.search(&query("pizza", &[1])).unwrap();
    let text: String = page.hits[0].snippet.iter().map(|part| part.text.as_str()).collect();
    assert_eq!(text, "<script>alert(1)</script> & pizza");
}

#[test]
fn upsert_commit_search_sees_it_at_once() {
    let (_dir, index) = open();
    for n in 0..20u64 {
        index.upsert(&doc(1, 5000 + n, "alice", &format!("word{n} live"))).unwrap();
        index.commit().unwrap();
        let page = index.search(&query(&format!("word{n}"), &[1])).unwrap();
        assert_eq!(ids(&page), vec![5000 + n]);
    }
    assert_eq!(index.search(&query("live", &[1])).unwrap().total, 20);
}

#[test]
fn reopen_keeps_committed_messages_and_mark() {
    let dir = TempDir::new();
    {
        let index = SearchIndex::open(&dir.0, HEAP).unwrap();
        assert_eq!(index.committed_mark().unwrap(), None);
        index.upsert(&doc(1, 1, "alice", "persisted pizza")).unwrap();
        index.commit_marked(42).unwrap();
        assert_eq!(index.search(&query("pizza", &[1])).unwrap().total, 1);
        assert_eq!(index.committed_mark().unwrap(), Some(42));
        // Written but never committed: the drop commits it.
        index.upsert(&doc(1, 2, "alice", "late pizza")).unwrap();
    }
    let index = SearchIndex::open(&dir.0, HEAP).unwrap();
    assert_eq!(index.doc_count(), 2);
    assert_eq!(index.committed_mark().unwrap(), Some(42));
    assert_eq!(index.search(&query("pizza", &[1])).unwrap().total, 2);
}

#[test]
fn compact_keeps_everything() {
    let (_dir, index) = open();
    for n in 0..5u64 {
        add(&index, &[doc(1, 100 + n, "alice", "segment pizza")]);
    }
    index.compact().unwrap();
    assert_eq!(index.doc_count(), 5);
    assert_eq!(index.search(&query("pizza", &[1])).unwrap().total, 5);
}

#[test]
fn order_serde_spelling() {
    assert_eq!(serde_json::to_string(&SearchOrder::Relevance).unwrap(), "\"relevance\"");
    let order: SearchOrder = serde_json::from_str("\"newest\"").unwrap();
    assert_eq!(order, SearchOrder::Newest);
}

#[test]
fn many_chats_filter_per_hit_with_the_same_results() {
    let (_dir, index) = open();
    corpus(&index);
    let filler: Vec<SearchDoc> =
        (0..100).map(|n| doc(1, 2000 + n, "dave", "filler chatter")).collect();
    add(&index, &filler);
    // More chats than CHAT_TERMS_MAX: chats 1 and 3 among 40, chat 2 not.
    let mut many: Vec<u8> = (10..48).collect();
    many.extend([1, 3]);
    assert!(many.len() > CHAT_TERMS_MAX);
    let page = index.search(&query("pizza", &many)).unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(ids(&page), vec![1005, 1002, 1001]);
    let mut relevance = query("pizza", &many);
    relevance.order = SearchOrder::Relevance;
    assert_eq!(index.search(&relevance).unwrap().total, 3);
    // Chat 2 (the only one with "quarterly" + attachment) is not allowed.
    let mut without_two: Vec<u8> = (10..48).collect();
    without_two.push(1);
    let page = index.search(&query("attached", &without_two)).unwrap();
    assert_eq!(page.total, 0);
    let page = index.search(&query("report", &without_two)).unwrap();
    assert_eq!(ids(&page), vec![1003]);
    // Blank text with many chats still goes through the chat clause.
    let page = index.search(&query("", &without_two)).unwrap();
    assert_eq!(page.total, 103);
    // The rare words above took the per-document path; a common word would not.
    let searcher = index.inner.reader.searcher();
    let chats: Vec<ChatId> = many.iter().map(|n| chat(*n)).collect();
    let cheaper = |word: &str| {
        index.per_hit_chat_filter_is_cheaper(&searcher, &[word.to_string()], &chats).unwrap()
    };
    assert!(cheaper("pizza"));
    assert!(!cheaper("filler"));
    assert_eq!(index.search(&query("filler", &many)).unwrap().total, 100);
}
