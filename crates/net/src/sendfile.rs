//! Response bodies sent from a file by sendfile(2), as nginx's `sendfile on`: the kernel
//! hands the file's page-cache pages to the socket, with no copy through the process.
//!
//! hyper writes a response's head and body through the connection's stream, and knows
//! nothing of files. So a handler that serves a file offers the connection's
//! [`Sendfile`] the body it gives hyper (bytes it holds in memory) together with the
//! open file they were read from. When hyper then writes a slice that lies inside those
//! bytes, [`SendfileStream`] sends that part of the file instead. The offer holds a
//! reference to the bytes, so while it stands no other allocation can have their
//! address: a slice inside them is that body. A slice it does not recognise is written
//! as usual, so the worst a missed offer costs is a copy. If the file shrank since it was
//! read, the rest goes from the bytes in memory.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Offers kept per connection at most; an older one that was never written (the client
/// went away) is dropped when a newer one is made.
const MAX_OFFERS: usize = 8;

struct Offer {
    body: Bytes,
    file: Arc<File>,
    /// Where `body[0]` is in the file.
    offset: u64,
}

/// The file bodies a plain HTTP/1.1 connection may send by sendfile. Each such request
/// carries the connection's handle as an extension.
#[derive(Clone, Default)]
pub struct Sendfile(Arc<Mutex<VecDeque<Offer>>>);

impl Sendfile {
    /// `body` (which the handler passes to hyper as the response body) is the bytes of
    /// `file` from `offset` on.
    pub fn offer(&self, body: &Bytes, file: Arc<File>, offset: u64) {
        let mut offers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if offers.len() == MAX_OFFERS {
            offers.pop_front();
        }
        offers.push_back(Offer {
            body: body.clone(),
            file,
            offset,
        });
    }
}

/// Where in an offered file a slice's bytes are: (offer index, file, file offset).
fn locate(offers: &VecDeque<Offer>, slice: &[u8]) -> Option<(usize, Arc<File>, u64)> {
    let start = slice.as_ptr() as usize;
    offers.iter().enumerate().find_map(|(i, o)| {
        let base = o.body.as_ptr() as usize;
        (!slice.is_empty() && start >= base && start + slice.len() <= base + o.body.len())
            .then(|| (i, o.file.clone(), o.offset + (start - base) as u64))
    })
}

/// A TCP stream that writes offered file bodies by sendfile(2).
pub struct SendfileStream {
    stream: TcpStream,
    offers: Sendfile,
}

impl SendfileStream {
    pub fn new(stream: TcpStream, offers: Sendfile) -> SendfileStream {
        SendfileStream { stream, offers }
    }

    /// Writes `bufs` with MSG_MORE: the response head waits in the socket for the file's
    /// first bytes and leaves in the same segment (nginx's `tcp_nopush`).
    fn poll_send_more(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_syscall(cx, || {
            // SAFETY: the message points at `bufs`, which outlive the call; IoSlice has
            // iovec's layout.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len() as _;
            let flags = libc::MSG_MORE | libc::MSG_NOSIGNAL;
            unsafe { libc::sendmsg(self.stream.as_raw_fd(), &msg, flags) }
        })
    }

    /// Sends `len` bytes of `file` from `offset`; Ok(0) when the file ends before.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.poll_syscall(cx, || {
            let mut off = offset as libc::off_t;
            // SAFETY: two open descriptors and a valid offset pointer.
            unsafe { libc::sendfile(self.stream.as_raw_fd(), file.as_raw_fd(), &mut off, len) }
        })
    }

    /// Runs a write system call (a byte count, or -1 and errno) once the socket is
    /// writable, again whenever it would block.
    fn poll_syscall(
        &self,
        cx: &mut Context<'_>,
        mut call: impl FnMut() -> isize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            let sent = self.stream.try_io(Interest::WRITABLE, || match call() {
                n if n < 0 => Err(io::Error::last_os_error()),
                n => Ok(n as usize),
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let hit = {
            let offers = this.offers.0.lock().unwrap_or_else(|e| e.into_inner());
            if offers.is_empty() {
                None
            } else {
                bufs.iter()
                    .enumerate()
                    .find_map(|(i, b)| locate(&offers, b).map(|found| (i, found)))
            }
        };
        match hit {
            None => Pin::new(&mut this.stream).poll_write_vectored(cx, bufs),
            Some((0, (index, file, offset))) => {
                let len = bufs[0].len();
                let sent = ready!(this.poll_sendfile(cx, &file, offset, len))?;
                if sent == 0 {
                    // The file is shorter than when it was read: send what was read.
                    return Pin::new(&mut this.stream).poll_write(cx, &bufs[0]);
                }
                let mut offers = this.offers.0.lock().unwrap_or_else(|e| e.into_inner());
                // Offers before this one were never written; this one is done when its
                // last byte is.
                offers.drain(..index);
                if let Some(o) = offers.front() {
                    let end = o.body.as_ptr() as usize + o.body.len();
                    if bufs[0].as_ptr() as usize + sent == end {
                        offers.pop_front();
                    }
                }
                Poll::Ready(Ok(sent))
            }
            Some((head, _)) => this.poll_send_more(cx, &bufs[..head]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A body offered from a file leaves by sendfile: the peer receives the file's
    /// current bytes, which differ from the (stale) copy in memory, and the offer is
    /// used up; bytes not offered are written as they are.
    #[tokio::test]
    async fn offered_body_goes_from_the_file_and_the_rest_as_written() {
        let dir = std::env::temp_dir().join(format!("sendfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"0123456789FILE")
            .unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        // The memory copy says "memory"; the file at offset 10 says "FILE".
        let body = Bytes::from_static(b"xxmemory").slice(2..);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let offers = Sendfile::default();
        let mut stream =
            SendfileStream::new(TcpStream::connect(addr).await.unwrap(), offers.clone());
        offers.offer(&body.slice(0..4), file, 10);
        let head = b"HEAD:";
        let mut bufs: Vec<&[u8]> = vec![head, &body[0..4], &body[4..]];
        while !bufs.is_empty() {
            let slices: Vec<IoSlice> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            let mut n = stream.write_vectored(&slices).await.unwrap();
            while n > 0 {
                let take = n.min(bufs[0].len());
                bufs[0] = &bufs[0][take..];
                n -= take;
                if bufs[0].is_empty() {
                    bufs.remove(0);
                }
            }
        }
        stream.shutdown().await.unwrap();
        drop(stream);
        assert_eq!(reader.await.unwrap(), b"HEAD:FILEry");
        assert!(offers.0.lock().unwrap().is_empty(), "the offer is used up");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
