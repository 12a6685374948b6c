// The device page, in a real browser against the real binaries (rig.mjs): alerts as
// banners (raised by the server's disk rule, set to fire at once) and acknowledged; a
// screenshot shown inline and a log bundle downloaded, both decrypted in the browser; a
// reboot asked for confirmation (cancelled once, then confirmed); the recent commands and
// the audit history; the 48-hour charts. Then the page at 1280 × 800.
//
//   cd web && npm run e2e      # or: node --test e2e/device.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Rig, waitFor } from "./rig.mjs";
import { pairInApp, registerInApp, signIn } from "./flows.mjs";

/** Scrolls the page so that `selector` starts just below the sticky top bar. */
async function scrollToTop(page, selector) {
  await page.locator(selector).evaluate((el) => {
    const bar = document.querySelector("header.bar")?.getBoundingClientRect().height ?? 0;
    window.scrollTo(0, window.scrollY + el.getBoundingClientRect().top - bar - 8);
  });
  await page.waitForTimeout(200);
}

test("device page: alerts, screenshot, logs, reboot with confirmation, history", { timeout: 180_000 }, async (t) => {
  const rig = new Rig(t);
  const procs = rig.procs;
  try {
    // Every disk is fuller than 1 %: the disk rule raises a warning with the first sample.
    // Rollups every 2 s: the 48-hour charts get their (single) hourly bucket in the test.
    const { url } = await rig.startServer({
      TETHER_SERVER_ALERTS__DISK_HIGH_PCT: "1",
      TETHER_SERVER_TELEMETRY__ROLLUP_EVERY_S: "2",
    });
    await rig.launch();
    const context = await rig.context();
    const page = await context.newPage();
    const email = "linus@lab.example";
    await registerInApp(page, url, email);

    // "Pair a PC" explains how (and takes a pasted link; a camera scan where the browser
    // has BarcodeDetector, which headless Chromium does not).
    await page.getByRole("button", { name: "Pair a PC" }).click();
    await page.getByRole("heading", { name: "Pair a PC", level: 2 }).waitFor();
    await page.getByText("tether-agent run --server").waitFor();
    await page.getByLabel("Pairing link").fill("https://example.org/not-a-pair-link");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByText("That is not a pairing link.").waitFor();
    await rig.shot(page, "phone-pair-help");
    await page.getByRole("link", { name: "Back" }).click();
    await page.getByRole("heading", { name: "Your PCs" }).waitFor();

    const pc = await rig.startPc("lab-pc-3");
    const { pairPage } = await pairInApp(rig, context, pc, email);
    await pairPage.close();
    const row = page.locator("a.row", { hasText: pc.name });
    await row.locator(".pill.on", { hasText: "online" }).waitFor({ timeout: 60_000 });

    // The alert arrives live on the list, as a warning banner naming the PC.
    const diskAlert = page.locator(".alert.warning", { hasText: "Disk almost full" });
    await diskAlert.waitFor({ timeout: 60_000 });
    assert.match(await diskAlert.textContent(), new RegExp(pc.name));
    await rig.shot(page, "phone-alerts");

    // The device page shows it too.
    await row.click();
    await page.locator("header", { hasText: pc.name }).waitFor();
    await page.locator(".alert.warning", { hasText: "Disk almost full" }).waitFor();
    await page.locator("dl.facts dd", { hasText: "%" }).first().waitFor();

    const dialog = page.locator("dialog[open]");
    const button = (name) => page.getByRole("button", { name, exact: true });
    const closeDialog = async () => {
      await dialog.getByRole("button", { name: "Close" }).click();
      await dialog.waitFor({ state: "detached" });
    };
    const commandIdIn = async (d) => /command (\S+)/.exec(await d.locator("p.ids").first().textContent())[1];

    // Screenshot: the PNG the helper made, fetched, checked, decrypted and shown inline.
    await waitFor("the Screenshot button", () => button("Screenshot").isEnabled(), 30_000, procs);
    await button("Screenshot").click();
    await dialog.locator("p.state.completed", { hasText: "Done" }).waitFor({ timeout: 60_000 });
    const img = dialog.locator("img.shot");
    await img.waitFor();
    await waitFor("the screenshot to decode", () => img.evaluate((i) => i.complete && i.naturalWidth === 320), 10_000, procs);
    assert.match(await img.getAttribute("src"), /^blob:/);
    const shotId = await commandIdIn(dialog);
    await rig.shot(page, "phone-screenshot-result");
    await closeDialog();

    // Collect logs: the bundle, decrypted, downloads as a file.
    await button("Collect logs").click();
    await dialog.locator("p.state.completed", { hasText: "Done" }).waitFor({ timeout: 60_000 });
    const link = dialog.getByRole("link", { name: /Download log bundle/ });
    const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
    assert.match(download.suggestedFilename(), /^art_[A-Za-z0-9_-]+\.txt$/);
    assert.match(readFileSync(await download.path(), "utf8"), /simulated log entry 1 /);
    const logsId = await commandIdIn(dialog);
    await closeDialog();

    // Reboot asks first; cancelling sends nothing.
    await button("Reboot").click();
    const confirm = page.locator("dialog.confirm[open]");
    await confirm.getByRole("heading", { name: `Reboot ${pc.name}?` }).waitFor();
    await rig.shot(page, "phone-reboot-confirm");
    await confirm.getByRole("button", { name: "Cancel" }).click();
    await confirm.waitFor({ state: "detached" });
    assert.ok(!pc.runs().some((r) => r.opcode === "EXEC_REBOOT"));
    await button("Reboot").click();
    await confirm.getByRole("button", { name: "Reboot now" }).click();
    await dialog.locator("p.state.completed", { hasText: "Done" }).waitFor({ timeout: 60_000 });
    const rebootId = await commandIdIn(dialog);
    await closeDialog();

    // The helper ran exactly these, once each.
    assert.deepEqual(
      pc.runs().map((r) => [r.opcode, r.command_message_id]),
      [
        ["CAPTURE_SCREENSHOT", shotId],
        ["COLLECT_LOGS", logsId],
        ["EXEC_REBOOT", rebootId],
      ],
    );

    // Recent commands, newest first, live; one opens its result again.
    const recent = page.locator('section[aria-label="Recent commands"] a.hrow');
    await waitFor("3 recent commands, done", async () => (await recent.locator(".state-tag.completed").count()) === 3, 20_000, procs);
    assert.deepEqual(await recent.evaluateAll((els) => els.map((e) => e.dataset.commandId)), [rebootId, logsId, shotId]);
    await recent.nth(2).click();
    await dialog.locator("img.shot").waitFor();
    await closeDialog();

    // The audit history: the route's entries, or (until it exists) a note, not an error.
    const audit = page.locator('section[aria-label="Audit history"]');
    await audit.locator("li, p.muted").first().waitFor();
    assert.equal(await audit.locator(".error").count(), 0);
    await scrollToTop(page, 'section[aria-label="Recent commands"]');
    await rig.shot(page, "phone-device-history");

    // Acknowledge the alert: it goes.
    await page.locator(".alert.warning", { hasText: "Disk almost full" }).getByRole("button", { name: /Acknowledge/ }).click();
    await page.locator(".alert", { hasText: "Disk almost full" }).waitFor({ state: "detached" });

    // The last 48 hours: the hourly rollups (one bucket so far, drawn at its own time).
    await button("48 h").click();
    await page.getByRole("heading", { name: "Last 48 hours" }).waitFor();
    await page.getByText("No hourly history yet").waitFor({ state: "detached" });
    await scrollToTop(page, "section:has(.seg)");
    await rig.shot(page, "phone-device-48h");

    // The same page at 1280 × 800, with a screenshot result open.
    const wide = await rig.context({ wide: true });
    const desk = await wide.newPage();
    await desk.goto(url + "/#/login");
    await signIn(desk, email);
    await desk.locator("a.row", { hasText: pc.name }).click();
    await desk.locator("dl.facts dd", { hasText: "%" }).first().waitFor();
    await desk.waitForTimeout(2_000);
    await rig.shot(desk, "wide-device-page");
    await wide.close();

    // And on a phone in dark mode.
    const dark = await rig.context({ colorScheme: "dark" });
    const night = await dark.newPage();
    await night.goto(url + "/#/login");
    await signIn(night, email);
    await night.locator("a.row", { hasText: pc.name }).click();
    await night.locator("dl.facts dd", { hasText: "%" }).first().waitFor();
    await night.waitForTimeout(1_500);
    await rig.shot(night, "phone-device-dark");
    await dark.close();

    assert.deepEqual(rig.browserErrors, []);
  } catch (e) {
    rig.fail(e);
  }
});
