// The screen scenario for run.mjs: a device's screen in noVNC, viewed or controlled.
// Takes the Trial of run.mjs (`t`) like the scenarios there.

/**
 * Counts the noVNC canvas's pixels of `background` and `text` (each [r, g, b], within 8 per
 * channel) as shares of the whole, with the canvas's own size (the device's screen).
 */
function shares([background, text]) {
  const canvas = document.querySelector('#screen canvas');
  if (!canvas || canvas.width === 0 || canvas.height === 0) return null;
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  const near = (at, rgb) => Math.abs(data[at] - rgb[0]) <= 8 && Math.abs(data[at + 1] - rgb[1]) <= 8 && Math.abs(data[at + 2] - rgb[2]) <= 8;
  let [b, x] = [0, 0];
  for (let at = 0; at < data.length; at += 4) {
    if (near(at, background)) b += 1;
    else if (near(at, text)) x += 1;
  }
  const all = data.length / 4;
  return { width: canvas.width, height: canvas.height, background: b / all, text: x / all };
}

export default {
  /**
   * The device page's "View screen" (or "Control screen", with `control`) opens the screen page,
   * which connects; the canvas comes to show the device's screen: `width` × `height`, mostly
   * `background`, some `text` (kept in `screen-view.png` or `screen-control.png`). Then `type`
   * is typed on the canvas (clicked first, as a person does), and the session's id written to
   * `ready_file`. Viewing, Disconnect ends the session; controlling, the test ends it. Findings:
   * the canvas's size and shares, and the words the page ends with.
   */
  async screen(t) {
    const { control } = t.config;
    const mode = control ? 'control' : 'view';
    await t.signIn();
    await t.goto(`/devices/${t.config.device_id}`);
    const link = t.page.locator(`a[data-testid=screen-${mode}]`);
    await link.click();
    await t.page.waitForURL((u) => u.pathname === `/devices/${t.config.device_id}/screen${control ? '/control' : ''}`);
    await t.page.locator('#screen-session[data-state=open]').waitFor({ state: 'attached' });
    const want = [t.config.background, t.config.text];
    let seen;
    try {
      const handle = await t.page.waitForFunction(
        ([colours, width, height, check]) => {
          const found = new Function(`return (${check})`)()(colours);
          return found && found.width === width && found.height === height && found.background > 0.5 && found.text > 0 ? found : null;
        },
        [want, t.config.width, t.config.height, shares.toString()],
        { timeout: t.timeout, polling: 100 },
      );
      seen = await handle.jsonValue();
    } catch (err) {
      const now = await t.page.evaluate(([colours, check]) => new Function(`return (${check})`)()(colours), [want, shares.toString()]);
      throw new Error(`the canvas never showed the device's screen; it shows ${JSON.stringify(now)}: ${err.message}`);
    }
    Object.assign(t.findings, {
      canvas_width: seen.width,
      canvas_height: seen.height,
      background_share: seen.background,
      text_share: seen.text,
    });
    await t.snapshot(`screen-${mode}`);
    const canvas = t.page.locator('#screen canvas');
    await canvas.click();
    await t.page.keyboard.type(t.config.type);
    const session = await t.page.locator('#screen-session').getAttribute('data-session');
    t.signalReady(session);
    if (!control) await t.page.locator('button[data-testid=disconnect]').click();
    const ended = t.page.locator('[data-testid=session-ended]');
    await ended.waitFor({ state: 'visible', timeout: 60_000 });
    t.findings.ended = (await ended.innerText()).trim();
  },
};
