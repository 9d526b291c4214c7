//! The read path: turning a [`SearchQuery`] into a tantivy query (the user's words, the
//! mandatory chat filter as posting lists or a per-hit check, whichever is cheaper, and the
//! other filters), running it and cutting snippets.

use super::*;
use tantivy::collector::{Count, FilterCollector, TopDocs};
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, EmptyQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::snippet::SnippetGenerator;

/// Above this many chats, a query with words filters hits by chat per document (a fast field)
/// instead of a union of the chats' posting lists.
pub(super) const CHAT_TERMS_MAX: usize = 32;

/// A per-document chat check costs about this many times a posting-list entry.
const PER_HIT_FILTER_COST: u64 = 4;

impl SearchIndex {
    /// Searches. Blocks; call it from `spawn_blocking`.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        if query.text.chars().count() > MAX_TEXT_CHARS {
            return Err(SearchError::TextTooLong { max: MAX_TEXT_CHARS });
        }
        if query.limit > MAX_LIMIT {
            return Err(SearchError::LimitTooLarge { max: MAX_LIMIT });
        }
        if query.offset > MAX_OFFSET {
            return Err(SearchError::OffsetTooLarge { max: MAX_OFFSET });
        }
        let empty = SearchPage { hits: Vec::new(), total: 0 };
        self.wait_visible()?;
        let searcher = self.inner.reader.searcher();
        let Some(built) = self.build_query(query, &searcher)? else {
            return Ok(empty);
        };
        let fields = self.inner.fields;

        let by_score = query.order == SearchOrder::Relevance && built.has_text;
        // Many chats and some words: find the words, then keep the docs of allowed chats by
        // their fast field (cheaper than a union of thousands of chat posting lists).
        let (total, found): (usize, Vec<(f32, DocAddress)>) = if query.limit == 0 {
            (run(&searcher, &built, Count)?, Vec::new())
        } else if by_score {
            let top = TopDocs::with_limit(query.limit).and_offset(query.offset).order_by_score();
            let (total, top) = run(&searcher, &built, (Count, top))?;
            (total, top)
        } else {
            let top = TopDocs::with_limit(query.limit)
                .and_offset(query.offset)
                .order_by_fast_field::<u64>("created_ms", Order::Desc);
            let (total, top) = run(&searcher, &built, (Count, top))?;
            (total, top.into_iter().map(|(_, doc)| (0.0, doc)).collect())
        };

        let snippets = if built.has_text {
            let mut generator = SnippetGenerator::create(&searcher, &built.query, fields.body)?;
            generator.set_max_num_chars(SNIPPET_MAX_CHARS);
            Some(generator)
        } else {
            None
        };
        let mut hits = Vec::with_capacity(found.len());
        for (score, address) in found {
            let doc: TantivyDocument = searcher.doc(address)?;
            let Some((chat, message)) =
                doc.get_first(fields.key).and_then(|value| value.as_bytes()).and_then(parse_key)
            else {
                tracing::warn!(?address, "search document without a valid key");
                continue;
            };
            // The per-document filter compares 64-bit chat keys; the exact id decides.
            if built.chat_filter.is_some() && !query.chats.contains(&chat) {
                continue;
            }
            let body = doc.get_first(fields.body).and_then(|value| value.as_str()).unwrap_or("");
            let snippet = match &snippets {
                Some(generator) => {
                    let snippet = generator.snippet(body);
                    if snippet.fragment().is_empty() {
                        plain_snippet(body)
                    } else {
                        snippet_parts(snippet.fragment(), snippet.highlighted())
                    }
                }
                None => plain_snippet(body),
            };
            hits.push(SearchHit { chat, message, score, snippet });
        }
        Ok(SearchPage { hits, total })
    }

    /// Many chats and some words: the words' postings walked with a per-document chat check cost
    /// about the rarest word's document count; the chat clause costs about the documents of
    /// all those chats. Picks the per-document check when it reads clearly fewer.
    pub(super) fn per_hit_chat_filter_is_cheaper(
        &self,
        searcher: &tantivy::Searcher,
        words: &[String],
        chats: &[ChatId],
    ) -> Result<bool, SearchError> {
        let fields = self.inner.fields;
        let mut rarest = u64::MAX;
        for word in words {
            let term = Term::from_field_text(fields.body, word);
            rarest = rarest.min(searcher.doc_freq(&term)?);
        }
        let mut chat_docs = 0u64;
        for chat in chats {
            chat_docs +=
                searcher.doc_freq(&Term::from_field_bytes(fields.chat, chat.as_bytes()))?;
            if chat_docs > rarest.saturating_mul(PER_HIT_FILTER_COST) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn build_query(
        &self,
        query: &SearchQuery,
        searcher: &tantivy::Searcher,
    ) -> Result<Option<BuiltQuery>, SearchError> {
        let fields = self.inner.fields;
        if query.chats.is_empty() {
            return Ok(None);
        }
        if let (Some(from), Some(to)) = (query.from_ms, query.to_ms) {
            if from >= to {
                return Ok(None);
            }
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let words = query_words(&query.text);
        let has_text = !query.text.trim().is_empty();
        if has_text && words.is_empty() {
            return Ok(None);
        }
        for word in &words {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(fields.body, word),
                    IndexRecordOption::WithFreqs,
                )),
            ));
        }
        let chat_filter = if has_text
            && query.chats.len() > CHAT_TERMS_MAX
            && self.per_hit_chat_filter_is_cheaper(searcher, &words, &query.chats)?
        {
            Some(Arc::new(query.chats.iter().map(chat_key).collect::<HashSet<u64>>()))
        } else {
            let chats = TermSetQuery::new(
                query.chats.iter().map(|chat| Term::from_field_bytes(fields.chat, chat.as_bytes())),
            );
            clauses.push(filter(chats));
            None
        };
        if let Some(author) = &query.author {
            clauses.push(filter(TermQuery::new(
                Term::from_field_bytes(fields.author, author.as_str().as_bytes()),
                IndexRecordOption::Basic,
            )));
        }
        if query.from_ms.is_some() || query.to_ms.is_some() {
            let lower = query.from_ms.map_or(Bound::Unbounded, |ms| {
                Bound::Included(Term::from_field_u64(fields.created_ms, ms))
            });
            let upper = query.to_ms.map_or(Bound::Unbounded, |ms| {
                Bound::Excluded(Term::from_field_u64(fields.created_ms, ms))
            });
            clauses.push(filter(RangeQuery::new(lower, upper)));
        }
        if let Some(has_attachment) = query.has_attachment {
            clauses.push(filter(TermQuery::new(
                Term::from_field_bool(fields.has_attachment, has_attachment),
                IndexRecordOption::Basic,
            )));
        }
        let query: Box<dyn Query> = if clauses.is_empty() {
            Box::new(EmptyQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        };
        Ok(Some(BuiltQuery { query, has_text, chat_filter }))
    }
}

struct BuiltQuery {
    query: Box<dyn Query>,
    has_text: bool,
    /// The allowed chats, when they are checked per hit instead of by a query clause.
    chat_filter: Option<Arc<HashSet<u64>>>,
}

/// Runs `collector` over the query's matches, through the per-document chat filter when the
/// query has one.
fn run<C: tantivy::collector::Collector>(
    searcher: &tantivy::Searcher,
    built: &BuiltQuery,
    collector: C,
) -> tantivy::Result<C::Fruit> {
    match &built.chat_filter {
        None => searcher.search(&built.query, &collector),
        Some(allowed) => {
            let allowed = Arc::clone(allowed);
            let filtered = FilterCollector::new(
                CHAT_KEY_FIELD.to_string(),
                move |key: u64| allowed.contains(&key),
                collector,
            );
            searcher.search(&built.query, &filtered)
        }
    }
}

/// A clause that must match and adds no score.
fn filter(query: impl Query) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(Box::new(query), 0.0)))
}

/// The distinct indexed words of `text`, in order of first appearance.
pub(super) fn query_words(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut seen = BTreeSet::new();
    let mut words = Vec::new();
    while stream.advance() {
        let word = &stream.token().text;
        if seen.insert(word.clone()) {
            words.push(word.clone());
            if words.len() == MAX_QUERY_TERMS {
                break;
            }
        }
    }
    words
}

/// Splits `fragment` at the highlighted byte ranges (which tantivy puts on char boundaries;
/// anything else is ignored rather than trusted).
pub(super) fn snippet_parts(
    fragment: &str,
    highlighted: &[std::ops::Range<usize>],
) -> Vec<SnippetPart> {
    let mut ranges: Vec<std::ops::Range<usize>> = highlighted.to_vec();
    ranges.sort_by_key(|range| range.start);
    let mut parts = Vec::new();
    let mut at = 0;
    for range in ranges {
        let start = range.start.max(at);
        let end = range.end.min(fragment.len());
        if start >= end || !fragment.is_char_boundary(start) || !fragment.is_char_boundary(end) {
            continue;
        }
        if start > at {
            parts.push(SnippetPart { text: fragment[at..start].to_string(), highlighted: false });
        }
        parts.push(SnippetPart { text: fragment[start..end].to_string(), highlighted: true });
        at = end;
    }
    if at < fragment.len() {
        parts.push(SnippetPart { text: fragment[at..].to_string(), highlighted: false });
    }
    parts
}

/// The start of the body, for hits without highlighted words.
pub(super) fn plain_snippet(body: &str) -> Vec<SnippetPart> {
    let end = body.char_indices().nth(SNIPPET_MAX_CHARS).map_or(body.len(), |(index, _)| index);
    if end == 0 {
        return Vec::new();
    }
    vec![SnippetPart { text: body[..end].to_string(), highlighted: false }]
}
