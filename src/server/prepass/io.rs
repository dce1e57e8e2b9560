//! [`PrePass`] as the byte stream h2 reads and writes: judged bytes first, then the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{KEEP_CAPACITY, PrePass, READ_SIZE};

impl<S: AsyncRead + Unpin> AsyncRead for PrePass<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.ready -= n;
                if this.buf.is_empty() && this.buf.capacity() > KEEP_CAPACITY {
                    this.buf = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.buf.is_empty() && this.raw >= out.remaining() {
                // The rest of a frame that passes without a look: straight into h2's buffer.
                let before = out.filled().len();
                ready!(Pin::new(&mut this.io).poll_read(cx, out))?;
                let n = out.filled().len() - before;
                if n == 0 {
                    this.eof = true;
                } else if this.raw != usize::MAX {
                    this.raw -= n;
                }
                return Poll::Ready(Ok(()));
            }
            this.buf.reserve(READ_SIZE);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.buf
            ))?;
            if n == 0 {
                // The client closed its side: what is buffered goes on as it is, then the end.
                this.eof = true;
                if !this.poisoned {
                    this.ready = this.buf.len();
                }
                this.block = None;
                continue;
            }
            this.judge();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrePass<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
