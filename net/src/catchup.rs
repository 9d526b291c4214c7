//! The catch-up request-response protocol `/confab/catchup/1`: typed, size-bounded messages,
//! their binary encoding, and the [`libp2p::request_response::Codec`] that frames them.
//!
//! Two kinds of request share the protocol, told apart by the first byte of the body (the
//! request type):
//!
//! - a **document request** ([`Request::Document`], type `01`): the document id, the heads the
//!   requester knows (bounded count) and an opaque cursor the same responder handed out with its
//!   previous page (empty on the first request). The responder answers with a bounded page of
//!   `SignedChange` bytes, `more` and the cursor for the next page, or with a refusal;
//! - a **chat index request** ([`Request::Index`], type `02`, no other byte): the responder
//!   answers with the ids of the chats it shares with the requester's organisation
//!   ([`CatchupResponse::Index`], strictly increasing, at most
//!   [`CatchupLimits::max_index_chats`]), or with a refusal. This is how a node learns the chats
//!   another organisation added it to.
//!
//! What the changes and chats are and how the cursor is read is the node's business; this module
//! only moves bounded bytes.
//!
//! Every frame is `u32` big-endian body length ‖ body. The reader refuses a length above the
//! limit before allocating anything, so a peer can never make us allocate more than
//! [`CatchupLimits::max_response_bytes`] (responses) or
//! [`CatchupLimits::max_request_bytes`] (requests). The exact layout is in `spec/federation.md`.

use std::io;

use confab_protocol::{ChatId, DocId};
use libp2p::futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::config::CatchupLimits;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/confab/catchup/1");

/// The encoding version byte of every response body.
pub const VERSION: u8 = 1;

/// The first byte of a document request body (the version byte of the original encoding).
pub const REQUEST_DOCUMENT: u8 = 1;
/// The first (and only) byte of a chat index request body.
pub const REQUEST_INDEX: u8 = 2;
/// The first (and only) byte of a poke: a chat index request that also asks the responder to
/// sync with the requester now (it has news for the responder, e.g. a chat it was added to).
pub const REQUEST_POKE: u8 = 3;

const KIND_PAGE: u8 = 0;
const KIND_REFUSED: u8 = 1;
const KIND_INDEX: u8 = 2;

/// Fixed bytes of a document request body besides heads and cursor: request type, doc id, two
/// counts. (A chat index request is a single byte.)
pub const fn request_overhead() -> usize {
    1 + DocId::LEN + 2 + 2
}

/// Any request of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The changes of one document (request type `01`).
    Document(CatchupRequest),
    /// The chats the responder shares with the requester's organisation (request type `02`).
    Index,
    /// The same, and a request to sync with the requester now (request type `03`). A plain
    /// index request must not make the responder sync back, or two nodes would sync each
    /// other forever.
    Poke,
}

impl From<CatchupRequest> for Request {
    fn from(request: CatchupRequest) -> Self {
        Request::Document(request)
    }
}

/// A request for the changes of one document that the requester is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchupRequest {
    /// The document.
    pub doc: DocId,
    /// Hashes of the requester's current heads of that document.
    pub heads: Vec<[u8; 32]>,
    /// Opaque paging cursor from the previous page of the same responder (empty at first).
    pub cursor: Vec<u8>,
}

/// One page of changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatchupPage {
    /// Encoded `SignedChange`s, in an order in which they can be applied.
    pub changes: Vec<Vec<u8>>,
    /// Whether the responder has more changes for this request (ask again with `cursor`).
    pub more: bool,
    /// Opaque cursor to send back for the next page.
    pub cursor: Vec<u8>,
}

/// Why a responder refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The requesting organisation is not a member of the document's chat.
    NotMember,
    /// The responder does not have this document.
    UnknownDocument,
    /// The responder is overloaded; retry later.
    Busy,
    /// A reason this version does not know (forward compatibility).
    Other(u8),
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Refusal::NotMember => 1,
            Refusal::UnknownDocument => 2,
            Refusal::Busy => 3,
            Refusal::Other(code) => code,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Refusal::NotMember,
            2 => Refusal::UnknownDocument,
            3 => Refusal::Busy,
            other => Refusal::Other(other),
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchupResponse {
    /// A page of changes (answers a [`Request::Document`] only).
    Page(CatchupPage),
    /// The request was refused (answers either request).
    Refused(Refusal),
    /// The chats the responder shares with the requester's organisation (answers a
    /// [`Request::Index`] only). The ids must be strictly increasing (sorted, no duplicates):
    /// the encoder refuses anything else, so build it with [`CatchupResponse::index`].
    Index(Vec<ChatId>),
}

impl CatchupResponse {
    /// A [`CatchupResponse::Index`] of these chats, sorted and without duplicates.
    pub fn index(chats: impl IntoIterator<Item = ChatId>) -> Self {
        let mut chats: Vec<ChatId> = chats.into_iter().collect();
        chats.sort_unstable();
        chats.dedup();
        CatchupResponse::Index(chats)
    }
}

/// Why bytes are not a valid catch-up message (or a message exceeds the limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame announces more bytes than the limit allows.
    #[error("catch-up frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced or actual length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The response body starts with a version this code does not speak.
    #[error("unsupported catch-up encoding version {0}")]
    UnsupportedVersion(u8),
    /// The request body starts with a request type this code does not know.
    #[error("unknown catch-up request type {0}")]
    UnknownRequestType(u8),
    /// The body ends early.
    #[error("truncated catch-up message")]
    Truncated,
    /// Bytes follow the message.
    #[error("trailing bytes after catch-up message")]
    TrailingBytes,
    /// A count or length exceeds its limit.
    #[error("catch-up {what}: {got} exceeds the limit of {max}")]
    Limit {
        /// What exceeded.
        what: &'static str,
        /// The value found.
        got: u64,
        /// The limit.
        max: usize,
    },
    /// A field has a value outside its domain.
    #[error("catch-up message has an invalid {0}")]
    Invalid(&'static str),
}

impl From<CodecError> for io::Error {
    fn from(err: CodecError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

fn limit(what: &'static str, got: usize, max: usize) -> Result<(), CodecError> {
    if got > max {
        Err(CodecError::Limit { what, got: got as u64, max })
    } else {
        Ok(())
    }
}

/// Encodes a request body (without the frame length), checking the limits.
pub fn encode_request(req: &Request, limits: &CatchupLimits) -> Result<Vec<u8>, CodecError> {
    match req {
        Request::Document(req) => encode_document_request(req, limits),
        Request::Index => Ok(vec![REQUEST_INDEX]),
        Request::Poke => Ok(vec![REQUEST_POKE]),
    }
}

fn encode_document_request(
    req: &CatchupRequest,
    limits: &CatchupLimits,
) -> Result<Vec<u8>, CodecError> {
    limit("heads", req.heads.len(), limits.max_heads.min(u16::MAX as usize))?;
    limit("cursor bytes", req.cursor.len(), limits.max_cursor_bytes.min(u16::MAX as usize))?;
    let mut out = Vec::with_capacity(request_overhead() + req.heads.len() * 32 + req.cursor.len());
    out.push(REQUEST_DOCUMENT);
    out.extend_from_slice(&req.doc.to_bytes());
    out.extend_from_slice(&(req.heads.len() as u16).to_be_bytes());
    for head in &req.heads {
        out.extend_from_slice(head);
    }
    out.extend_from_slice(&(req.cursor.len() as u16).to_be_bytes());
    out.extend_from_slice(&req.cursor);
    Ok(out)
}

/// Encodes a response body (without the frame length), checking the limits.
pub fn encode_response(
    resp: &CatchupResponse,
    limits: &CatchupLimits,
) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![VERSION];
    match resp {
        CatchupResponse::Refused(reason) => {
            out.push(KIND_REFUSED);
            out.push(reason.code());
        }
        CatchupResponse::Page(page) => {
            limit("changes", page.changes.len(), limits.max_changes_per_page)?;
            limit(
                "cursor bytes",
                page.cursor.len(),
                limits.max_cursor_bytes.min(u16::MAX as usize),
            )?;
            out.push(KIND_PAGE);
            out.push(u8::from(page.more));
            out.extend_from_slice(&(page.cursor.len() as u16).to_be_bytes());
            out.extend_from_slice(&page.cursor);
            out.extend_from_slice(&(page.changes.len() as u32).to_be_bytes());
            for change in &page.changes {
                limit("change bytes", change.len(), limits.max_change_bytes)?;
                limit("response bytes", out.len() + 4 + change.len(), limits.max_response_bytes)?;
                out.extend_from_slice(&(change.len() as u32).to_be_bytes());
                out.extend_from_slice(change);
            }
        }
        CatchupResponse::Index(chats) => {
            limit("index chats", chats.len(), limits.max_index_chats)?;
            limit(
                "response bytes",
                out.len() + 1 + 4 + chats.len() * ChatId::LEN,
                limits.max_response_bytes,
            )?;
            if chats.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(CodecError::Invalid("chat index order"));
            }
            out.reserve(1 + 4 + chats.len() * ChatId::LEN);
            out.push(KIND_INDEX);
            out.extend_from_slice(&(chats.len() as u32).to_be_bytes());
            for chat in chats {
                out.extend_from_slice(chat.as_bytes());
            }
        }
    }
    limit("response bytes", out.len(), limits.max_response_bytes)?;
    Ok(out)
}

/// A bounds-checked reader over a body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn u32(&mut self) -> Result<usize, CodecError> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        usize::try_from(n).map_err(|_| CodecError::Invalid("length"))
    }

    fn version(&mut self) -> Result<(), CodecError> {
        match self.u8()? {
            VERSION => Ok(()),
            other => Err(CodecError::UnsupportedVersion(other)),
        }
    }

    fn finish(&self) -> Result<(), CodecError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
}

/// Decodes a request body, refusing anything beyond the limits.
pub fn decode_request(bytes: &[u8], limits: &CatchupLimits) -> Result<Request, CodecError> {
    limit("request bytes", bytes.len(), limits.max_request_bytes())?;
    let mut r = Reader { bytes };
    let request = match r.u8()? {
        REQUEST_DOCUMENT => Request::Document(decode_document_request(&mut r, limits)?),
        REQUEST_INDEX => Request::Index,
        REQUEST_POKE => Request::Poke,
        other => return Err(CodecError::UnknownRequestType(other)),
    };
    r.finish()?;
    Ok(request)
}

/// Decodes the rest of a document request body after its type byte.
fn decode_document_request(
    r: &mut Reader<'_>,
    limits: &CatchupLimits,
) -> Result<CatchupRequest, CodecError> {
    let doc = DocId::from_bytes(r.take(DocId::LEN)?).ok_or(CodecError::Invalid("document id"))?;
    let count = r.u16()?;
    limit("heads", count, limits.max_heads)?;
    let mut heads = Vec::with_capacity(count);
    for _ in 0..count {
        let mut head = [0u8; 32];
        head.copy_from_slice(r.take(32)?);
        heads.push(head);
    }
    let cursor_len = r.u16()?;
    limit("cursor bytes", cursor_len, limits.max_cursor_bytes)?;
    let cursor = r.take(cursor_len)?.to_vec();
    Ok(CatchupRequest { doc, heads, cursor })
}

/// Decodes a response body, refusing anything beyond the limits.
pub fn decode_response(
    bytes: &[u8],
    limits: &CatchupLimits,
) -> Result<CatchupResponse, CodecError> {
    limit("response bytes", bytes.len(), limits.max_response_bytes)?;
    let mut r = Reader { bytes };
    r.version()?;
    let resp = match r.u8()? {
        KIND_REFUSED => CatchupResponse::Refused(Refusal::from_code(r.u8()?)),
        KIND_PAGE => {
            let more = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(CodecError::Invalid("more flag")),
            };
            let cursor_len = r.u16()?;
            limit("cursor bytes", cursor_len, limits.max_cursor_bytes)?;
            let cursor = r.take(cursor_len)?.to_vec();
            let count = r.u32()?;
            limit("changes", count, limits.max_changes_per_page)?;
            // Every change needs at least its 4-byte length: never reserve beyond the input.
            let mut changes = Vec::with_capacity(count.min(r.bytes.len() / 4));
            for _ in 0..count {
                let len = r.u32()?;
                limit("change bytes", len, limits.max_change_bytes)?;
                changes.push(r.take(len)?.to_vec());
            }
            CatchupResponse::Page(CatchupPage { changes, more, cursor })
        }
        KIND_INDEX => {
            let count = r.u32()?;
            limit("index chats", count, limits.max_index_chats)?;
            // Never reserve beyond what the input can hold.
            let mut chats: Vec<ChatId> = Vec::with_capacity(count.min(r.bytes.len() / ChatId::LEN));
            for _ in 0..count {
                let chat = ChatId::from_slice(r.take(ChatId::LEN)?)
                    .ok_or(CodecError::Invalid("chat id"))?;
                if chats.last().is_some_and(|last| *last >= chat) {
                    return Err(CodecError::Invalid("chat index order"));
                }
                chats.push(chat);
            }
            CatchupResponse::Index(chats)
        }
        _ => return Err(CodecError::Invalid("response kind")),
    };
    r.finish()?;
    Ok(resp)
}

/// Reads one length-prefixed frame of at most `max` body bytes (see [`crate::frame`]).
pub async fn read_frame<T>(io: &mut T, max: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let too_large = |len| CodecError::FrameTooLarge { len, max }.into();
    crate::frame::read(io, max, too_large, CodecError::Truncated).await
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T>(io: &mut T, body: &[u8]) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = u32::try_from(body.len()).map_err(|_| CodecError::FrameTooLarge {
        len: body.len() as u64,
        max: u32::MAX as usize,
    })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await?;
    Ok(())
}

/// The request-response codec of `/confab/catchup/1`.
#[derive(Debug, Clone, Default)]
pub struct CatchupCodec {
    limits: CatchupLimits,
}

impl CatchupCodec {
    /// A codec enforcing these limits on both directions.
    pub fn new(limits: CatchupLimits) -> Self {
        Self { limits }
    }
}

impl libp2p::request_response::Codec for CatchupCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = CatchupResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, self.limits.max_request_bytes()).await?;
        Ok(decode_request(&body, &self.limits)?)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<CatchupResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, self.limits.max_response_bytes).await?;
        Ok(decode_response(&body, &self.limits)?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = encode_request(&req, &self.limits)?;
        write_frame(io, &body).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: CatchupResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = encode_response(&resp, &self.limits)?;
        write_frame(io, &body).await
    }
}
