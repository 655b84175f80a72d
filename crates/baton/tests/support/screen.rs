//! Helpers for the screen-session tests: a real X display in memory (`Xvfb`) with an `xterm` on
//! it, a VNC server of the test's own (`x11vnc`), and a minimal RFB client on a session's attach
//! WebSocket that reads the picture (raw pixels) and presses keys.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

/// The xterm's background and text, distinctive on the screen.
pub const BACKGROUND: [u8; 3] = [0xff, 0x00, 0xff];
pub const TEXT: [u8; 3] = [0xff, 0xff, 0x00];
/// The screen's size.
pub const WIDTH: u16 = 640;
pub const HEIGHT: u16 = 480;

/// A child process killed and waited for when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An X display in memory (`Xvfb`, black root window) on a display number it picked itself.
pub struct Display {
    pub name: String,
    _xvfb: Running,
    _ready: BufReader<ChildStdout>,
}

impl Display {
    pub fn start() -> Self {
        let size = format!("{WIDTH}x{HEIGHT}x24");
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", &size, "-br", "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        // Xvfb writes its display number once it accepts clients.
        let mut ready = BufReader::new(child.stdout.take().expect("stdout"));
        let mut number = String::new();
        ready.read_line(&mut number).expect("Xvfb says its display");
        let name = format!(":{}", number.trim());
        assert!(number.trim().parse::<u32>().is_ok(), "Xvfb said {number:?}");
        Display { name, _xvfb: Running(child), _ready: ready }
    }

    /// An xterm filling most of the screen, magenta with yellow text: it prints `banner`, then
    /// everything typed into it lands in `typed` (`cat`, line by line).
    pub fn xterm(&self, banner: &str, typed: &Path) -> Running {
        let script = format!("echo {banner}; exec cat > \"$0\"");
        let child = Command::new("xterm")
            .args(["-display", &self.name, "-geometry", "100x40+0+0", "-bg", "#ff00ff", "-fg", "#ffff00"])
            .args(["-e", "sh", "-c", &script])
            .arg(typed)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xterm starts");
        Running(child)
    }

    /// An x11vnc of the test's own on this display: TCP on localhost, VNC authentication with
    /// the first line of `password_file`, not view-only. Its port, once it listens.
    pub fn x11vnc(&self, password_file: &Path) -> (Running, u16) {
        let mut child = Command::new("x11vnc")
            .args(["-display", &self.name, "-localhost", "-autoport", "25900", "-passwdfile"])
            .arg(password_file)
            .args(["-forever", "-shared", "-norc", "-quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("x11vnc starts");
        // x11vnc prints `PORT=n` once it listens.
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(out.read_line(&mut line).expect("x11vnc's output") > 0, "x11vnc ended before listening");
            if let Some(port) = line.trim().strip_prefix("PORT=") {
                break port.parse().expect("a port");
            }
        };
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        (Running(child), port)
    }
}

/// The child processes of `parent` named `name`.
pub fn children(parent: u32, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let Some((head, rest)) = stat.rsplit_once(')') else { return false };
            let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
            let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
            comm == name && ppid == Some(parent) && !rest.trim_start().starts_with('Z')
        })
        .collect()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An RFB client on a screen session's attach WebSocket, as noVNC is one: version 3.8, no
/// authentication, then raw 32-bit pixels.
pub struct Rfb {
    ws: Ws,
    /// Bytes received and not read yet.
    unread: Vec<u8>,
    pub width: u16,
    pub height: u16,
    pub name: String,
    /// The picture, 0x00RRGGBB per pixel.
    pixels: Vec<u32>,
}

impl Rfb {
    /// Attaches at `url` and does the handshake; the close reason if the session ends first.
    pub async fn connect(url: &str) -> Result<Rfb, String> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("attach WebSocket opens");
        let mut rfb = Rfb { ws, unread: Vec::new(), width: 0, height: 0, name: String::new(), pixels: Vec::new() };
        let greeting = rfb.read(12).await?;
        assert_eq!(greeting, b"RFB 003.008\n", "the device greets as VNC 3.8");
        rfb.send(b"RFB 003.008\n").await;
        let count = rfb.read(1).await?[0];
        assert_eq!(rfb.read(usize::from(count)).await?, [1], "only security type None is offered");
        rfb.send(&[1]).await;
        assert_eq!(rfb.read(4).await?, [0, 0, 0, 0], "security passes");
        rfb.send(&[1]).await;
        let init = rfb.read(24).await?;
        rfb.width = u16::from_be_bytes([init[0], init[1]]);
        rfb.height = u16::from_be_bytes([init[2], init[3]]);
        let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        rfb.name = String::from_utf8_lossy(&rfb.read(len as usize).await?).into_owned();
        rfb.pixels = vec![0; usize::from(rfb.width) * usize::from(rfb.height)];
        // 32 bits per pixel, little-endian, red at bit 16, green at 8, blue at 0; raw encoding.
        rfb.send(&[0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]).await;
        rfb.send(&[2, 0, 0, 1, 0, 0, 0, 0]).await;
        Ok(rfb)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.ws.send(Message::Binary(bytes.to_vec().into())).await.expect("sent");
    }

    async fn read(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.unread.len() < n {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => self.unread.extend_from_slice(&b),
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| f.reason.to_string()).unwrap_or_default()),
                Some(Ok(Message::Text(t))) => panic!("a screen session sent text: {t}"),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return Err(String::new()),
            }
        }
        Ok(self.unread.drain(..n).collect())
    }

    /// Asks for the whole picture and reads it; the server has read everything sent before.
    pub async fn refresh(&mut self) -> Result<(), String> {
        let [w, h] = [self.width.to_be_bytes(), self.height.to_be_bytes()];
        self.send(&[3, 0, 0, 0, 0, 0, w[0], w[1], h[0], h[1]]).await;
        loop {
            match self.read(1).await?[0] {
                0 => break,
                1 => {
                    let head = self.read(5).await?;
                    self.read(6 * usize::from(u16::from_be_bytes([head[3], head[4]]))).await?;
                }
                2 => {}
                3 => {
                    let head = self.read(7).await?;
                    self.read(u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize).await?;
                }
                other => panic!("an RFB message of type {other} from the server"),
            }
        }
        let head = self.read(3).await?;
        for _ in 0..u16::from_be_bytes([head[1], head[2]]) {
            let rect = self.read(12).await?;
            let field = |at: usize| usize::from(u16::from_be_bytes([rect[at], rect[at + 1]]));
            let (x, y, w, h) = (field(0), field(2), field(4), field(6));
            assert_eq!(&rect[8..12], &[0, 0, 0, 0], "raw encoding, as asked");
            let data = self.read(w * h * 4).await?;
            for row in 0..h {
                for col in 0..w {
                    let at = (row * w + col) * 4;
                    let pixel = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                    self.pixels[(y + row) * usize::from(self.width) + x + col] = pixel & 0x00ff_ffff;
                }
            }
        }
        Ok(())
    }

    /// The share of the picture in `rgb`.
    pub fn share(&self, rgb: [u8; 3]) -> f64 {
        let want = u32::from_be_bytes([0, rgb[0], rgb[1], rgb[2]]);
        self.pixels.iter().filter(|p| **p == want).count() as f64 / self.pixels.len().max(1) as f64
    }

    /// Presses and releases a key for each character (`\n` is Return).
    pub async fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            let keysym = if c == '\n' { 0xff0d } else { u32::from(c) };
            for down in [1, 0] {
                let k = keysym.to_be_bytes();
                self.send(&[4, down, 0, 0, k[0], k[1], k[2], k[3]]).await;
            }
        }
    }

    /// Reads until the session ends; the close frame's reason.
    pub async fn until_closed(&mut self) -> String {
        let closed = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    None | Some(Err(_)) => return String::new(),
                    Some(Ok(_)) => {}
                }
            }
        });
        closed.await.expect("the session ends within a minute")
    }

    /// Closes the WebSocket, as a viewer that leaves does.
    pub async fn leave(mut self) {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}
