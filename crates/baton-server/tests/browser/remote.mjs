// Remote-support scenarios for run.mjs: a device's terminal and the replay of its recording.
// Each takes the Trial of run.mjs (`t`) like the scenarios there.

import { readFile } from 'node:fs/promises';

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
};
