//! A state document sent to storage as one streamed Put Blob while Terraform is still
//! sending it (issue 19), when Terraform declared its length and MD5 (its `http`
//! backend always does: `Content-MD5` on every POST).
//!
//! Storage checks the declared MD5 itself: Put Blob's `Content-MD5` request header is
//! verified against the body and a mismatch is refused with `400 Md5Mismatch`, storing
//! nothing (Microsoft's Put Blob reference, "Request headers"; Azurite's
//! `BlockBlobHandler.upload` does the same). So nubes hashes nothing, and storage does
//! one MD5 pass, as it does for any client's Put Blob.
//!
//! Atomicity comes from holding back the body's last piece: everything else goes out as
//! it arrives, the last piece only once the whole document has passed the parser and
//! the lineage/serial guard and the previous version has been kept as a snapshot.
//! Storage stores a Put Blob only when all `Content-Length` bytes have arrived; a write
//! that is refused, or that nubes abandons ([`PendingPut`] dropped), is cut off short of
//! that, its connection closed, and nothing of it is stored.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context as CallContext, Request};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pieces queued between the gateway and the Put Blob request: memory stays bounded by
/// this many of Terraform's pieces (hyper's reads, tens of KiB each) plus one block.
pub(super) const PIECES_QUEUED: usize = 32;

/// The streamed request body reads this much per poll (the SDK's default is 64 KiB).
const READ_SIZE: usize = 256 << 10;

/// The MD5 a request's body must have, sent as its `Content-MD5` header by
/// [`ContentMd5Policy`]. The SDK's `upload` options have no field for this transactional
/// header (only `x-ms-blob-content-md5`, the stored property), so it travels in the
/// call's context.
#[derive(Debug, Clone, Copy)]
pub(super) struct ContentMd5(pub [u8; 16]);

/// Adds `Content-MD5` to a request whose context carries a [`ContentMd5`].
#[derive(Debug)]
pub(super) struct ContentMd5Policy;

#[async_trait]
impl Policy for ContentMd5Policy {
    async fn send(
        &self,
        ctx: &CallContext,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        if let Some(ContentMd5(md5)) = ctx.value::<ContentMd5>() {
            request.insert_header("content-md5", super::b64(md5));
        }
        match next.split_first() {
            Some((first, rest)) => first.send(ctx, request, rest).await,
            None => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                "the storage client's request pipeline has no transport",
            )),
        }
    }
}

struct Pieces {
    rx: mpsc::Receiver<Bytes>,
    carry: Bytes,
    read: u64,
}

/// The Put Blob's body: the pieces the gateway passes on, in order. It ends cleanly
/// only after exactly `len` bytes; if the sender goes away before that (the write was
/// refused or abandoned) it fails, so the request is cut off and storage stores
/// nothing. It cannot be sent twice: the SDK's retry asks to [`reset`] it, which fails
/// once anything was read (the pieces are gone), and the write fails instead.
///
/// [`reset`]: azure_core::stream::SeekableStream::reset
#[derive(Clone)]
pub(super) struct PieceStream {
    // The SDK clones a body for each attempt: the clones share the one queue.
    inner: Arc<Mutex<Pieces>>,
    len: u64,
}

impl std::fmt::Debug for PieceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceStream")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl PieceStream {
    pub(super) fn new(rx: mpsc::Receiver<Bytes>, len: u64) -> Self {
        PieceStream {
            inner: Arc::new(Mutex::new(Pieces {
                rx,
                carry: Bytes::new(),
                read: 0,
            })),
            len,
        }
    }
}

impl futures::io::AsyncRead for PieceStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let len = self.len;
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        while n < buf.len() {
            if p.carry.is_empty() {
                match p.rx.poll_recv(cx) {
                    Poll::Ready(Some(piece)) => p.carry = piece,
                    Poll::Ready(None) if n == 0 => {
                        return Poll::Ready(if p.read == len {
                            Ok(0)
                        } else {
                            Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionAborted,
                                "the state write was abandoned before its end",
                            ))
                        });
                    }
                    Poll::Pending if n == 0 => return Poll::Pending,
                    _ => break,
                }
            }
            let take = p.carry.len().min(buf.len() - n);
            let piece = p.carry.split_to(take);
            buf[n..n + take].copy_from_slice(&piece);
            n += take;
            p.read += take as u64;
        }
        Poll::Ready(Ok(n))
    }
}

#[async_trait]
impl azure_core::stream::SeekableStream for PieceStream {
    async fn reset(&mut self) -> azure_core::Result<()> {
        let p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if p.read == 0 && p.carry.is_empty() {
            return Ok(());
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Io,
            "a streamed state write cannot be sent again: its bytes have passed through",
        ))
    }

    fn len(&self) -> Option<u64> {
        Some(self.len)
    }

    fn buffer_size(&self) -> usize {
        READ_SIZE
    }
}

/// A Put Blob of a state document under way, all of it sent but `last`
/// ([`super::StagedKind::Streaming`]). Dropped without [`finish`](PendingPut::finish),
/// it cuts the request off, and storage stores nothing.
pub struct PendingPut {
    pub(super) tx: Option<mpsc::Sender<Bytes>>,
    pub(super) last: Bytes,
    pub(super) task: Option<JoinHandle<azure_core::Result<String>>>,
    /// The blob's ETag, length and metadata when the write began (under the lease).
    pub(super) etag: String,
    pub(super) had_content: bool,
    pub(super) metadata: HashMap<String, String>,
}

impl PendingPut {
    /// Send the last piece and wait for storage's answer: the new ETag.
    pub(super) async fn finish(mut self) -> azure_core::Result<String> {
        let aborted =
            |why: String| azure_core::Error::with_message(azure_core::error::ErrorKind::Io, why);
        let (Some(tx), Some(task)) = (self.tx.take(), self.task.take()) else {
            return Err(aborted("the state write was already finished".into()));
        };
        // A send fails only when the request has already ended; its outcome says why.
        let _ = tx.send(std::mem::take(&mut self.last)).await;
        drop(tx);
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(aborted(format!("the state upload stopped: {e}"))),
        }
    }

    /// The request's outcome once it has ended early (a piece could not be sent: the
    /// request is over). Closing the queue cuts it off if it was not.
    pub(super) async fn outcome(mut self) -> azure_core::Result<String> {
        drop(self.tx.take());
        match self.task.take() {
            Some(task) => match task.await {
                Ok(outcome) => outcome,
                Err(e) => Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Io,
                    format!("the state upload stopped: {e}"),
                )),
            },
            None => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Io,
                "the state write was already finished",
            )),
        }
    }
}

impl Drop for PendingPut {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
