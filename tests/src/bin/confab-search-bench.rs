//! confab-search-bench: ingest rate, index size and query latency of the node's message search
//! index (`confab_node::search`), in process, on synthetic messages.
//!
//! Generates `--messages` messages with a fixed-seed generator (a vocabulary of `--vocabulary`
//! made-up words drawn with a Zipf-like distribution, bodies of 5–40 words, 1,000 chats,
//! 200 authors, timestamps spread over a year, 5% with an attachment), ingests them with
//! `upsert_many` in batches of `--batch` (requesting a commit after each batch, as the node
//! does after each group commit), then prints:
//! - the ingest rate (messages per second, from the first batch until everything is
//!   searchable) and the peak resident memory;
//! - the index size on disk, in total and per message;
//! - for each query kind, `--queries` searches (page of 20) with p50 / p99 / max latency and
//!   the mean number of matches.
//!
//! `--compact` then merges the index into one segment and prints the size and latencies again.
//! The index lives in `--dir` (kept) or in a temporary directory (removed at the end).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use confab_node::search::{SearchDoc, SearchIndex, SearchOrder, SearchQuery};
use confab_protocol::{ChatId, MessageId, UserId};

#[derive(Parser, Debug)]
#[command(name = "confab-search-bench", about = "Benchmark of the node's message search index")]
struct Args {
    /// Messages to index.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Index directory (must be empty or absent; kept afterwards). Default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Searches per query kind.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Messages per upsert_many call.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Indexing heap of the writer, in MiB.
    #[arg(long, default_value_t = 256)]
    heap_mib: usize,
    /// Distinct words in the vocabulary.
    #[arg(long, default_value_t = 5000)]
    vocabulary: usize,
    /// Seed of the message and query generators.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Afterwards merge the index into one segment and measure again.
    #[arg(long)]
    compact: bool,
}

const CHATS: usize = 1000;
const AUTHORS: usize = 200;
const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
/// 2025-01-01T00:00:00Z.
const START_MS: u64 = 1_735_689_600_000;
const PAGE: usize = 20;
const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "do", "fe", "gi", "ha", "ju",
    "bel", "cor", "dan", "fir", "gor", "hal", "mon", "tas",
];

/// The synthetic world: vocabulary with Zipf weights, chats, authors.
struct World {
    words: Vec<String>,
    /// Cumulative Zipf(1.0) probabilities over `words` (rank 0 most common).
    cdf: Vec<f64>,
    chats: Vec<ChatId>,
    authors: Vec<UserId>,
}

impl World {
    fn new(vocabulary: usize) -> Result<Self> {
        let words: Vec<String> = (0..vocabulary).map(word).collect();
        let mut cdf = Vec::with_capacity(vocabulary);
        let mut sum = 0.0;
        for rank in 0..vocabulary {
            sum += 1.0 / (rank as f64 + 1.0);
            cdf.push(sum);
        }
        for value in &mut cdf {
            *value /= sum;
        }
        let chats = (0..CHATS)
            .map(|n| {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&(n as u64 + 1).to_be_bytes());
                bytes[8..].copy_from_slice(&0x5eed_c0de_u64.to_be_bytes());
                ChatId::from_bytes(bytes)
            })
            .collect();
        let authors = (0..AUTHORS)
            .map(|n| UserId::new(&format!("user{n}"), "bench").context("author id"))
            .collect::<Result<_>>()?;
        Ok(Self { words, cdf, chats, authors })
    }

    fn zipf_word(&self, rng: &mut fastrand::Rng) -> &str {
        let x = rng.f64();
        let rank = self.cdf.partition_point(|p| *p < x).min(self.words.len() - 1);
        &self.words[rank]
    }

    /// Message `n` of `total`, in time order.
    fn message(&self, rng: &mut fastrand::Rng, n: usize, total: usize) -> SearchDoc {
        let step = YEAR_MS / total.max(1) as u64;
        let created_ms = START_MS + n as u64 * step + rng.u64(0..step.max(1));
        let mut id = [0u8; 20];
        id[0..6].copy_from_slice(&created_ms.to_be_bytes()[2..8]);
        id[12..20].copy_from_slice(&(n as u64).to_be_bytes());
        let words = rng.usize(5..=40);
        let mut body = String::with_capacity(words * 8);
        for i in 0..words {
            if i > 0 {
                body.push(' ');
            }
            body.push_str(self.zipf_word(rng));
        }
        SearchDoc {
            chat: self.chats[rng.usize(0..CHATS)],
            message: MessageId::from_bytes(id),
            author: self.authors[rng.usize(0..AUTHORS)].clone(),
            body,
            created_ms,
            has_attachment: rng.u8(0..100) < 5,
        }
    }
}

/// A made-up word for rank `n`: its base-24 digits as syllables (at least two).
fn word(n: usize) -> String {
    let mut n = n + SYLLABLES.len();
    let mut parts = Vec::new();
    while n > 0 {
        parts.push(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    parts.reverse();
    parts.concat()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    CommonWord,
    CommonWordRelevance,
    RareWord,
    TwoWords,
    TwoWordsRelevance,
    Chats50CommonWord,
    Chats50TwoWordsRelevance,
    Chats50NoText,
    AuthorAndMonth,
    AuthorMonthAttachmentNoText,
    DeepPage,
}

const KINDS: [Kind; 11] = [
    Kind::CommonWord,
    Kind::CommonWordRelevance,
    Kind::RareWord,
    Kind::TwoWords,
    Kind::TwoWordsRelevance,
    Kind::Chats50CommonWord,
    Kind::Chats50TwoWordsRelevance,
    Kind::Chats50NoText,
    Kind::AuthorAndMonth,
    Kind::AuthorMonthAttachmentNoText,
    Kind::DeepPage,
];

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::CommonWord => "common word (top 10), 1000 chats, newest",
            Kind::CommonWordRelevance => "common word (top 10), 1000 chats, relevance",
            Kind::RareWord => "rare word (rank 2000+), 1000 chats, newest",
            Kind::TwoWords => "two words (rank 10-500), 1000 chats, newest",
            Kind::TwoWordsRelevance => "two words (rank 10-500), 1000 chats, relevance",
            Kind::Chats50CommonWord => "common word, 50 chats, newest",
            Kind::Chats50TwoWordsRelevance => "two words, 50 chats, relevance",
            Kind::Chats50NoText => "no text, 50 chats, newest",
            Kind::AuthorAndMonth => "word (rank 10-500) + author + 30 days, 1000 chats",
            Kind::AuthorMonthAttachmentNoText => "no text + author + 30 days + attachment",
            Kind::DeepPage => "common word, 1000 chats, newest, offset 2000",
        }
    }

    fn query(self, world: &World, rng: &mut fastrand::Rng) -> SearchQuery {
        let all: Vec<ChatId> = world.chats.clone();
        let pick_chats = |n: usize, rng: &mut fastrand::Rng| -> Vec<ChatId> {
            let mut chats = world.chats.clone();
            rng.shuffle(&mut chats);
            chats.truncate(n);
            chats
        };
        let word_in = |ranks: std::ops::Range<usize>, rng: &mut fastrand::Rng| -> String {
            let end = ranks.end.min(world.words.len());
            let start = ranks.start.min(end.saturating_sub(1));
            world.words[rng.usize(start..end)].clone()
        };
        let month = |rng: &mut fastrand::Rng| {
            let from = START_MS + rng.u64(0..YEAR_MS - 30 * 86_400_000);
            (Some(from), Some(from + 30 * 86_400_000))
        };
        let mut query = SearchQuery { limit: PAGE, ..SearchQuery::default() };
        match self {
            Kind::CommonWord | Kind::CommonWordRelevance => {
                query.text = word_in(0..10, rng);
                query.chats = all;
                if matches!(self, Kind::CommonWordRelevance) {
                    query.order = SearchOrder::Relevance;
                }
            }
            Kind::RareWord => {
                query.text = word_in(2000..world.words.len(), rng);
                query.chats = all;
            }
            Kind::TwoWords | Kind::TwoWordsRelevance => {
                query.text = format!("{} {}", word_in(10..500, rng), word_in(10..500, rng));
                query.chats = all;
                if matches!(self, Kind::TwoWordsRelevance) {
                    query.order = SearchOrder::Relevance;
                }
            }
            Kind::Chats50CommonWord => {
                query.text = word_in(0..10, rng);
                query.chats = pick_chats(50, rng);
            }
            Kind::Chats50TwoWordsRelevance => {
                query.text = format!("{} {}", word_in(10..500, rng), word_in(10..500, rng));
                query.chats = pick_chats(50, rng);
                query.order = SearchOrder::Relevance;
            }
            Kind::Chats50NoText => {
                query.chats = pick_chats(50, rng);
            }
            Kind::AuthorAndMonth => {
                query.text = word_in(10..500, rng);
                query.chats = all;
                query.author = Some(world.authors[rng.usize(0..AUTHORS)].clone());
                (query.from_ms, query.to_ms) = month(rng);
            }
            Kind::AuthorMonthAttachmentNoText => {
                query.chats = all;
                query.author = Some(world.authors[rng.usize(0..AUTHORS)].clone());
                (query.from_ms, query.to_ms) = month(rng);
                query.has_attachment = Some(true);
            }
            Kind::DeepPage => {
                query.text = word_in(0..10, rng);
                query.chats = all;
                query.offset = 2000;
            }
        }
        query
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.messages == 0 || args.batch == 0 || args.vocabulary < 10 {
        bail!("--messages and --batch must be positive, --vocabulary at least 10");
    }
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                bail!("{} is not empty", dir.display());
            }
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("confab-search-bench").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let world = World::new(args.vocabulary)?;
    let index = SearchIndex::open(&dir, args.heap_mib << 20).context("open index")?;
    println!(
        "confab-search-bench: {} messages, {} words, {} chats, {} authors, batch {}, heap {} MiB, dir {}",
        args.messages,
        args.vocabulary,
        CHATS,
        AUTHORS,
        args.batch,
        args.heap_mib,
        dir.display()
    );

    // Ingest.
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let started = Instant::now();
    let mut generating = Duration::ZERO;
    let mut body_bytes = 0u64;
    let mut done = 0;
    let mut last_report = Instant::now();
    while done < args.messages {
        let count = args.batch.min(args.messages - done);
        let generate_start = Instant::now();
        let batch: Vec<SearchDoc> =
            (done..done + count).map(|n| world.message(&mut rng, n, args.messages)).collect();
        generating += generate_start.elapsed();
        body_bytes += batch.iter().map(|doc| doc.body.len() as u64).sum::<u64>();
        index.upsert_many(&batch)?;
        index.commit()?;
        done += count;
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  {done} queued, {:.0} msg/s", done as f64 / started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
    }
    // A search waits until everything committed so far is visible.
    index.search(&SearchQuery {
        chats: vec![world.chats[0]],
        limit: 1,
        ..SearchQuery::default()
    })?;
    let elapsed = started.elapsed();
    let count = index.doc_count();
    if count != args.messages as u64 {
        bail!("index holds {count} messages, expected {}", args.messages);
    }
    println!(
        "ingest: {} messages in {:.1} s: {:.0} msg/s ({:.1} s of it generating messages; {:.0} msg/s without it); {:.1} MB of body text",
        args.messages,
        elapsed.as_secs_f64(),
        args.messages as f64 / elapsed.as_secs_f64(),
        generating.as_secs_f64(),
        args.messages as f64 / (elapsed - generating.min(elapsed)).as_secs_f64(),
        body_bytes as f64 / 1e6
    );
    println!("peak RSS: {}", peak_rss().unwrap_or_else(|| "unknown".into()));
    report_size(&dir, args.messages, "after ingest")?;
    // Let background merges settle a little, then measure again.
    std::thread::sleep(Duration::from_secs(5));
    report_size(&dir, args.messages, "after 5 s of merging")?;

    run_queries(&index, &world, &args)?;
    if args.compact {
        let compact_start = Instant::now();
        index.compact()?;
        println!("compact: {:.1} s", compact_start.elapsed().as_secs_f64());
        report_size(&dir, args.messages, "after compact")?;
        run_queries(&index, &world, &args)?;
    }
    drop(index);
    Ok(())
}

fn run_queries(index: &SearchIndex, world: &World, args: &Args) -> Result<()> {
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>12}",
        "query (page of 20)", "p50 ms", "p99 ms", "max ms", "mean total"
    );
    let mut rng = fastrand::Rng::with_seed(args.seed ^ 0x9e37_79b9);
    for kind in KINDS {
        // Warm up (page cache, searcher) with a few queries not counted.
        for _ in 0..5 {
            index.search(&kind.query(world, &mut rng))?;
        }
        let mut latencies = Vec::with_capacity(args.queries);
        let mut totals = 0u64;
        for _ in 0..args.queries {
            let query = kind.query(world, &mut rng);
            let start = Instant::now();
            let page = index.search(&query)?;
            latencies.push(start.elapsed());
            totals += page.total as u64;
        }
        latencies.sort();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i].as_secs_f64() * 1e3
        };
        println!(
            "{:<52} {:>9.2} {:>9.2} {:>9.2} {:>12.0}",
            kind.describe(),
            at(0.50),
            at(0.99),
            at(1.0),
            totals as f64 / args.queries.max(1) as f64
        );
    }
    Ok(())
}

fn report_size(dir: &Path, messages: usize, when: &str) -> Result<()> {
    let (bytes, files) = dir_size(dir)?;
    println!(
        "index size {when}: {:.1} MB in {files} files, {:.1} bytes/message",
        bytes as f64 / 1e6,
        bytes as f64 / messages as f64
    );
    Ok(())
}

fn dir_size(dir: &Path) -> Result<(u64, usize)> {
    let mut bytes = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (b, f) = dir_size(&entry.path())?;
            bytes += b;
            files += f;
        } else {
            bytes += meta.len();
            files += 1;
        }
    }
    Ok((bytes, files))
}

fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .map(|line| line.trim_start_matches("VmHWM:").trim().to_string())
}
