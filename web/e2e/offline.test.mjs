// The offline queue, in a real browser against the real binaries (rig.mjs): a phone that
// loses its network keeps signing commands and queues them (at most 3; a 4th is refused
// with a clear message), the queue survives a reload (the app starting offline from the
// service worker's copy), and when the network is back the 3 are sent in order and end
// completed on the PC: the helper's record holds exactly those 3 command ids.
//
//   cd web && npm run e2e      # or: node --test e2e/offline.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import { Rig, waitFor } from "./rig.mjs";
import { pairInApp, registerInApp } from "./flows.mjs";

test("offline: 3 commands wait on the phone, a 4th is refused, all 3 run once back online", { timeout: 180_000 }, async (t) => {
  const rig = new Rig(t);
  const procs = rig.procs;
  try {
    const { url } = await rig.startServer();
    await rig.launch();
    const context = await rig.context();
    const page = await context.newPage();
    const email = "grace@lab.example";
    await registerInApp(page, url, email);

    const pc = await rig.startPc("lab-pc-2");
    const { pairPage } = await pairInApp(rig, context, pc, email);
    await pairPage.close();
    const row = page.locator("a.row", { hasText: pc.name });
    await row.locator(".pill.on", { hasText: "online" }).waitFor({ timeout: 60_000 });

    await row.click();
    await page.locator("header", { hasText: pc.name }).waitFor();
    const lock = page.getByRole("button", { name: "Lock screen", exact: true });
    await waitFor("the Lock screen button to be enabled", () => lock.isEnabled(), 30_000, procs);
    // The service worker holds the app shell by now (for the offline start below).
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));

    // The phone loses its network.
    await context.setOffline(true);
    await page.locator(".netbanner", { hasText: "You are offline." }).waitFor();

    const dialog = page.locator("dialog[open]");
    const ids = [];
    for (let i = 0; i < 3; i++) {
      await lock.click();
      await dialog.getByText("Queued on this phone").waitFor();
      ids.push(await dialog.locator(".queued[data-command-id]").getAttribute("data-command-id"));
      await dialog.getByRole("button", { name: "Close" }).click();
      await dialog.waitFor({ state: "detached" });
    }
    assert.equal(new Set(ids).size, 3);
    const items = page.locator(".outbox li");
    await waitFor("3 entries in the queue", async () => (await items.count()) === 3, 10_000, procs);
    assert.deepEqual(await items.evaluateAll((els) => els.map((e) => e.dataset.commandId)), ids);
    assert.deepEqual(await items.evaluateAll((els) => els.map((e) => e.dataset.state)), ["waiting", "waiting", "waiting"]);
    await page.locator(".outbox h2", { hasText: "3 of 3 waiting" }).waitFor();

    // A 4th is refused, with a message saying why and what to do; nothing was queued.
    await lock.click();
    await dialog.getByText(/^3 commands are already waiting; /).waitFor();
    await dialog.getByText("Queue full").waitFor();
    await rig.shot(page, "phone-queue-full");
    await dialog.getByRole("button", { name: "Close" }).click();
    assert.equal(await items.count(), 3);
    await page.locator(".outbox").scrollIntoViewIfNeeded();
    await rig.shot(page, "phone-queue");
    assert.deepEqual(pc.runs(), [], "nothing reached the PC while offline");

    // The app starts offline (a reload, from the service worker's copy), with the queue
    // kept (localStorage).
    await page.reload();
    await page.getByRole("heading", { name: "You are offline" }).waitFor();
    await rig.shot(page, "phone-offline-start");

    // Back online: the session resumes, the device page returns and the 3 are sent, in
    // order, and run on the PC.
    await context.setOffline(false);
    await page.locator("header", { hasText: pc.name }).waitFor();
    await waitFor(
      "the 3 queued commands to end completed",
      async () => (await page.locator('.outbox li[data-state="completed"]').count()) === 3,
      60_000,
      procs,
    );
    assert.deepEqual(await items.evaluateAll((els) => els.map((e) => e.dataset.commandId)), ids);
    await page.locator(".outbox").scrollIntoViewIfNeeded();
    await rig.shot(page, "phone-queue-sent");

    // The helper's record: exactly those 3 commands, each once, in the order they were asked for.
    const runs = pc.runs();
    assert.equal(runs.length, 3, JSON.stringify(runs));
    assert.deepEqual(
      runs.map((r) => r.opcode),
      ["EXEC_LOCK_SCREEN", "EXEC_LOCK_SCREEN", "EXEC_LOCK_SCREEN"],
    );
    assert.deepEqual(runs.map((r) => r.command_message_id), ids);

    // Nothing failed in the browser but what going offline makes fail (the live stream,
    // the requests cut by setOffline).
    const errors = rig.browserErrors.filter((e) => !e.includes("net::ERR_INTERNET_DISCONNECTED"));
    assert.deepEqual(errors, []);
  } catch (e) {
    rig.fail(e);
  }
});
