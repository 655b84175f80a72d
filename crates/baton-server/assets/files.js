// Baton console: a device's files. Describe and download go to the API with the session cookie
// (a download is a plain link the browser streams to disk); an upload hashes the file with
// crypto.subtle (the whole file in memory, hence the 1 GiB limit), asks the device how much of
// an interrupted upload of it is kept, and PUTs the rest with the page's CSRF token, showing
// the progress. The API's words are shown when it refuses.
(() => {
  "use strict";
  const card = document.getElementById("files");
  if (!card) return;
  const device = encodeURIComponent(card.dataset.device);
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const pathInput = document.getElementById("file-path");
  const download = document.getElementById("file-download");
  const facts = document.getElementById("file-facts");
  const input = document.getElementById("file-input");
  const progress = document.getElementById("file-progress");
  const result = document.getElementById("file-result");
  const LIMIT = 1 << 30;
  for (const form of card.querySelectorAll("form")) form.addEventListener("submit", (e) => e.preventDefault());
  const api = (suffix, params) => `/api/v1/devices/${device}/files${suffix}?${new URLSearchParams(params)}`;

  const say = (element, text, isError) => {
    element.textContent = text;
    element.classList.toggle("error", !!isError);
    if (isError) element.setAttribute("role", "alert");
    else element.removeAttribute("role");
  };
  const problem = async (response) => {
    try {
      const body = await response.json();
      return body.detail || body.title || `HTTP ${response.status}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  };
  const stat = async (path, uploadSha256) => {
    const params = { path };
    if (uploadSha256) params.upload_sha256 = uploadSha256;
    const response = await fetch(api("/stat", params), { credentials: "same-origin" });
    if (!response.ok) throw new Error(await problem(response));
    return response.json();
  };

  const syncDownload = () => {
    const path = pathInput.value.trim();
    download.href = path ? api("", { path }) : "#";
    download.setAttribute("aria-disabled", path ? "false" : "true");
  };
  pathInput.addEventListener("input", syncDownload);
  syncDownload();
  // The field can change without an input event (a browser restoring it going back, say): the
  // link is brought up to date as it is followed, so it downloads the path the field shows.
  download.addEventListener("click", (e) => {
    syncDownload();
    if (!pathInput.value.trim()) e.preventDefault();
  });

  document.getElementById("file-stat").addEventListener("click", async () => {
    const path = pathInput.value.trim();
    if (!path) return say(facts, "Type a path first.", true);
    say(facts, "Asking the device…");
    try {
      const f = await stat(path);
      const mode = f.mode === undefined ? "" : `, mode ${f.mode.toString(8)}`;
      const when = f.modified_ms ? `, modified ${new Date(f.modified_ms).toISOString()}` : "";
      const text = {
        file: `A file of ${f.size} bytes${mode}${when}; SHA-256 ${f.sha256}`,
        directory: `A directory${mode}${when}: it downloads as a tar archive.`,
        missing: "Nothing is there yet: an upload creates it.",
      }[f.kind];
      say(facts, text || f.kind);
    } catch (e) {
      say(facts, e.message, true);
    }
  });

  const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
  const put = (url, body, total, offset) =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("x-csrf-token", csrf);
      xhr.setRequestHeader("content-type", "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        progress.value = (offset + e.loaded) / total;
      };
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(new Error("the connection to the server was cut; upload again to resume"));
      xhr.send(body);
    });

  document.getElementById("file-upload").addEventListener("click", async () => {
    const file = input.files?.[0];
    let path = pathInput.value.trim();
    if (!file || !path) return say(result, "Choose a file and type the path to write it to.", true);
    if (file.size > LIMIT) return say(result, "This file is over 1 GiB: use `baton cp` for it.", true);
    if (!window.crypto?.subtle) return say(result, "The browser computes SHA-256 only over HTTPS (or on localhost).", true);
    try {
      say(result, "Computing the SHA-256…");
      const sha256 = hex(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
      let there = await stat(path, sha256);
      if (there.kind === "directory") {
        path = `${path.replace(/\/+$/, "")}/${file.name}`;
        there = await stat(path, sha256);
      }
      const offset = Math.min(there.received || 0, file.size);
      say(result, offset ? `Resuming after ${offset} bytes…` : "Uploading…");
      progress.hidden = false;
      progress.value = offset / Math.max(file.size, 1);
      const params = { path, size: file.size, sha256, offset };
      const xhr = await put(api("", params), file.slice(offset), Math.max(file.size, 1), offset);
      if (xhr.status === 201) {
        progress.value = 1;
        say(result, `Written: ${path} (${file.size} bytes, SHA-256 ${sha256}).`);
      } else {
        let detail = `HTTP ${xhr.status}`;
        try {
          detail = JSON.parse(xhr.responseText).detail || detail;
        } catch {}
        say(result, detail, true);
      }
    } catch (e) {
      say(result, e.message, true);
    }
  });
})();
