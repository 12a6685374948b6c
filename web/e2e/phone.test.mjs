// End-to-end, in a real browser: Debian's Chromium driven by playwright-core (which never
// downloads a browser), against the real tether-server, tether-agent and tether-helper
// (recording executor) binaries, at a 360 × 780 phone viewport (rig.mjs).
//
//   cd web && npm run e2e      # TETHER_BIN_DIR (default ../target/debug), CHROMIUM (default /usr/bin/chromium)
//
// A new user registers through the app's form (the browser makes the WebCrypto Ed25519
// owner key), signs in, sees the empty device list, enrols a passkey on the Security
// screen (a CDP virtual authenticator with user verification) and signs in with it,
// pairs a real agent by opening its pair URL in the same browser (the PC pins the passkey
// at pairing), sees the PC online in the list, opens its page, presses "Lock screen" and
// sees the command completed in the result dialog: signed with the passkey
// (`webauthn-es256`), and the helper recorded exactly that command. The app lock covers
// the app after a short idle time and opens with the passkey. Then the list and the
// device page at 1280 × 800 from a desktop context. Screenshots go to docs/screenshots/.

import { test } from "node:test";
import assert from "node:assert/strict";
import { PASSWORD, Rig, waitFor } from "./rig.mjs";
import { pairInApp } from "./flows.mjs";

test("phone: register, pair a real agent, see it online, lock its screen", { timeout: 120_000 }, async (t) => {
  const rig = new Rig(t);
  const procs = rig.procs;
  try {
    const { url } = await rig.startServer();
    await rig.launch();
    const context = await rig.context();
    const page = await context.newPage();

    // Register through the app's form: the browser makes the owner key.
    const email = "ada@lab.example"; // a fresh server each run
    await page.goto(url + "/#/register");
    await page.getByRole("heading", { name: "Create an account" }).waitFor();
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await rig.shot(page, "phone-register");
    await page.getByRole("button", { name: "Create account" }).click();
    // Registration signs in and lands on the (empty) device list.
    await page.getByRole("heading", { name: "Your PCs" }).waitFor();
    await page.getByText("No PC yet.").waitFor();

    // Sign out and sign in again through the sign-in form.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Your PCs" }).waitFor();
    await page.getByText("No PC yet.").waitFor();

    // A passkey. Chromium's virtual authenticator (CDP WebAuthn domain) stands in for the
    // phone's platform authenticator: resident keys, user verification that succeeds.
    // WebAuthn runs on this https://localhost origin although the certificate is the
    // server's own CA's (the browser ignores certificate errors; localhost is a secure
    // context), so no SPKI allow-list is needed.
    const cdp = await context.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
    });
    // Security (from the list's header): add a passkey. The app registers it with the
    // server and pins it on the account's PCs with an owner-keys statement signed by the
    // browser's Ed25519 key (there is no PC yet: the one paired below pins it at pairing).
    await page.getByRole("link", { name: "Security" }).click();
    await page.getByRole("heading", { name: "Security" }).waitFor();
    await page.getByRole("button", { name: "Add a passkey" }).click();
    await page.getByText(/Passkey added and pinned on your PCs/).waitFor();
    const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
    assert.equal(credentials.length, 1, "the authenticator holds one passkey");
    const passkeyKid = Buffer.from(credentials[0].credentialId, "base64").toString("base64url");
    const pinned = page.getByRole("list", { name: "Passkeys pinned on your PCs" }).locator("li.passkey");
    await pinned.first().waitFor();
    assert.equal(await pinned.count(), 1);
    assert.match(await pinned.textContent(), /pinned on your PCs.*made in this browser/);
    await rig.shot(page, "phone-security");

    // Sign out, and in again with the passkey (the server's passkey login, by email).
    await page.getByRole("link", { name: "Back" }).click();
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.getByLabel("Email").fill(email);
    await page.getByRole("button", { name: "Use a passkey instead" }).click();
    await page.getByRole("heading", { name: "Your PCs" }).waitFor();
    // The approvals inbox is reachable from the header; nothing waits for this user.
    await page.getByRole("link", { name: "Approvals" }).click();
    await page.getByText("Nothing waits for your approval.").waitFor();
    await page.getByRole("link", { name: "Back" }).click();
    await page.getByText("No PC yet.").waitFor();

    // A real agent, with a real helper (recording executor) for the command.
    const deviceName = "lab-pc-1";
    const pc = await rig.startPc(deviceName);
    let agent = pc.agent;

    // Pair: open the agent's pair URL (what its QR code holds) in a second tab of the same
    // browser: the app's Pair screen. The tab has no session yet (sessions are per tab),
    // so it asks to sign in first and keeps the token through it (out of the address);
    // "Pair this PC" then shows the PC's name and the matching number, which the agent
    // prints too.
    const { pairPage } = await pairInApp(rig, context, pc, email);
    await rig.shot(pairPage, "phone-pair");
    await pairPage.close();

    // The list, open in the first tab all along, shows the new PC WITHOUT a reload: the
    // agent's session coming up is a presence event of a device the list does not know,
    // and the list loads itself again. Then it follows its presence live.
    const row = page.locator("a.row", { hasText: deviceName });
    await row.waitFor();
    await waitFor("the agent's session", () => agent.out.includes("connected: session"), 60_000, procs);
    await row.locator(".pill.on", { hasText: "online" }).waitFor();
    await page.locator(".live-dot.open").waitFor();

    // Live presence, without reloading: the agent stops (offline), starts again on the
    // same state dir (online).
    await pc.stopAgent();
    await row.locator(".pill.off", { hasText: "offline" }).waitFor();
    agent = pc.restartAgent();
    await row.locator(".pill.on", { hasText: "online" }).waitFor();
    await rig.shot(page, "phone-devices");

    // The device page.
    await row.click();
    await page.locator("header", { hasText: deviceName }).waitFor();
    const lockButton = page.getByRole("button", { name: "Lock screen" });
    await waitFor("the Lock screen button to be enabled", () => lockButton.isEnabled(), 30_000, procs);
    // Live telemetry reaches the page: the CPU figure and the chart fill in.
    await page.getByText("Waiting for telemetry…").waitFor({ state: "detached" });
    await page.locator("dl.facts dd", { hasText: "%" }).first().waitFor();
    // ... and moves: a later sample changes the figures (and gives the chart a line).
    const facts = page.locator("dl.facts");
    const first = await facts.textContent();
    await waitFor("a second telemetry sample on the page", async () => (await facts.textContent()) !== first, 20_000, procs);
    await page.waitForTimeout(1_500); // one more sample: a line, not two dots
    await rig.shot(page, "phone-device");

    // Lock screen: signed in the browser with the passkey (a WebAuthn assertion over the
    // statement's hash: the agent checks it against the key it pinned), run through agent
    // and helper. What the app submits is read off the request.
    const submitted = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && new URL(r.url()).pathname === "/api/command") submitted.push(r.postDataJSON());
    });
    await page.getByRole("button", { name: "Lock screen" }).click();
    const dialog = page.locator("dialog[open]");
    await dialog.waitFor();
    await dialog.locator("p.state.completed", { hasText: "Done" }).waitFor({ timeout: 60_000 });
    const idText = await dialog.getByText(/^command /).textContent();
    const commandId = /command (\S+)/.exec(idText)[1];
    await rig.shot(page, "phone-lock-result");

    // The helper recorded exactly that command, once.
    const runs = pc.runs();
    assert.equal(runs.length, 1, JSON.stringify(runs));
    assert.equal(runs[0].opcode, "EXEC_LOCK_SCREEN");
    assert.equal(runs[0].command_message_id, commandId);
    // ... and it was signed with the passkey: one submission, of that command, whose
    // user_sig is a WebAuthn assertion by the enrolled credential.
    assert.equal(submitted.length, 1, JSON.stringify(submitted));
    assert.equal(submitted[0].message_id, commandId);
    assert.equal(submitted[0].method, "lock_screen");
    assert.equal(submitted[0].user_sig.kind, "webauthn-es256");
    assert.equal(submitted[0].user_sig.kid, passkeyKid);
    const clientData = JSON.parse(Buffer.from(submitted[0].user_sig.client_data_json, "base64url"));
    assert.equal(clientData.type, "webauthn.get");
    assert.equal(clientData.origin, url);
    assert.ok(!agent.out.includes("a pinned owner key is unusable"), agent.out);

    // The app lock: idle for 2 s (a setting the test shortens; 5 min by default), the app
    // covers itself and asks for the passkey; unlocking goes through the server's passkey
    // login and gives the tab a new session.
    await dialog.getByRole("button", { name: "Close" }).click();
    await dialog.waitFor({ state: "detached" });
    await page.evaluate(() => localStorage.setItem("tether.lock.idle_s", "2"));
    const appLock = page.locator("dialog.app-lock[open]");
    await appLock.getByRole("heading", { name: "Tether is locked" }).waitFor({ timeout: 15_000 });
    await rig.shot(page, "phone-app-lock");
    await page.evaluate(() => localStorage.removeItem("tether.lock.idle_s"));
    // A reload does not get around it.
    await page.reload();
    await appLock.getByRole("heading", { name: "Tether is locked" }).waitFor();
    const refreshBefore = await page.evaluate(() => sessionStorage.getItem("tether.refresh"));
    await appLock.getByRole("button", { name: "Unlock with passkey" }).click();
    await appLock.waitFor({ state: "detached" });
    await page.locator("header", { hasText: deviceName }).waitFor();
    const refreshAfter = await page.evaluate(() => sessionStorage.getItem("tether.refresh"));
    assert.ok(refreshAfter && refreshAfter !== refreshBefore, "unlocking opened a new session");

    // The same screens on a wide screen (1280 × 800, a desktop browser): a new context,
    // so a new sign-in (the session is per tab).
    const wide = await rig.context({ wide: true });
    const desk = await wide.newPage();
    await desk.goto(url + "/#/login");
    await desk.getByLabel("Email").fill(email);
    await desk.getByLabel("Password").fill(PASSWORD);
    await desk.getByRole("button", { name: "Sign in" }).click();
    const deskRow = desk.locator("a.row", { hasText: deviceName });
    await deskRow.locator(".pill.on", { hasText: "online" }).waitFor();
    await desk.locator(".live-dot.open").waitFor();
    await rig.shot(desk, "wide-devices");
    await deskRow.click();
    await desk.locator("dl.facts dd", { hasText: "%" }).first().waitFor();
    await desk.waitForTimeout(2_500); // a few samples: a line in the chart
    await rig.shot(desk, "wide-device");
    await wide.close();

    // Nothing failed in the browser on the way.
    assert.deepEqual(rig.browserErrors, []);
  } catch (e) {
    rig.fail(e);
  }
});
