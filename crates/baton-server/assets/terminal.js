// Baton console: a device's terminal (xterm.js). The page changes nothing by loading; this
// script sizes the terminal to its box, opens a session with a POST to the API (`session.js`),
// and attaches to the ticket's WebSocket: binary frames are the terminal's bytes both ways, text
// frames JSON (`resize` from here; `opened` and `closed` from the server).
// When the session ends its reason is shown in the server's words and the terminal takes no
// more input.
(() => {
  "use strict";
  const card = document.getElementById("terminal-session");
  const box = document.getElementById("terminal");
  if (!card || !box || !window.Terminal || !window.FitAddon || !window.BatonSession) return;
  const device = card.dataset.device;
  // Watching someone's open session: read-only, with a watch ticket instead of a new session.
  const watching = card.dataset.watch;
  const status = document.getElementById("terminal-status");
  const disconnect = document.getElementById("term-disconnect");
  const encoder = new TextEncoder();

  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: 14,
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  term.focus();
  if (watching) term.options.disableStdin = true;

  let socket = null;
  let session = null;
  // Whether the device opened it: only then is there a recording.
  let opened = false;
  const page = BatonSession.card(card, status, disconnect);
  const setState = page.set;

  // The session's end, said prominently; the terminal stays readable but takes no input.
  const ended = (why) => {
    if (page.state === "ended") return;
    term.options.disableStdin = true;
    term.options.cursorBlink = false;
    const links = [];
    if (opened && card.hasAttribute("data-can-replay")) {
      const replay = document.createElement("a");
      replay.href = `/devices/${encodeURIComponent(device)}/recordings/${encodeURIComponent(session)}`;
      replay.textContent = "Replay the recording";
      links.push(replay);
    }
    page.ended(why, watching ? "Watch again" : "Open a new terminal", links);
  };
  if (page.state === "ended") {
    term.options.disableStdin = true;
    return;
  }

  const sendJson = (message) => {
    if (watching) return;
    if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  };
  const sendBytes = (bytes) => {
    if (!watching && page.state === "open" && socket?.readyState === WebSocket.OPEN) socket.send(bytes);
  };
  term.onData((data) => sendBytes(encoder.encode(data)));
  term.onBinary((data) => sendBytes(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
  term.onResize(({ cols, rows }) => sendJson({ type: "resize", cols, rows }));

  // The window (or the page's layout) changes: the terminal follows, at most every 100 ms.
  let refit = null;
  new ResizeObserver(() => {
    clearTimeout(refit);
    refit = setTimeout(() => fit.fit(), 100);
  }).observe(box);

  // Copy and paste: Ctrl+Shift+C / Ctrl+Shift+V (plain Ctrl+C is the shell's interrupt), or the
  // buttons above the terminal.
  const copy = () => {
    const text = term.getSelection();
    if (text && navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    term.focus();
  };
  const paste = () => {
    if (!navigator.clipboard?.readText) return;
    navigator.clipboard.readText().then((text) => { if (text) term.paste(text); }, () => {});
    term.focus();
  };
  term.attachCustomKeyEventHandler((e) => {
    if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) return true;
    if (e.code === "KeyC") { copy(); e.preventDefault(); return false; }
    if (e.code === "KeyV") { paste(); e.preventDefault(); return false; }
    return true;
  });
  document.getElementById("term-copy")?.addEventListener("click", copy);
  document.getElementById("term-paste")?.addEventListener("click", paste);
  // The server answers a client's close with no words of its own: the page says it.
  disconnect.addEventListener("click", () => {
    ended(watching ? "You stopped watching." : "Session ended: you disconnected.");
    socket?.close(1000, "closed from the console");
  });

  const attach = (ticket) => {
    session = ticket.session.id;
    const url = new URL(ticket.attach_path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", (e) => {
      if (typeof e.data !== "string") {
        term.write(new Uint8Array(e.data));
        return;
      }
      let message;
      try { message = JSON.parse(e.data); } catch (_) { return; }
      if (message.type === "opened") {
        opened = true;
        setState("open", watching ? "Watching (read-only)." : "Connected.");
        // The window may have changed while the device was asked.
        sendJson({ type: "resize", cols: term.cols, rows: term.rows });
      } else if (message.type === "closed") {
        const code = message.exit_code === undefined || message.exit_code === null ? "" : ` (exit code ${message.exit_code})`;
        ended(`Session ended: ${message.reason}${code}.`);
      }
    });
    socket.addEventListener("close", () => ended("Session ended: the connection to the server was lost."));
  };

  const open = async () => {
    const sessions = `/api/v1/devices/${encodeURIComponent(device)}/sessions`;
    const answer = watching
      ? await BatonSession.open(`${sessions}/${encodeURIComponent(watching)}/watch`)
      : await BatonSession.open(sessions, { kind: "terminal", cols: term.cols, rows: term.rows });
    if (answer.error) {
      ended(`No terminal: ${answer.error}`);
      return;
    }
    setState("connecting", watching ? "Joining the session…" : "Waiting for the device to open the terminal…");
    attach(answer.ticket);
  };
  open();
})();
