// Baton console: what the pages holding a remote session share (the terminal, the screen).
// `BatonSession.card` keeps the page's state — in its card's data-state, its status line and
// its Disconnect button — and says the session's end prominently, once, with a way to start
// again; `BatonSession.open` makes the session with a POST to the API (the page's CSRF token in
// its header) and gives its ticket, or why not in the API's words.
window.BatonSession = {
  card(card, status, disconnect) {
    const page = {
      state: card.dataset.state,
      set(next, words) {
        page.state = next;
        card.dataset.state = next;
        if (words !== undefined) status.textContent = words;
        disconnect.disabled = next !== "open";
      },
      // `again` names the link that starts over; `links` are more anchors to offer.
      ended(why, again, links = []) {
        if (page.state === "ended") return;
        page.set("ended", "");
        const alert = document.createElement("p");
        alert.setAttribute("role", "alert");
        alert.className = "error session-ended";
        alert.dataset.testid = "session-ended";
        alert.textContent = why;
        const link = document.createElement("a");
        link.href = location.pathname;
        link.textContent = again;
        alert.append(" ", link);
        for (const more of links) alert.append(" · ", more);
        card.prepend(alert);
      },
    };
    return page;
  },

  async open(url, body) {
    const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
    const headers = { "content-type": "application/json", accept: "application/json", "x-csrf-token": csrf };
    let res;
    try {
      res = await fetch(url, { method: "POST", headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      return { error: `the server cannot be reached (${err.message}).` };
    }
    if (!res.ok) {
      let words = `${res.status} ${res.statusText}`;
      try { words = (await res.json()).detail || words; } catch (_) { /* not JSON: keep the status line */ }
      return { error: words };
    }
    return { ticket: await res.json() };
  },
};
