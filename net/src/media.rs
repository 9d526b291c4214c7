//! The media request-response protocol `/confab/media/1`: fetching one attachment blob of a
//! shared chat by its SHA-256 blob id from another member organisation's node. Typed,
//! size-bounded messages, their binary encoding, and the [`libp2p::request_response::Codec`]
//! that frames them.
//!
//! A **request** names the chat and the blob id; the responder answers with the blob's bytes
//! ([`MediaResponse::Found`], at most [`crate::NetConfig::media_max_bytes`]) or with a refusal
//! ([`MediaResponse::Refused`]). Only members of the chat may ask: the actor answers anybody else
//! [`MediaRefusal::NotMember`] without involving the node. The requester
//! ([`crate::NetworkHandle::fetch_media`]) checks that the SHA-256 of the bytes received is the
//! blob id asked for; this module only moves bounded bytes.
//!
//! Every frame is `u32` big-endian body length ‖ body, as in catch-up. The reader refuses a
//! length above the limit from the prefix alone, and grows its buffer only as bytes arrive
//! (never reserving more than [`READ_CHUNK`] ahead of them), so a peer can never make us
//! allocate more than it sends nor more than the limit. The exact layout is in
//! `spec/federation.md` (§4b).

use std::io;

use confab_protocol::ChatId;
use libp2p::futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/confab/media/1");

/// The encoding version byte of every request and response body.
pub const VERSION: u8 = 1;

/// Bytes of a blob id (a SHA-256 hash).
pub const BLOB_ID_LEN: usize = 32;

/// Bytes of a request body: version, chat id, blob id (the only size a request has).
pub const REQUEST_BYTES: usize = 1 + ChatId::LEN + BLOB_ID_LEN;

/// Bytes of a found response body besides the blob: version, kind, blob length.
pub const FOUND_OVERHEAD: usize = 1 + 1 + 4;

/// The default [`crate::NetConfig::media_max_bytes`]: 64 MiB per blob.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The most bytes a frame reader reserves ahead of the bytes actually received.
pub const READ_CHUNK: usize = crate::frame::READ_CHUNK;

const KIND_FOUND: u8 = 0;
const KIND_REFUSED: u8 = 1;

/// A request for one blob of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRequest {
    /// The chat the blob is attached in (the requester must be a member of it).
    pub chat: ChatId,
    /// The blob id: the SHA-256 of the blob's bytes.
    pub blob: [u8; BLOB_ID_LEN],
}

/// Why a responder refused a media request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaRefusal {
    /// The requesting organisation is not a member of the chat.
    NotMember,
    /// The responder does not have this blob (in this chat).
    NotFound,
    /// The responder is overloaded; retry later.
    Busy,
    /// A reason this version does not know (forward compatibility).
    Other(u8),
}

impl MediaRefusal {
    fn code(self) -> u8 {
        match self {
            MediaRefusal::NotMember => 1,
            MediaRefusal::NotFound => 2,
            MediaRefusal::Busy => 3,
            MediaRefusal::Other(code) => code,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => MediaRefusal::NotMember,
            2 => MediaRefusal::NotFound,
            3 => MediaRefusal::Busy,
            other => MediaRefusal::Other(other),
        }
    }
}

/// The answer to a [`MediaRequest`].
#[derive(Clone, PartialEq, Eq)]
pub enum MediaResponse {
    /// The blob's bytes (at most the configured `media_max_bytes`).
    Found(Vec<u8>),
    /// The request was refused.
    Refused(MediaRefusal),
}

impl std::fmt::Debug for MediaResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never dump a blob of up to 64 MiB into a log line.
            MediaResponse::Found(bytes) => write!(f, "Found({} bytes)", bytes.len()),
            MediaResponse::Refused(refusal) => f.debug_tuple("Refused").field(refusal).finish(),
        }
    }
}

/// Why bytes are not a valid media message (or a message exceeds the limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaCodecError {
    /// The frame announces more bytes than the limit allows.
    #[error("media frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced or actual length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The body starts with a version this code does not speak.
    #[error("unsupported media encoding version {0}")]
    UnsupportedVersion(u8),
    /// The body ends early.
    #[error("truncated media message")]
    Truncated,
    /// Bytes follow the message.
    #[error("trailing bytes after media message")]
    TrailingBytes,
    /// The blob exceeds the limit.
    #[error("media blob of {got} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The blob length found.
        got: u64,
        /// The limit.
        max: usize,
    },
    /// A field has a value outside its domain.
    #[error("media message has an invalid {0}")]
    Invalid(&'static str),
}

impl From<MediaCodecError> for io::Error {
    fn from(err: MediaCodecError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

/// Most bytes of a response body when blobs are at most `max_bytes`.
pub fn max_response_bytes(max_bytes: usize) -> usize {
    max_bytes.saturating_add(FOUND_OVERHEAD)
}

fn check_blob_len(len: usize, max_bytes: usize) -> Result<(), MediaCodecError> {
    // The length travels as a u32, whatever the configured limit.
    let max = max_bytes.min(u32::MAX as usize - FOUND_OVERHEAD);
    if len > max {
        Err(MediaCodecError::TooLarge { got: len as u64, max })
    } else {
        Ok(())
    }
}

/// Encodes a request body (without the frame length); always [`REQUEST_BYTES`] long.
pub fn encode_request(req: &MediaRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(REQUEST_BYTES);
    out.push(VERSION);
    out.extend_from_slice(req.chat.as_bytes());
    out.extend_from_slice(&req.blob);
    out
}

/// Decodes a request body.
pub fn decode_request(bytes: &[u8]) -> Result<MediaRequest, MediaCodecError> {
    let (&version, rest) = bytes.split_first().ok_or(MediaCodecError::Truncated)?;
    if version != VERSION {
        return Err(MediaCodecError::UnsupportedVersion(version));
    }
    if rest.len() < ChatId::LEN + BLOB_ID_LEN {
        return Err(MediaCodecError::Truncated);
    }
    if rest.len() > ChatId::LEN + BLOB_ID_LEN {
        return Err(MediaCodecError::TrailingBytes);
    }
    let (chat, blob_bytes) = rest.split_at(ChatId::LEN);
    let chat = ChatId::from_slice(chat).ok_or(MediaCodecError::Invalid("chat id"))?;
    let mut blob = [0u8; BLOB_ID_LEN];
    blob.copy_from_slice(blob_bytes);
    Ok(MediaRequest { chat, blob })
}

/// The body of a response without the blob bytes that follow it (for a found blob, whose
/// length is checked against `max_bytes`).
fn response_head(resp: &MediaResponse, max_bytes: usize) -> Result<Vec<u8>, MediaCodecError> {
    match resp {
        MediaResponse::Found(bytes) => {
            check_blob_len(bytes.len(), max_bytes)?;
            let mut head = Vec::with_capacity(FOUND_OVERHEAD);
            head.push(VERSION);
            head.push(KIND_FOUND);
            head.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            Ok(head)
        }
        MediaResponse::Refused(reason) => Ok(vec![VERSION, KIND_REFUSED, reason.code()]),
    }
}

/// Checks that a response can be sent under the limit (a found blob of at most `max_bytes`).
pub fn check_response(resp: &MediaResponse, max_bytes: usize) -> Result<(), MediaCodecError> {
    response_head(resp, max_bytes).map(|_| ())
}

/// Encodes a response body (without the frame length), checking the limit. (The codec writes
/// a found blob without copying it into a body first.)
pub fn encode_response(resp: &MediaResponse, max_bytes: usize) -> Result<Vec<u8>, MediaCodecError> {
    let mut out = response_head(resp, max_bytes)?;
    if let MediaResponse::Found(bytes) = resp {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// Decodes a response body, refusing a blob above `max_bytes`.
pub fn decode_response(bytes: &[u8], max_bytes: usize) -> Result<MediaResponse, MediaCodecError> {
    let (&version, rest) = bytes.split_first().ok_or(MediaCodecError::Truncated)?;
    if version != VERSION {
        return Err(MediaCodecError::UnsupportedVersion(version));
    }
    let (&kind, rest) = rest.split_first().ok_or(MediaCodecError::Truncated)?;
    match kind {
        KIND_FOUND => {
            let (len, blob) = rest.split_first_chunk::<4>().ok_or(MediaCodecError::Truncated)?;
            let len = usize::try_from(u32::from_be_bytes(*len))
                .map_err(|_| MediaCodecError::Invalid("length"))?;
            check_blob_len(len, max_bytes)?;
            match blob.len().cmp(&len) {
                std::cmp::Ordering::Less => Err(MediaCodecError::Truncated),
                std::cmp::Ordering::Greater => Err(MediaCodecError::TrailingBytes),
                std::cmp::Ordering::Equal => Ok(MediaResponse::Found(blob.to_vec())),
            }
        }
        KIND_REFUSED => match rest {
            [] => Err(MediaCodecError::Truncated),
            [code] => Ok(MediaResponse::Refused(MediaRefusal::from_code(*code))),
            _ => Err(MediaCodecError::TrailingBytes),
        },
        _ => Err(MediaCodecError::Invalid("response kind")),
    }
}

/// Reads one length-prefixed frame of at most `max` body bytes (see [`crate::frame`]).
pub async fn read_frame<T>(io: &mut T, max: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let too_large = |len| MediaCodecError::FrameTooLarge { len, max }.into();
    crate::frame::read(io, max, too_large, MediaCodecError::Truncated).await
}

/// The request-response codec of `/confab/media/1`.
#[derive(Debug, Clone)]
pub struct MediaCodec {
    max_bytes: usize,
}

impl Default for MediaCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

impl MediaCodec {
    /// A codec refusing blobs above `max_bytes` in both directions.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl libp2p::request_response::Codec for MediaCodec {
    type Protocol = StreamProtocol;
    type Request = MediaRequest;
    type Response = MediaResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<MediaRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, REQUEST_BYTES).await?;
        Ok(decode_request(&body)?)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<MediaResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, max_response_bytes(self.max_bytes)).await?;
        Ok(decode_response(&body, self.max_bytes)?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: MediaRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = encode_request(&req);
        io.write_all(&(body.len() as u32).to_be_bytes()).await?;
        io.write_all(&body).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: MediaResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let head = response_head(&resp, self.max_bytes)?;
        let blob: &[u8] = match &resp {
            MediaResponse::Found(bytes) => bytes,
            MediaResponse::Refused(_) => &[],
        };
        // Fits: the blob length was checked against u32::MAX - FOUND_OVERHEAD.
        let len =
            u32::try_from(head.len() + blob.len()).map_err(|_| MediaCodecError::FrameTooLarge {
                len: (head.len() + blob.len()) as u64,
                max: u32::MAX as usize,
            })?;
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(&head).await?;
        io.write_all(blob).await?;
        io.flush().await
    }
}
