//! What `baton bench tunnel` forwards to: three TCP servers of its own on loopback, the "device's"
//! services. The source sends as many bytes as the client asks for (an 8-byte big-endian count)
//! and closes; the sink reads to end of file and answers with the count it read; the echo server
//! sends back what it reads (the idle connections answer once, so the bench knows each is
//! through). The bytes are random, so nothing on the way gains by compressing.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The bytes a source sends, over and over: 1 MiB of xorshift.
const BLOCK: usize = 1 << 20;

/// Where the three servers listen; they stop with the runtime.
#[derive(Clone, Copy)]
pub struct Targets {
    pub source: SocketAddr,
    pub sink: SocketAddr,
    pub echo: SocketAddr,
}

impl Targets {
    pub async fn start() -> anyhow::Result<Self> {
        Ok(Targets {
            source: serve(|tcp| source(tcp, random_block())).await?,
            sink: serve(sink).await?,
            echo: serve(echo).await?,
        })
    }

    pub fn all(&self) -> [SocketAddr; 3] {
        [self.source, self.sink, self.echo]
    }
}

/// Listens on a free loopback port and runs `handle` for each connection.
async fn serve<F, Fut>(handle: F) -> anyhow::Result<SocketAddr>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(handle(tcp));
        }
    });
    Ok(addr)
}

async fn source(mut tcp: TcpStream, block: std::sync::Arc<Vec<u8>>) -> std::io::Result<()> {
    let bytes = tcp.read_u64().await?;
    send(&mut tcp, &block, bytes).await?;
    tcp.shutdown().await
}

async fn sink(mut tcp: TcpStream) -> std::io::Result<()> {
    let read = read_to_end(&mut tcp).await?;
    tcp.write_u64(read).await?;
    tcp.shutdown().await
}

/// Writes `bytes` bytes, the block over and over.
async fn send(tcp: &mut TcpStream, block: &[u8], bytes: u64) -> std::io::Result<()> {
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        tcp.write_all(&block[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

/// Reads to end of file; how many bytes came.
async fn read_to_end(tcp: &mut TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0u64;
    loop {
        match tcp.read(&mut buf).await? {
            0 => return Ok(read),
            n => read += n as u64,
        }
    }
}

async fn echo(tcp: TcpStream) -> std::io::Result<()> {
    let (mut reader, mut writer) = tcp.into_split();
    tokio::io::copy(&mut reader, &mut writer).await?;
    writer.shutdown().await
}

/// The source's block, made once.
fn random_block() -> std::sync::Arc<Vec<u8>> {
    static BLOCK_BYTES: std::sync::OnceLock<std::sync::Arc<Vec<u8>>> = std::sync::OnceLock::new();
    BLOCK_BYTES.get_or_init(|| std::sync::Arc::new(random(BLOCK))).clone()
}

/// `len` random bytes (xorshift).
pub fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = vec![0u8; len];
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    bytes
}

/// Reads `bytes` from the source at `addr` (through whatever forwards it).
pub async fn download(addr: SocketAddr, bytes: u64) -> anyhow::Result<()> {
    let mut tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    tcp.write_u64(bytes).await?;
    let read = read_to_end(&mut tcp).await?;
    anyhow::ensure!(read == bytes, "the source's {bytes} bytes came as {read}");
    Ok(())
}

/// Sends `bytes` to the sink at `addr`, and waits for it to say it read them all.
pub async fn upload(addr: SocketAddr, bytes: u64) -> anyhow::Result<()> {
    let block = random_block();
    let mut tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    send(&mut tcp, &block, bytes).await?;
    tcp.shutdown().await?;
    let read = tcp.read_u64().await?;
    anyhow::ensure!(read == bytes, "the sink read {read} of the {bytes} bytes sent");
    Ok(())
}

/// A connection to the echo server at `addr` that answered once: an idle connection, through.
pub async fn idle(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"x").await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    Ok(tcp)
}
