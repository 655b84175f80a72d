// Remote-support scenarios for run.mjs: a device's terminal, the replay of its recording, and
// its live logs.
// Each takes the Trial of run.mjs (`t`) like the scenarios there.

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
};
