//! Content sniffing: a file's type from its bytes, never from the client's name or header.
//! Magic numbers at the start decide binary formats; a file with none is `text/plain` when all of
//! it is UTF-8 without control characters (besides tab, newlines, form feed and escape), else
//! `application/octet-stream`. [`Sniffer`] works chunk by chunk, so an upload is sniffed while it
//! streams.

/// How many leading bytes the magic numbers need (and the most [`Sniffer`] keeps).
const HEAD_BYTES: usize = 512;

/// The type a file's first bytes announce, if any known format's magic number matches.
pub fn sniff_magic(head: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| {
        head.get(offset..offset + magic.len()).is_some_and(|bytes| bytes == magic)
    };
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if starts(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("image/gif")
    } else if starts(b"RIFF") && at(8, b"WEBP") {
        Some("image/webp")
    } else if starts(b"RIFF") && at(8, b"WAVE") {
        Some("audio/wav")
    } else if starts(b"%PDF-") {
        Some("application/pdf")
    } else if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        Some("application/zip")
    } else if at(4, b"ftyp") {
        if at(8, b"M4A ") {
            Some("audio/mp4")
        } else {
            Some("video/mp4")
        }
    } else if starts(b"\x1a\x45\xdf\xa3") {
        let doc_type = &head[..head.len().min(64)];
        if doc_type.windows(4).any(|w| w == b"webm") {
            Some("video/webm")
        } else {
            Some("video/x-matroska")
        }
    } else if starts(b"OggS") {
        Some("audio/ogg")
    } else if starts(b"fLaC") {
        Some("audio/flac")
    } else if starts(b"ID3") || starts(b"\xff\xfb") || starts(b"\xff\xf3") || starts(b"\xff\xf2") {
        Some("audio/mpeg")
    } else {
        None
    }
}

/// Sniffs a stream of chunks: keeps the first [`HEAD_BYTES`] for the magic numbers and checks,
/// incrementally, whether the whole file is plain UTF-8 text.
#[derive(Debug, Default)]
pub struct Sniffer {
    head: Vec<u8>,
    text: TextCheck,
    /// Any byte seen: an empty file is not text.
    fed: bool,
}

impl Sniffer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        self.fed = true;
        if self.head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.text.feed(chunk);
    }

    /// The sniffed type.
    pub fn finish(self) -> &'static str {
        if !self.fed {
            return "application/octet-stream";
        }
        if let Some(mime) = sniff_magic(&self.head) {
            return mime;
        }
        if self.text.finish() {
            "text/plain"
        } else {
            "application/octet-stream"
        }
    }
}

/// Incremental UTF-8 and control-character check; a multi-byte character may straddle chunks.
#[derive(Debug, Default)]
struct TextCheck {
    failed: bool,
    /// The start of a character the previous chunk cut (at most 3 bytes).
    carry: Vec<u8>,
}

impl TextCheck {
    fn feed(&mut self, mut chunk: &[u8]) {
        if self.failed {
            return;
        }
        if chunk.iter().any(|&b| is_binary_control(b)) {
            self.failed = true;
            return;
        }
        if let Some(&lead) = self.carry.first() {
            let want = utf8_width(lead);
            let take = want.saturating_sub(self.carry.len()).min(chunk.len());
            self.carry.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.carry.len() < want {
                return;
            }
            if std::str::from_utf8(&self.carry).is_err() {
                self.failed = true;
                return;
            }
            self.carry.clear();
        }
        if let Err(error) = std::str::from_utf8(chunk) {
            if error.error_len().is_some() {
                self.failed = true;
            } else {
                self.carry = chunk[error.valid_up_to()..].to_vec();
            }
        }
    }

    fn finish(self) -> bool {
        !self.failed && self.carry.is_empty()
    }
}

/// Bytes no text file holds: C0 controls except tab, newlines, form feed and escape; DEL.
fn is_binary_control(b: u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f | 0x7f)
}

/// The length of the UTF-8 sequence a lead byte starts (1 for an invalid lead: the validator
/// rejects it).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}
