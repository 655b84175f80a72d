// Remote-support scenarios for run.mjs: a device's terminal, the replay of its recording, its
// live logs, its files, and support bundles.
// Each takes the Trial of run.mjs (`t`) like the scenarios there.

import { createHash } from 'node:crypto';
import { appendFile, readFile } from 'node:fs/promises';

/** The text of the terminal in `selector` (xterm.js's rows), one string per row, trimmed. */
async function screenRows(t, selector) {
  return t.page.locator(`${selector} .xterm-rows > div`).allInnerTexts().then((rows) => rows.map((r) => r.trim()));
}

/** Waits until a row of the terminal in `selector` reads exactly `want`. */
async function untilRow(t, selector, want) {
  try {
    await t.page.waitForFunction(
      ([sel, text]) => [...document.querySelectorAll(`${sel} .xterm-rows > div`)].some((r) => r.textContent.trim() === text),
      [selector, want],
      { timeout: t.timeout },
    );
  } catch (err) {
    const rows = (await screenRows(t, selector)).filter(Boolean);
    throw new Error(`no row of ${selector} reads ${JSON.stringify(want)}; it shows ${JSON.stringify(rows)}: ${err.message}`);
  }
}

/**
 * Waits until `selector`'s text matches `done` or the page marks it an error (`.error`), and
 * returns {text, error}: a page that refuses says so at once, not after the timeout.
 */
async function untilSaid(t, selector, done) {
  try {
    await t.page.waitForFunction(
      ([sel, source]) => {
        const el = document.querySelector(sel);
        return el && (el.classList.contains('error') || new RegExp(source).test(el.textContent));
      },
      [selector, done.source],
      { timeout: t.timeout },
    );
  } catch (err) {
    const now = await t.page.locator(selector).textContent().catch(() => '?');
    throw new Error(`${selector} never matched ${done}; it says ${JSON.stringify(now)}: ${err.message}`);
  }
  const el = t.page.locator(selector);
  return { text: (await el.innerText()).trim(), error: await el.evaluate((e) => e.classList.contains('error')) };
}

/**
 * Clicks `link` and keeps what the browser downloads: {name, bytes, sha256, first_bytes}, and
 * with `whole` its bytes in base64 too.
 */
async function downloadVia(t, link, whole = false) {
  const [download] = await Promise.all([t.page.waitForEvent('download'), link.click()]);
  const failed = await download.failure();
  if (failed) throw new Error(`the download of ${download.url()} failed: ${failed}`);
  const bytes = await readFile(await download.path());
  return {
    name: download.suggestedFilename(),
    bytes: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    first_bytes: [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' '),
    base64: whole ? bytes.toString('base64') : undefined,
  };
}

/** Marks the page so that a reload or a navigation can be told from an in-place update. */
async function mark(t) {
  return t.page.evaluate(() => (window.__batonMarker = `${Date.now()}-${Math.random()}`));
}

async function expectMarked(t, marker, what) {
  if ((await t.page.evaluate(() => window.__batonMarker)) !== marker) throw new Error(`the page reloaded or navigated ${what}`);
}

export default {
  /**
   * A device's page: Terminal opens its terminal page, which connects; `command` typed into the
   * terminal (then Enter) prints a row reading `expect`, kept in the screenshot
   * `terminal-running.png`. Then `ready_file` is written and the test stops the device's agent:
   * the page must say why the session ended (`ended`) and stop taking input.
   */
  async terminal(t) {
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    await t.page.getByRole('link', { name: 'Terminal', exact: true }).click();
    await t.page.waitForURL((u) => u.pathname === `/devices/${t.config.device_id}/terminal`);
    await t.page.locator('#terminal-session[data-state=open]').waitFor({ state: 'attached' });
    t.findings.status = (await t.page.locator('[data-testid=terminal-status]').innerText()).trim();
    await t.page.locator('#terminal').click();
    // At a person's pace, so the recording's times matter when it is replayed.
    await t.page.keyboard.type(t.config.command, { delay: 50 });
    await t.page.keyboard.press('Enter');
    await untilRow(t, '#terminal', t.config.expect);
    t.findings.rows = (await screenRows(t, '#terminal')).filter(Boolean);
    t.findings.disconnect_enabled = await t.page.locator('#term-disconnect').isEnabled();
    t.findings.running_screenshot = await t.snapshot('terminal-running');
    t.signalReady('running');
    const ended = t.page.locator('[data-testid=session-ended]');
    await ended.waitFor({ state: 'visible' });
    t.findings.ended = (await ended.innerText()).trim();
    t.findings.state_after = await t.page.locator('#terminal-session').getAttribute('data-state');
    t.findings.disconnect_enabled_after = await t.page.locator('#term-disconnect').isEnabled();
  },

  /**
   * Someone's open session `session_id` on device `device_id`, watched: the device page lists it
   * with a Watch link, the watch page joins read-only (`ready_file` is written once it has), the
   * output the owner makes next shows a row reading `expect`, and what the watcher types
   * (`typed`, then Enter) goes nowhere; kept in the screenshot `terminal-watching.png`.
   */
  async watch(t) {
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    const row = t.page.locator(`#open-sessions tr[data-session="${t.config.session_id}"]`);
    await row.getByRole('link', { name: 'Watch', exact: true }).click();
    await t.page.waitForURL((u) => u.pathname === `/devices/${t.config.device_id}/sessions/${t.config.session_id}/watch`);
    await t.page.locator('#terminal-session[data-state=open]').waitFor({ state: 'attached' });
    t.findings.status = (await t.page.locator('[data-testid=terminal-status]').innerText()).trim();
    t.findings.paste_offered = await t.page.locator('#term-paste').count();
    t.signalReady('watching');
    await untilRow(t, '#terminal', t.config.expect);
    await t.page.locator('#terminal').click();
    await t.page.keyboard.type(t.config.typed);
    await t.page.keyboard.press('Enter');
    t.findings.rows = (await screenRows(t, '#terminal')).filter(Boolean);
    t.findings.screenshot = await t.snapshot('terminal-watching');
  },

  /**
   * The recording of session `session_id` of device `device_id`: listed on the tenant's
   * recordings page (reached from the menu) and on the device's page, whose Replay link opens
   * the player; Play replays it at its recorded pace (`ms_to_expect`: from Play until a row
   * reads `expect`) to its end; Download saves the asciicast (`download_name`, `download_bytes`).
   */
  async replay(t) {
    await t.signIn();
    await t.page.locator('nav a[href="/recordings"]').click();
    await t.page.waitForURL((u) => u.pathname === '/recordings');
    await t.expectHeading('Recordings');
    t.findings.listed = await t.page.locator(`#recordings tr[data-session="${t.config.session_id}"]`).count();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    const row = t.page.locator(`#device-recordings tr[data-session="${t.config.session_id}"]`);
    await row.waitFor({ state: 'visible' });
    await t.snapshot('device-recordings');
    await row.getByRole('link', { name: /^Replay/ }).click();
    await t.page.waitForURL((u) => u.pathname === `/devices/${t.config.device_id}/recordings/${t.config.session_id}`);
    const player = t.page.locator('#player');
    await t.page.locator('#player[data-state=ready]').waitFor({ state: 'attached' });
    const play = t.page.getByRole('button', { name: 'Play', exact: true });
    const started = Date.now();
    await play.click();
    await untilRow(t, '#player-screen', t.config.expect);
    t.findings.ms_to_expect = Date.now() - started;
    await t.page.locator('#player[data-state=ended]').waitFor({ state: 'attached' });
    t.findings.state = await player.getAttribute('data-state');
    t.findings.time = (await t.page.locator('[data-testid=player-time]').innerText()).trim();
    t.findings.button_after = (await t.page.locator('#player-play').innerText()).trim();
    const [download] = await Promise.all([
      t.page.waitForEvent('download'),
      t.page.locator('[data-testid=download]').click(),
    ]);
    t.findings.download_name = download.suggestedFilename();
    t.findings.download_bytes = (await readFile(await download.path())).length;
  },

  /**
   * A device's live logs: the device page's Logs link opens the log page; the file `log_path`
   * (which ends with a line reading `expect`) is shown live. A line this scenario appends shows
   * (`ms_to_live`); paused, the next one waits (`paused_shown`: whether it showed anyway,
   * `pause_label`) until Resume; the filter `filter` leaves `filtered` visible; Download saves
   * the lines shown (`download_name`, `download_text`).
   */
  async logs(t) {
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    await t.page.getByRole('link', { name: 'Logs', exact: true }).click();
    await t.page.waitForURL((u) => u.pathname === `/devices/${t.config.device_id}/logs`);
    await t.page.locator('[data-testid=logs-source]').selectOption('file');
    await t.page.locator('[data-testid=logs-path]').fill(t.config.log_path);
    await t.page.locator('[data-testid=logs-start]').click();
    const lines = t.page.locator('#logs-lines .log-line');
    const shows = (text) => lines.filter({ hasText: text }).first().waitFor({ state: 'visible', timeout: t.timeout });
    await shows(t.config.expect);
    t.findings.status = (await t.page.locator('[data-testid=logs-status]').innerText()).trim();
    const started = Date.now();
    await appendFile(t.config.log_path, 'live line from the browser test\n');
    await shows('live line from the browser test');
    t.findings.ms_to_live = Date.now() - started;

    const pause = t.page.locator('[data-testid=logs-pause]');
    await pause.click();
    await appendFile(t.config.log_path, 'written while paused\n');
    await t.page.waitForFunction(() => document.getElementById('logs-pause').textContent.includes('(1 new)'), null, { timeout: t.timeout });
    t.findings.pause_label = (await pause.innerText()).trim();
    t.findings.paused_shown = await lines.filter({ hasText: 'written while paused' }).count();
    t.findings.paused_screenshot = await t.snapshot('logs-paused');
    await pause.click();
    await shows('written while paused');

    await t.page.locator('[data-testid=logs-filter]').fill(t.config.filter);
    t.findings.filtered = await t.page.locator('#logs-lines .log-line:not([hidden])').allInnerTexts();
    const [download] = await Promise.all([
      t.page.waitForEvent('download'),
      t.page.locator('[data-testid=logs-download]').click(),
    ]);
    t.findings.download_name = download.suggestedFilename();
    t.findings.download_text = await readFile(await download.path(), 'utf8');
    await t.page.locator('[data-testid=logs-stop]').click();
    await t.page.locator('#logs-view[data-state=ended]').waitFor({ state: 'attached', timeout: t.timeout });
    t.findings.status_after = (await t.page.locator('[data-testid=logs-status]').innerText()).trim();
  },

  /**
   * A device's files: the device page's Files link opens its files page. `outside_path` (not in
   * the agent's `file_paths`) is refused in the device's words, described (`outside_facts`) and
   * as an upload's target (`outside_upload`); its download link fails as a download, leaving the
   * page where it is (`outside_download`). The bytes of `upload_source` (given to the file
   * input as a buffer named `upload_name`) go up to the directory `upload_dir`, the progress
   * bar's values kept (`progress`); `download_path` is described (`download_facts`) and
   * downloaded through the page's link (`download`), and so is the uploaded file, its path put
   * in the field without an input event (`restored_download`). No step reloads the page.
   */
  async files(t) {
    const device = t.config.device_id;
    const stat = `/api/v1/devices/${device}/files/stat`;
    await t.signIn();
    await t.goto(`/devices/${device}`);
    await t.settled();
    await t.page.getByRole('link', { name: 'Files', exact: true }).click();
    await t.page.waitForURL((u) => u.pathname === `/devices/${device}/files`);
    await t.expectHeading('Files on');
    const marker = await mark(t);
    const path = t.page.locator('[data-testid=file-path]');
    const download = t.page.locator('[data-testid=file-download]');
    t.findings.download_disabled = await download.getAttribute('aria-disabled');
    await t.page.locator('[data-testid=file-input]').setInputFiles({
      name: t.config.upload_name,
      mimeType: 'application/octet-stream',
      buffer: await readFile(t.config.upload_source),
    });

    await t.allowing({ method: 'GET', path: stat, statuses: [403] }, async () => {
      await path.fill(t.config.outside_path);
      await t.page.locator('[data-testid=file-stat]').click();
      t.findings.outside_facts = await untilSaid(t, '#file-facts', /^(?!Asking)\S/);
      t.findings.outside_facts_role = await t.page.locator('#file-facts').getAttribute('role');
      await t.page.locator('[data-testid=file-upload]').click();
      t.findings.outside_upload = await untilSaid(t, '#file-result', /^Written/);
    });
    await t.allowing({ method: 'GET', path: `/api/v1/devices/${device}/files`, statuses: [403] }, async () => {
      const [d] = await Promise.all([t.page.waitForEvent('download'), download.click()]);
      t.findings.outside_download = { failure: await d.failure(), url: t.page.url() };
    });

    await path.fill(t.config.upload_dir);
    await t.page.locator('#file-progress').evaluate((bar) => {
      window.__progress = [];
      new MutationObserver(() => window.__progress.push(bar.value)).observe(bar, { attributeFilter: ['value'] });
    });
    await t.page.locator('[data-testid=file-upload]').click();
    t.findings.upload = await untilSaid(t, '#file-result', /^Written/);
    t.findings.progress = await t.page.evaluate(() => window.__progress);
    t.findings.progress_value = await t.page.locator('#file-progress').evaluate((bar) => bar.value);
    t.findings.progress_shown = await t.page.locator('#file-progress').isVisible();
    t.findings.upload_screenshot = await t.snapshot('files-uploaded');

    await path.fill(t.config.download_path);
    await t.page.locator('[data-testid=file-stat]').click();
    t.findings.download_facts = await untilSaid(t, '#file-facts', /^A file/);
    t.findings.download_disabled_after = await download.getAttribute('aria-disabled');
    t.findings.download = await downloadVia(t, download, true);
    // A path the field got without an input event (as a browser restores a form going back):
    // the link still downloads what the field says, here the file just uploaded.
    await path.evaluate((field, p) => {
      field.value = p;
    }, `${t.config.upload_dir}/${t.config.upload_name}`);
    t.findings.restored_download = await downloadVia(t, download);
    await expectMarked(t, marker, 'while transferring files');
  },

  /**
   * A device's support bundles: on the device page, "Collect support bundle" (logs of the last
   * `since`) goes to the request's page, which follows the device (`states_seen`: each state its
   * row showed) until the bundle is stored, stops following and offers the download
   * (`download`). The device page (reached from the request's) then lists the bundle as stored
   * with its own download link (`device_download`).
   */
  async bundle(t) {
    const device = t.config.device_id;
    await t.signIn();
    await t.goto(`/devices/${device}`);
    await t.settled();
    t.findings.listed_before = await t.page.locator('#support-bundles tr[data-bundle]').count();
    await t.page.locator('#bundle-since').selectOption(t.config.since);
    // What the request's page shows of the device's bundle, as htmx swaps it in and updates it.
    await t.page.evaluate(() => {
      window.__states = [];
      const look = () => {
        const state = document.querySelector('#bundle-devices tr[data-bundle] td.state')?.textContent.trim();
        if (state && window.__states.at(-1) !== state) window.__states.push(state);
      };
      new MutationObserver(look).observe(document.body, { childList: true, subtree: true, characterData: true });
    });
    const marker = await mark(t);
    await t.page.locator('[data-testid=collect-bundle]').click();
    await t.page.waitForURL((u) => u.pathname.startsWith('/bundles/'));
    t.findings.request_id = t.path().split('/').pop();
    await t.expectHeading('Support bundles');
    const row = t.page.locator('#bundle-devices tr[data-bundle]');
    await row.first().waitFor({ state: 'visible' });
    t.findings.rows = await row.count();
    t.findings.bundle_id = await row.first().getAttribute('data-bundle');
    await row.locator('td.state.stored').waitFor({ state: 'visible' });
    await t.settled();
    t.findings.states_seen = await t.page.evaluate(() => window.__states);
    t.findings.states = (await t.page.locator('[data-testid=bundle-states]').innerText()).trim();
    t.findings.following_after = await t.page.locator('#bundle-request[hx-get]').count();
    t.findings.request_screenshot = await t.snapshot('bundle-stored');
    t.findings.download = await downloadVia(t, row.getByRole('link', { name: /^Download/ }));
    await expectMarked(t, marker, 'between asking for the bundle and its download');

    await row.locator('td a').first().click();
    await t.page.waitForURL((u) => u.pathname === `/devices/${device}`);
    await t.settled();
    const listed = t.page.locator(`#support-bundles tr[data-bundle="${t.findings.bundle_id}"]`);
    await listed.waitFor({ state: 'visible' });
    t.findings.device_state = (await listed.locator('td.state').innerText()).trim();
    t.findings.device_download = await downloadVia(t, listed.getByRole('link', { name: /^Download/ }));
  },

  /**
   * The page of bulk request `request_id`: each of its devices has a row; once the device
   * `stored_device` (a real agent) shows its bundle stored, `ready_file` is written (`before`:
   * the states line then) and the test makes the others' bundles arrive, which the page must
   * show live and then stop following (`after`). Each row's Download is kept (`downloads`).
   */
  async bundle_request(t) {
    await t.signIn();
    await t.goto(`/bundles/${t.config.request_id}`);
    await t.settled();
    await t.expectHeading('Support bundles');
    const marker = await mark(t);
    const rows = t.page.locator('#bundle-devices tr[data-bundle]');
    t.findings.rows = await rows.count();
    const stored = rows.filter({ has: t.page.locator(`a[href="/devices/${t.config.stored_device}"]`) });
    await stored.locator('td.state.stored').waitFor({ state: 'visible' });
    t.findings.before = (await t.page.locator('[data-testid=bundle-states]').innerText()).trim();
    t.findings.details_before = await rows.locator('td.detail').allInnerTexts();
    t.findings.following_before = await t.page.locator('#bundle-request[hx-get]').count();
    t.signalReady('stored');
    await t.page.locator('#bundle-request:not([hx-get])').waitFor({ state: 'attached' });
    await t.settled();
    t.findings.after = (await t.page.locator('[data-testid=bundle-states]').innerText()).trim();
    t.findings.request_screenshot = await t.snapshot('bundle-request-finished');
    const downloads = {};
    for (const tr of await rows.all()) {
      const id = await tr.getAttribute('data-bundle');
      downloads[id] = await downloadVia(t, tr.getByRole('link', { name: /^Download/ }));
    }
    t.findings.downloads = downloads;
    await expectMarked(t, marker, 'while following the request');
  },
};
