// Baton console: replays a session recording (asciicast v2, fetched from the API with the
// session cookie) in xterm.js at the pace it was recorded, or 0.5–4 times that: play, pause,
// play again from the start. Output and resizes are replayed; recorded keystrokes are not
// (the terminal's echo already shows them).
(() => {
  "use strict";
  const card = document.getElementById("player");
  const screen = document.getElementById("player-screen");
  if (!card || !screen || !window.Terminal) return;
  const button = document.getElementById("player-play");
  const speed = document.getElementById("player-speed");
  const clock = document.getElementById("player-time");

  let term = null;
  let header = null;
  let events = [];
  let duration = 0;
  // Where the replay is: the next event, and the recording's time (seconds) it has reached.
  let next = 0;
  let position = 0;
  // While playing: the wall-clock moment that stands for the recording's start, and the speed.
  let origin = 0;
  let rate = 1;
  let timer = null;
  let ticker = null;

  const minutes = (secs) => {
    const s = Math.floor(secs);
    const [h, m, r] = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
    const two = (n) => String(n).padStart(2, "0");
    return h > 0 ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
  };
  const state = () => card.dataset.state;
  const setState = (s) => {
    card.dataset.state = s;
    button.textContent = s === "playing" ? "Pause" : s === "ended" ? "Play again" : "Play";
  };
  const elapsed = () => ((performance.now() - origin) * rate) / 1000;
  const showTime = () => { clock.textContent = `${minutes(position)} / ${minutes(duration)}`; };

  const apply = ([, code, data]) => {
    if (code === "o") {
      term.write(data);
    } else if (code === "r") {
      const [cols, rows] = String(data).split("x").map(Number);
      if (cols > 0 && rows > 0) term.resize(cols, rows);
    }
  };

  // Writes every event that is due, then sleeps until the next one.
  const step = () => {
    position = Math.min(elapsed(), duration);
    while (next < events.length && events[next][0] <= position) apply(events[next++]);
    if (next >= events.length) {
      stop();
      position = duration;
      showTime();
      setState("ended");
      return;
    }
    timer = setTimeout(step, ((events[next][0] - position) * 1000) / rate);
  };
  const stop = () => {
    clearTimeout(timer);
    clearInterval(ticker);
    timer = ticker = null;
  };
  const play = () => {
    if (state() === "ended") {
      term.reset();
      term.resize(header.width, header.height);
      next = 0;
      position = 0;
    }
    rate = Number(speed.value) || 1;
    origin = performance.now() - (position * 1000) / rate;
    setState("playing");
    ticker = setInterval(() => { position = Math.min(elapsed(), duration); showTime(); }, 250);
    step();
  };
  const pause = () => {
    position = Math.min(elapsed(), duration);
    stop();
    showTime();
    setState("paused");
  };
  button.addEventListener("click", () => (state() === "playing" ? pause() : play()));
  speed.addEventListener("change", () => {
    if (state() !== "playing") return;
    pause();
    play();
  });

  const load = async () => {
    const res = await fetch(card.dataset.src, { headers: { accept: "application/x-asciicast" } });
    if (!res.ok) throw new Error(`the recording could not be fetched (${res.status} ${res.statusText})`);
    const lines = (await res.text()).split("\n").filter((l) => l.trim() !== "");
    header = JSON.parse(lines.shift() ?? "null");
    if (header?.version !== 2) throw new Error("the recording is not asciicast v2");
    events = lines.map((l) => JSON.parse(l)).filter((e) => Array.isArray(e) && typeof e[0] === "number");
    duration = events.length > 0 ? events[events.length - 1][0] : 0;
    term = new Terminal({
      cols: header.width || 80,
      rows: header.height || 24,
      disableStdin: true,
      cursorBlink: false,
      scrollback: 5000,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: 14,
    });
    term.open(screen);
    showTime();
    setState("ready");
    button.disabled = false;
  };
  load().catch((err) => {
    setState("failed");
    window.batonSay?.(card, `Cannot replay: ${err.message}`);
  });
})();
