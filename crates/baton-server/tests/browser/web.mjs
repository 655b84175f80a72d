// The device-web-page scenario for run.mjs: a device's own web page (a printer's or router's
// admin page) opened from its console page in a new tab, through the server, on the session's
// own host. Takes the Trial of run.mjs (`t`) like the scenarios there.

export default {
  /**
   * Device `device_id`'s page: "Web page on the device" with `port` and Open opens a new tab,
   * which lands on the device's page (its title reads `expect_title`) on a host of its own,
   * with the stylesheet and the image it names by absolute path loaded. The new tab fails the
   * scenario on any page error, failed request or response >= 400, as the console's page does.
   * Findings: the tab's `url`, the heading's `title` and `title_color` (the stylesheet's), the
   * image's `image_width`; the tab is kept in the screenshot `device-web.png`.
   */
  async device_web(t) {
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    await t.settled();
    const form = t.page.locator('[data-testid=device-web]');
    await form.getByLabel('Web page on the device — port').fill(String(t.config.port));
    const [tab] = await Promise.all([
      t.page.context().waitForEvent('page'),
      form.getByRole('button', { name: 'Open', exact: true }).click(),
    ]);
    tab.on('pageerror', (err) => t.problems.push(`device tab: page error: ${err.message}`));
    tab.on('requestfailed', (req) => t.problems.push(`device tab: request failed: ${req.url()}: ${req.failure()?.errorText}`));
    tab.on('response', (res) => {
      if (res.status() >= 400) t.problems.push(`device tab: HTTP ${res.status()}: ${res.url()}`);
    });
    await tab.waitForLoadState('load', { timeout: t.timeout });
    const title = tab.locator('#title');
    await title.waitFor({ state: 'visible', timeout: t.timeout });
    await tab.waitForFunction(() => document.querySelector('#logo')?.complete, null, { timeout: t.timeout });
    t.findings.url = tab.url();
    t.findings.title = (await title.innerText()).trim();
    t.findings.title_color = await title.evaluate((el) => getComputedStyle(el).color);
    t.findings.image_width = await tab.locator('#logo').evaluate((img) => img.naturalWidth);
    await tab.screenshot({ path: `${t.config.screenshot_dir}/device-web.png`, fullPage: true });
  },
};
