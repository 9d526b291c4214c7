//! Length-prefixed frames (`u32` BE body length ‖ body), shared by the request-response
//! protocols (`catchup`, `media`), each with its own typed errors.

use std::io;

use libp2p::futures::{AsyncRead, AsyncReadExt};

/// The most bytes reserved ahead of those actually received.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Reads one frame of at most `max` body bytes. A larger length is refused from the prefix
/// alone (`too_large(len)`), and the buffer grows with the bytes that arrive, so a peer can
/// never make us allocate more than it sent (plus [`READ_CHUNK`]). A short body fails as
/// `UnexpectedEof` carrying `truncated`.
pub(crate) async fn read<T, E>(
    io: &mut T,
    max: usize,
    too_large: impl FnOnce(u64) -> io::Error,
    truncated: E,
) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u64::from(u32::from_be_bytes(len));
    if len > max as u64 {
        return Err(too_large(len));
    }
    // `len` ≤ max, checked above.
    let len = len as usize;
    let mut body = Vec::with_capacity(len.min(READ_CHUNK));
    (&mut *io).take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, truncated));
    }
    Ok(body)
}
