// Runs one web-console scenario in headless Chromium and reports it as one JSON line.
//
//   BATON_BROWSER_CONFIG='{"url": "http://127.0.0.1:PORT", "username": "...", "password": "...",
//                          "screenshot_dir": "...", ...}' node run.mjs <scenario>
//
// Drives Debian's /usr/bin/chromium through playwright-core, which comes from console/node_modules
// (`npm ci --prefix console`): it is the browser test harness, not part of what Baton ships. The
// Rust tests in tests/api/console_browser.rs (and console_remote.rs, console_files.rs and
// console_bundles.rs) start the server and run this once per scenario. The remote-support
// scenarios (terminal, recordings, logs, files, support bundles) live in remote.mjs, a device's
// web page in web.mjs, the screen's in screen.mjs (driven by crates/baton/tests/remote_screen.rs,
// which needs the real agent).
//
// Every scenario fails on any console error, uncaught page error, failed request or response with
// status >= 400 that the scenario did not expect, and saves a full-page screenshot
// `<screenshot_dir>/<scenario>.png` whether it passed or not. The last line on stdout is
// `{"ok": true, ...findings}` (exit 0) or `{"ok": false, "error": "..."}` (exit 1); anything else
// goes to stderr.
//
// Config fields: `url`, `username`, `password`, `screenshot_dir`; optional `tenant` (typed into
// `input[name=tenant]` when the form has one), `chromium` (the browser's path), `timeout_ms`
// (each wait; 15000), `viewport` ({width, height}), `timezone`; and each scenario's own, below.

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import remote from './remote.mjs';
import web from './web.mjs';
import screen from './screen.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const { chromium } = createRequire(path.join(root, 'console', 'package.json'))('playwright-core');

const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--no-first-run',
  // Chromium's own connections (updates, sync, QUIC probes) go nowhere on a closed network.
  '--disable-quic',
  '--disable-component-update',
  '--disable-sync',
];

/** The console contract each scenario checks, by name. */
const scenarios = {
  /** `/` without a session redirects to /login; a wrong password is refused in place; the right one lands on the overview. */
  async login(t) {
    await t.goto('/');
    t.expectPath('/login', 'opening / without a session');
    const wrong = t.config.wrong_password ?? `${t.config.password}-wrong`;
    await t.allowing({ method: 'POST', path: '/login', statuses: [400, 401, 403, 422] }, async () => {
      await t.submitLogin(t.config.username, wrong);
      const alert = t.page.locator('[role=alert]').filter({ hasText: /\S/ }).first();
      await alert.waitFor({ state: 'visible' });
      t.findings.wrong_password_alert = (await alert.innerText()).trim();
    });
    t.expectPath('/login', 'after a wrong password');
    await t.submitLogin(t.config.username, t.config.password);
    await t.page.waitForURL((u) => u.pathname === '/');
    await t.expectHeading('Overview');
  },

  /**
   * Reads the four counts; then, with `expect_total_after`, writes `ready_file` and waits until
   * the total shows that number without the page reloading.
   */
  async overview(t) {
    await t.signIn();
    const counts = {};
    for (const name of ['total', 'online', 'offline', 'pending']) {
      counts[name] = await t.readCount(name);
    }
    Object.assign(t.findings, counts);
    const want = t.config.expect_total_after;
    if (want === undefined || want === null) return;
    // Survives any htmx swap, not a reload or a navigation.
    const marker = await t.page.evaluate(() => (window.__batonMarker = `${Date.now()}-${Math.random()}`));
    if (t.config.ready_file) writeAtomically(t.config.ready_file, JSON.stringify(counts));
    await t.waitForCount('total', want);
    t.findings.total_after = want;
    const still = await t.page.evaluate(() => window.__batonMarker);
    if (still !== marker) throw new Error('the page reloaded or navigated while waiting for the live update');
  },

  /** The logout button ends the session: /login, and / redirects there again. */
  async logout(t) {
    await t.signIn();
    await t.page.locator('button[data-testid=logout]').click();
    await t.page.waitForURL((u) => u.pathname === '/login');
    await t.goto('/');
    t.expectPath('/login', 'opening / after logging out');
  },

  /**
   * The devices page: all `expect_rows_before` rows, then typing `q` into the search narrows the
   * list on the server to `expect_rows_after` rows without a reload, and the URL keeps the filter.
   */
  async devices_filter(t) {
    await t.signIn();
    await t.page.locator('nav a[href="/devices"]').click();
    await t.page.waitForURL((u) => u.pathname === '/devices');
    await t.expectHeading('Devices');
    const rows = t.page.locator('#devices tbody tr');
    await t.page.waitForFunction((n) => document.querySelectorAll('#devices tbody tr').length === n, t.config.expect_rows_before, { timeout: t.timeout });
    const marker = await t.page.evaluate(() => (window.__batonMarker = `${Date.now()}-${Math.random()}`));
    await t.page.locator('#filters input[name=q]').fill(t.config.q);
    await t.page.waitForFunction((n) => document.querySelectorAll('#devices tbody tr').length === n, t.config.expect_rows_after, { timeout: t.timeout });
    await t.settled();
    t.findings.serials = await rows.evaluateAll((trs) => trs.map((tr) => tr.children[1].textContent.trim()));
    t.findings.url = t.page.url();
    if ((await t.page.evaluate(() => window.__batonMarker)) !== marker) throw new Error('the page reloaded instead of updating the list');
  },

  /**
   * A device's page: send `exec` with the shell line `shell` from the form, and see the command's
   * output (`expect_output`) appear without reloading the page.
   */
  async send_exec(t) {
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    const marker = await t.page.evaluate(() => (window.__batonMarker = `${Date.now()}-${Math.random()}`));
    await t.page.locator('#send-command select[name=kind]').selectOption('exec');
    await t.page.locator('#send-command input[name=shell]').fill(t.config.shell);
    await t.page.locator('#send-command button[type=submit]').click();
    const output = t.page.locator('[data-testid=command-output]').filter({ hasText: t.config.expect_output }).first();
    await output.waitFor({ state: 'visible', timeout: t.timeout });
    t.findings.output = (await output.innerText()).trim();
    if ((await t.page.evaluate(() => window.__batonMarker)) !== marker) throw new Error('the page reloaded instead of updating');
  },

  /**
   * The enrollment page: create a token named `token_name` (its install line is shown once), then
   * approve the pending device `approve_device_id` (its row leaves the list).
   */
  async enrollment(t) {
    await t.signIn();
    await t.page.locator('nav a[href="/enrollment"]').click();
    await t.page.waitForURL((u) => u.pathname === '/enrollment');
    await t.expectHeading('Enrollment');
    await t.page.locator('#create-token input[name=name]').fill(t.config.token_name);
    await t.page.locator('#create-token button[type=submit]').click();
    const line = t.page.locator('[data-testid=install-line]');
    await line.waitFor({ state: 'visible', timeout: t.timeout });
    t.findings.install_line = (await line.innerText()).trim();
    const row = t.page.locator(`#pending tr[data-device="${t.config.approve_device_id}"]`);
    await row.locator('button', { hasText: 'Approve' }).click();
    await row.waitFor({ state: 'detached', timeout: t.timeout });
    await t.settled();
  },

  /**
   * A device's telemetry chart: the last hour shows `expect_hour_points` buckets drawn from the
   * samples in the database; "Last day" and "Last week" load wider ranges. Then `ready_file` is
   * written and the hour view must grow to `expect_points_after` as a new sample arrives, without
   * a reload.
   */
  async chart(t) {
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    const marker = await t.page.evaluate(() => (window.__batonMarker = `${Date.now()}-${Math.random()}`));
    const points = async (range, want) => {
      const check = ([r, n]) => {
        const box = document.getElementById('chart');
        return box?.dataset.range === String(r) && (n === null ? box.dataset.points !== undefined : box.dataset.points === String(n));
      };
      try {
        await t.page.waitForFunction(check, [range, want ?? null], { timeout: t.timeout });
      } catch (err) {
        const now = await t.page.evaluate(() => JSON.stringify(document.getElementById('chart')?.dataset ?? {}));
        throw new Error(`the chart (range ${range}) did not show ${want ?? 'its'} points; it has ${now}: ${err.message}`);
      }
      return Number(await t.page.locator('#chart').getAttribute('data-points'));
    };
    t.findings.metric = await t.page.locator('#chart-metric').inputValue();
    t.findings.hour_points = await points(3600, t.config.expect_hour_points);
    const canvas = t.page.locator('#chart canvas');
    await canvas.first().waitFor({ state: 'visible' });
    t.findings.canvas_width = await canvas.first().evaluate((c) => c.width);
    for (const [label, range, key] of [['Last day', 86400, 'day_points'], ['Last week', 604800, 'week_points']]) {
      await t.page.getByRole('button', { name: label }).click();
      t.findings[key] = await points(range, null);
      const pressed = await t.page.getByRole('button', { name: label }).getAttribute('aria-pressed');
      if (pressed !== 'true') throw new Error(`${label} is not shown as the chosen range`);
    }
    await t.page.getByRole('button', { name: 'Last hour' }).click();
    await points(3600, t.config.expect_hour_points);
    if (t.config.ready_file) writeAtomically(t.config.ready_file, JSON.stringify(t.findings));
    if (t.config.expect_points_after !== undefined) {
      t.findings.points_after = await points(3600, t.config.expect_points_after);
    }
    if ((await t.page.evaluate(() => window.__batonMarker)) !== marker) throw new Error('the page reloaded instead of updating');
  },

  /**
   * A device's page: set the label `label` (k=v) and add the device to group `group_name`, each
   * shown in place; then remove the label with its × button.
   */
  async edit_device(t) {
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    const marker = await t.page.evaluate(() => (window.__batonMarker = `${Date.now()}-${Math.random()}`));
    const labels = t.page.locator('[data-testid=labels]');
    await t.page.locator('#label-set').fill(t.config.label);
    await t.page.getByRole('button', { name: 'Set label' }).click();
    await labels.filter({ hasText: t.config.label }).waitFor({ state: 'visible' });
    t.findings.input_after = await t.page.locator('#label-set').inputValue();
    await t.page.locator('#group-add').selectOption({ label: t.config.group_name });
    await t.page.getByRole('button', { name: 'Add to group' }).click();
    await t.page.locator('[data-testid=groups]').filter({ hasText: t.config.group_name }).waitFor({ state: 'visible' });
    await t.settled();
    t.findings.labels_set = (await labels.innerText()).replace(/×/g, '').trim();
    const key = t.config.label.split('=')[0];
    await t.page.getByRole('button', { name: `Remove label ${key}` }).click();
    await labels.filter({ hasText: 'none' }).waitFor({ state: 'visible' });
    await t.settled();
    t.findings.groups = (await t.page.locator('[data-testid=groups]').innerText()).replace(/×/g, '').trim();
    if ((await t.page.evaluate(() => window.__batonMarker)) !== marker) throw new Error('the page reloaded instead of updating');
  },

  /** A device's page: Decommission (confirmed in the dialog) leaves it decommissioned, without the button. */
  async decommission(t) {
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    t.page.once('dialog', (d) => {
      t.findings.confirm = d.message();
      d.accept();
    });
    await t.page.locator('button[data-testid=decommission]').click();
    await t.page.locator('[data-testid=status]').filter({ hasText: 'decommissioned' }).waitFor({ state: 'visible' });
    await t.settled();
    t.findings.button_left = await t.page.locator('button[data-testid=decommission]').count();
    t.findings.send_form_left = await t.page.locator('#send-command').count();
  },

  /**
   * The devices page: tick the rows of `pick_serials`, choose group `group_name` and add them to
   * it; the page says what it did, and the selection is cleared.
   */
  async bulk_group(t) {
    await t.signIn();
    await t.goto('/devices');
    await t.settled();
    for (const serial of t.config.pick_serials) {
      const row = t.page.locator('#devices tbody tr').filter({ has: t.page.locator('td', { hasText: new RegExp(`^${serial}$`) }) });
      await row.locator('input[type=checkbox]').check();
    }
    const count = await t.page.locator('[data-testid=selected-count]').innerText();
    t.findings.selected = Number(count);
    await t.page.locator('#bulk-group').selectOption({ label: t.config.group_name });
    await t.page.getByRole('button', { name: 'Add to group' }).click();
    const notice = t.page.locator('#bulk-status').filter({ hasText: /\S/ });
    await notice.waitFor({ state: 'visible' });
    t.findings.notice = (await notice.innerText()).trim();
    await t.settled();
    t.findings.selected_after = Number(await t.page.locator('[data-testid=selected-count]').innerText());
  },

  /**
   * The groups page: create `group_name` inside `parent_name`, land on its page, add the device
   * with serial `add_serial`, and see it among the members; the tree shows the new group nested.
   */
  async groups(t) {
    await t.signIn();
    await t.page.locator('nav a[href="/groups"]').click();
    await t.page.waitForURL((u) => u.pathname === '/groups');
    await t.expectHeading('Groups');
    await t.page.locator('#group-name').fill(t.config.group_name);
    await t.page.locator('#group-parent').selectOption({ label: t.config.parent_name });
    await t.page.getByRole('button', { name: 'Create group' }).click();
    await t.page.waitForURL((u) => u.pathname.startsWith('/groups/'));
    await t.expectHeading(t.config.group_name);
    t.findings.group_id = t.path().split('/').pop();
    t.findings.crumbs = (await t.page.locator('.crumbs').innerText()).trim();
    await t.page.locator('#add').fill(t.config.add_serial);
    await t.page.getByRole('button', { name: 'Add', exact: true }).click();
    await t.page.locator('#members tbody tr').first().waitFor({ state: 'visible' });
    t.findings.members = await t.page.locator('#members tbody tr td:nth-child(2)').allInnerTexts();
    await t.goto('/groups');
    await t.settled();
    t.findings.tree = await t.page.locator('#group-tree li').evaluateAll((lis) =>
      lis.map((li) => [li.querySelector('a').textContent.trim(), Number(li.style.getPropertyValue('--depth'))]));
  },

  /**
   * The commands page: the batch `batch_id` shows its queued commands; Cancel (confirmed) turns
   * them CANCELED on the page without a reload.
   */
  async commands(t) {
    await t.signIn();
    await t.page.locator('nav a[href="/commands"]').click();
    await t.page.waitForURL((u) => u.pathname === '/commands');
    await t.expectHeading('Commands');
    const row = t.page.locator(`tr[data-batch="${t.config.batch_id}"]`);
    await row.waitFor({ state: 'visible' });
    t.findings.before = (await row.locator('.states').innerText()).trim();
    const marker = await t.page.evaluate(() => (window.__batonMarker = `${Date.now()}-${Math.random()}`));
    t.page.once('dialog', (d) => d.accept());
    await row.getByRole('button', { name: /^Cancel/ }).click();
    await row.locator('[data-state=CANCELED]').waitFor({ state: 'visible' });
    t.findings.after = (await row.locator('.states').innerText()).trim();
    t.findings.cancel_left = await row.getByRole('button', { name: /^Cancel/ }).count();
    if ((await t.page.evaluate(() => window.__batonMarker)) !== marker) throw new Error('the page reloaded instead of updating');
  },

  /**
   * The new-rollout form, reached from the rollouts page: name `name`, artifact `artifact_id`,
   * group `group_name`, path `path`. Waves `bad_waves` are refused next to their field (kept as
   * `wave_error`); with `waves` it is made as a draft and lands on the rollout's page, whose
   * wave bar shows its devices QUEUED (`queued`). Start makes it RUNNING; then `ready_file`
   * (the rollout's id) is written and the test pauses it through the API, which the page must
   * show live; and Cancel (confirmed) makes it CANCELED — all without a reload (`states`).
   */
  async rollout(t) {
    await t.signIn();
    await t.page.locator('nav a[href="/rollouts"]').click();
    await t.page.waitForURL((u) => u.pathname === '/rollouts');
    await t.expectHeading('Rollouts');
    await t.page.getByRole('link', { name: 'New rollout', exact: true }).click();
    await t.page.waitForURL((u) => u.pathname === '/rollouts/new');
    await t.expectHeading('New rollout');
    await t.page.getByLabel('Name', { exact: true }).fill(t.config.name);
    await t.page.locator('#r-artifact').selectOption(t.config.artifact_id);
    await t.page.locator('#r-groups').selectOption({ label: t.config.group_name });
    await t.page.locator('#r-path').fill(t.config.path);
    const draft = t.page.getByRole('button', { name: 'Create draft' });
    await t.allowing({ method: 'POST', path: '/rollouts', statuses: [422] }, async () => {
      await t.page.locator('#r-waves').fill(t.config.bad_waves);
      await draft.click();
      const error = t.page.locator('#err-waves').filter({ hasText: /\S/ });
      await error.waitFor({ state: 'visible' });
      t.findings.wave_error = (await error.innerText()).trim();
      t.findings.wave_invalid = await t.page.locator('#r-waves').getAttribute('aria-invalid');
    });
    await t.page.locator('#r-waves').fill(t.config.waves);
    await draft.click();
    await t.page.waitForURL((u) => /^\/rollouts\/[^/]+$/.test(u.pathname) && u.pathname !== '/rollouts/new');
    t.findings.rollout_id = t.path().split('/').pop();
    await t.expectHeading(t.config.name);
    await t.settled();
    const marker = await t.page.evaluate(() => (window.__batonMarker = `${Date.now()}-${Math.random()}`));
    const state = t.page.locator('#rollout [data-testid=rollout-state]');
    const wave = t.page.locator('#waves tr[data-wave="1"] .states');
    t.findings.queued = (await wave.locator('[data-state=QUEUED]').innerText()).trim();
    const states = [(await state.innerText()).trim()];
    await t.page.locator('button[data-action=start]').click();
    await state.filter({ hasText: 'RUNNING' }).waitFor({ state: 'visible' });
    states.push((await state.innerText()).trim());
    if (t.config.ready_file) {
      writeAtomically(t.config.ready_file, t.findings.rollout_id);
      await state.filter({ hasText: 'PAUSED' }).waitFor({ state: 'visible' });
      states.push((await state.innerText()).trim());
    }
    t.page.once('dialog', (d) => d.accept());
    await t.page.locator('button[data-action=cancel]').click();
    await state.filter({ hasText: 'CANCELED' }).waitFor({ state: 'visible' });
    states.push((await state.innerText()).trim());
    await t.page.locator('#waves tr[data-wave="1"] [data-state=CANCELED]').waitFor({ state: 'visible' });
    await t.settled();
    t.findings.states = states;
    t.findings.wave_after = (await wave.innerText()).trim();
    t.findings.buttons_left = await t.page.locator('#rollout button[data-action]').count();
    if ((await t.page.evaluate(() => window.__batonMarker)) !== marker) throw new Error('the page reloaded instead of updating');
  },

  /**
   * The basics on each of `paths`, at the configured viewport (a tablet's, say): nothing makes
   * the page scroll sideways, every visible control has an accessible name, and the Tab key walks
   * through the controls (each focused one visible, with a focus outline), starting with the menu.
   */
  async basics(t) {
    await t.signIn();
    const report = {};
    for (const p of t.config.paths) {
      if (t.path() !== p) await t.goto(p);
      await t.settled();
      const found = await t.page.evaluate(() => {
        const visible = (el) => {
          const r = el.getBoundingClientRect();
          return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden';
        };
        const named = (el) =>
          (el.labels && el.labels.length > 0) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.title;
        const unnamed = [];
        for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
          if (visible(el) && !named(el)) unnamed.push(el.outerHTML.slice(0, 100));
        }
        for (const el of document.querySelectorAll('button, a[href]')) {
          if (visible(el) && !(el.textContent.trim() || el.getAttribute('aria-label'))) unnamed.push(el.outerHTML.slice(0, 100));
        }
        return { overflow: document.documentElement.scrollWidth - window.innerWidth, unnamed };
      });
      if (found.overflow > 1) throw new Error(`${p} scrolls sideways by ${found.overflow}px at ${t.page.viewportSize().width}px wide`);
      if (found.unnamed.length > 0) throw new Error(`${p} has controls without a name: ${found.unnamed.join(' | ')}`);
      // Keyboard: from the top of the page, Tab reaches the menu, then the page's controls.
      await t.page.evaluate(() => document.activeElement?.blur());
      const walked = [];
      for (let i = 0; i < 12; i += 1) {
        await t.page.keyboard.press('Tab');
        const at = await t.page.evaluate(() => {
          const el = document.activeElement;
          if (!el || el === document.body) return null;
          const r = el.getBoundingClientRect();
          const style = getComputedStyle(el);
          return {
            what: `${el.tagName.toLowerCase()}:${(el.textContent || el.getAttribute('aria-label') || el.name || '').trim().slice(0, 30)}`,
            visible: r.width > 0 && r.height > 0,
            outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
          };
        });
        if (!at) continue;
        if (!at.visible) throw new Error(`${p}: Tab focused ${at.what}, which cannot be seen`);
        if (!at.outline) throw new Error(`${p}: ${at.what} shows no focus outline`);
        walked.push(at.what);
      }
      if (!walked.some((w) => w.startsWith('a:Devices'))) throw new Error(`${p}: Tab never reached the menu: ${walked.join(', ')}`);
      report[p] = walked.length;
    }
    t.findings.pages = report;
  },

  /** No `[data-mutating]` element on the overview (or on each of `paths`, when given). */
  async viewer(t) {
    await t.signIn();
    const paths = t.config.paths ?? ['/'];
    const mutating = {};
    for (const p of paths) {
      if (t.path() !== p) await t.goto(p);
      await t.settled();
      const found = await t.page.locator('[data-mutating]').evaluateAll((els) => els.map((e) => e.outerHTML.slice(0, 120)));
      if (found.length > 0) throw new Error(`${p} shows ${found.length} mutating control(s) to a viewer: ${found.join(' | ')}`);
      mutating[p] = 0;
    }
    t.findings.mutating = mutating;
  },

  ...remote,
  ...web,
  ...screen,
};

/** One scenario's browser page, what it observed, and the steps scenarios share. */
class Trial {
  constructor(config, page, timeout) {
    this.config = config;
    this.page = page;
    this.timeout = timeout;
    this.base = config.url.replace(/\/+$/, '');
    this.findings = {};
    this.problems = [];
    /** Responses >= 400 a step expects: {method, path, statuses}. */
    this.allowed = [];
    /** Each response's method by URL, for Chromium's console line about it. */
    this.seen = new Map();
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const where = msg.location()?.url ?? '';
      // Chromium also logs every response >= 400 as an error; an expected one is no problem.
      const status = /status of (\d{3})/.exec(msg.text())?.[1];
      if (status && this.isAllowed(this.method(where), where, Number(status))) return;
      // So does htmx, naming the path in its own words.
      const htmx = /Response Status Error Code (\d{3}) from (\S+?),? /.exec(msg.text());
      const url = htmx && new URL(htmx[2], this.base).href;
      if (htmx && this.isAllowed(this.method(url), url, Number(htmx[1]))) return;
      this.problems.push(`console error: ${msg.text()}${where ? ` (${where})` : ''}`);
    });
    page.on('pageerror', (err) => this.problems.push(`page error: ${err.message}`));
    page.on('requestfailed', (req) => {
      const why = req.failure()?.errorText ?? 'failed';
      // A stream or an htmx request cut short by navigating away (or by htmx replacing it) is
      // the page working as meant; a document, script, style or image that did not load is not.
      const streamed = ['eventsource', 'fetch', 'xhr'].includes(req.resourceType());
      // So is the tab's icon, which the browser fetches for itself and drops when the page moves on.
      const icon = /\/favicon\.(svg|ico)$/.test(new URL(req.url()).pathname);
      if (why === 'net::ERR_ABORTED' && (streamed || icon)) return;
      this.problems.push(`request failed: ${req.method()} ${req.url()}: ${why}`);
    });
    page.on('response', (res) => {
      const req = res.request();
      this.seen.set(res.url(), req.method());
      if (res.status() >= 400 && !this.isAllowed(req.method(), res.url(), res.status())) {
        this.problems.push(`HTTP ${res.status()}: ${req.method()} ${res.url()}`);
      }
    });
  }

  /** Runs `during` with responses matching `rule` ({method, path, statuses}) allowed. */
  async allowing(rule, during) {
    this.allowed.push(rule);
    try {
      return await during();
    } finally {
      this.allowed.splice(this.allowed.indexOf(rule), 1);
    }
  }

  isAllowed(method, url, status) {
    const pathname = safePath(url);
    return this.allowed.some(
      (r) => (!r.method || r.method === method) && r.path === pathname && r.statuses.includes(status),
    );
  }

  method(url) {
    return this.seen.get(url) ?? 'GET';
  }

  async goto(p) {
    await this.page.goto(this.base + p);
  }

  path() {
    return new URL(this.page.url()).pathname;
  }

  expectPath(want, when) {
    const got = this.path();
    if (got !== want) throw new Error(`${when}: expected to be at ${want}, but at ${this.page.url()}`);
  }

  async expectHeading(text) {
    await this.page.locator('h1').filter({ hasText: text }).first().waitFor({ state: 'visible' });
  }

  /** Fills and submits `form#login` on the current page. */
  async submitLogin(username, password) {
    const form = this.page.locator('form#login');
    await form.locator('input[name=username]').fill(username);
    await form.locator('input[name=password]').fill(password);
    const tenant = form.locator('input[name=tenant]');
    if (this.config.tenant !== undefined && (await tenant.count()) > 0) await tenant.fill(this.config.tenant);
    await form.locator('button[type=submit]').click();
  }

  /** From no session to the overview with the configured account. */
  async signIn() {
    await this.goto('/login');
    await this.submitLogin(this.config.username, this.config.password);
    await this.page.waitForURL((u) => u.pathname === '/');
    await this.expectHeading('Overview');
  }

  async readCount(name) {
    const el = this.page.locator(`[data-testid=count-${name}]`);
    await el.waitFor({ state: 'attached' });
    const text = await el.textContent();
    const n = parseCount(text);
    if (n === null) throw new Error(`[data-testid=count-${name}] shows ${JSON.stringify(text)}, not an integer`);
    return n;
  }

  /** Waits (polling the DOM, up to the timeout) until count `name` shows `want`. */
  async waitForCount(name, want) {
    try {
      await this.page.waitForFunction(
        ([sel, n]) => {
          const text = document.querySelector(sel)?.textContent ?? '';
          return text.replace(/[\s,'\u00a0\u202f]/g, '') === String(n);
        },
        [`[data-testid=count-${name}]`, want],
        { timeout: this.timeout },
      );
    } catch (err) {
      const now = await this.page.locator(`[data-testid=count-${name}]`).textContent().catch(() => '?');
      throw new Error(`count-${name} did not become ${want} (it shows ${JSON.stringify(now)}): ${err.message}`);
    }
  }

  /** Keeps a full-page screenshot `<screenshot_dir>/<name>.png` of this moment; returns its path. */
  async snapshot(name) {
    const file = path.join(this.config.screenshot_dir, `${name}.png`);
    mkdirSync(this.config.screenshot_dir, { recursive: true });
    await this.page.screenshot({ path: file, fullPage: true });
    return file;
  }

  /** Tells the test waiting on `ready_file` (when configured) that the scenario got this far. */
  signalReady(text) {
    if (this.config.ready_file) writeAtomically(this.config.ready_file, text);
  }

  /** Loaded, and no htmx request in flight (content that htmx loads after the page is there). */
  async settled() {
    await this.page.waitForLoadState('load');
    await this.page.waitForFunction(() => document.querySelectorAll('.htmx-request').length === 0);
  }
}

function parseCount(text) {
  const digits = (text ?? '').replace(/[\s,'\u00a0\u202f]/g, '');
  return /^\d+$/.test(digits) ? Number(digits) : null;
}

function safePath(url) {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

/** Writes `file` whole or not at all, so a watcher never reads half of it. */
function writeAtomically(file, text) {
  const temp = `${file}.tmp-${process.pid}`;
  writeFileSync(temp, text);
  renameSync(temp, file);
}

function readConfig() {
  const raw = process.env.BATON_BROWSER_CONFIG;
  if (!raw) throw new Error('BATON_BROWSER_CONFIG is not set');
  const config = JSON.parse(raw);
  for (const field of ['url', 'username', 'password', 'screenshot_dir']) {
    if (typeof config[field] !== 'string') throw new Error(`config field ${field} is missing`);
  }
  return config;
}

async function main() {
  const name = process.argv[2];
  let config;
  try {
    if (!Object.hasOwn(scenarios, name ?? '')) {
      throw new Error(`usage: run.mjs <${Object.keys(scenarios).join('|')}>; got ${JSON.stringify(name)}`);
    }
    config = readConfig();
  } catch (err) {
    return report({ ok: false, error: err.message });
  }
  const screenshot = path.join(config.screenshot_dir, `${name}.png`);
  const timeout = config.timeout_ms ?? 15_000;
  let browser;
  let trial;
  let failure;
  try {
    browser = await chromium.launch({
      executablePath: config.chromium ?? '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
      // Starting Chromium is not what is tested; beside a busy 2-core suite it can take a while.
      timeout: 90_000,
    });
    const context = await browser.newContext({
      viewport: config.viewport ?? { width: 1280, height: 800 },
      timezoneId: config.timezone,
    });
    const page = await context.newPage();
    page.setDefaultTimeout(timeout);
    page.setDefaultNavigationTimeout(timeout);
    trial = new Trial(config, page, timeout);
    await scenarios[name](trial);
  } catch (err) {
    failure = describe(err);
  }
  if (trial) {
    try {
      mkdirSync(config.screenshot_dir, { recursive: true });
      await trial.page.screenshot({ path: screenshot, fullPage: true });
    } catch (err) {
      failure ??= `screenshot: ${err.message}`;
    }
  }
  await browser?.close().catch(() => {});
  const problems = trial?.problems ?? [];
  if (failure || problems.length > 0) {
    const error = [failure, ...problems].filter(Boolean).join('; ');
    return report({ ok: false, error, at: safeUrl(trial), screenshot });
  }
  return report({ ok: true, ...trial.findings, screenshot });
}

/** The first line of a Playwright error, with what it was waiting for from its call log. */
function describe(err) {
  const plain = String(err?.message ?? err).replace(/\u001b\[\d+m/g, '');
  const lines = plain.split('\n').map((l) => l.trim());
  const waiting = lines.find((l) => l.startsWith('- waiting for'));
  return waiting ? `${lines[0]} (${waiting.slice(2)})` : lines[0];
}

function safeUrl(trial) {
  try {
    return trial?.page.url();
  } catch {
    return undefined;
  }
}

function report(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exitCode = result.ok ? 0 : 1;
}

await main();
