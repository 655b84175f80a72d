// Baton console: a device's screen (noVNC). The page changes nothing by loading; this module
// opens a screen session with a POST to the API (`session.js`) and hands the ticket's WebSocket
// to noVNC's RFB: binary RFB both ways from the first byte. View-only unless the page controls
// the screen; the picture is scaled to fit. When the session ends, its reason (the WebSocket's
// close reason, in the server's words) is shown.
import RFB from "/assets/vendor/novnc-rfb.js";

const card = document.getElementById("screen-session");
const box = document.getElementById("screen");
if (card && box && window.BatonSession) start();

function start() {
  const device = card.dataset.device;
  const control = card.hasAttribute("data-control");
  const disconnect = document.getElementById("screen-disconnect");
  const page = BatonSession.card(card, document.getElementById("screen-status"), disconnect);
  const ended = (why) => page.ended(why, "Connect again");
  let rfb = null;
  if (page.state === "ended") return;

  disconnect.addEventListener("click", () => {
    ended("Session ended: you disconnected.");
    rfb?.disconnect();
  });

  const attach = (ticket) => {
    card.dataset.session = ticket.session.id;
    const url = new URL(ticket.attach_path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    // Our own socket, so that its close reason (why the session ended) can be read.
    const socket = new WebSocket(url);
    socket.addEventListener("close", (e) => {
      ended(e.reason ? `Session ended: ${e.reason}.` : "Session ended: the connection to the server was lost.");
    });
    rfb = new RFB(box, socket, { shared: true });
    rfb.viewOnly = !control;
    rfb.focusOnClick = control;
    rfb.scaleViewport = true;
    rfb.resizeSession = false;
    rfb.background = "#000";
    rfb.addEventListener("connect", () => {
      page.set("open", control ? "Connected: you control the screen." : "Connected: view only.");
      if (control) rfb.focus();
    });
  };

  (async () => {
    const opened = await BatonSession.open(`/api/v1/devices/${encodeURIComponent(device)}/sessions`, { kind: "screen", control });
    if (opened.error) {
      ended(`No screen: ${opened.error}`);
      return;
    }
    page.set("connecting", "Waiting for the device to show its screen…");
    attach(opened.ticket);
  })();
}
