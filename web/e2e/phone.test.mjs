// End-to-end, in a real browser: Debian's Chromium driven by playwright-core (which never
// downloads a browser), against the real tether-server, tether-agent and tether-helper
// (recording executor) binaries, at a 360 × 780 phone viewport.
//
//   cd web && npm run e2e      # TETHER_BIN_DIR (default ../target/debug), CHROMIUM (default /usr/bin/chromium)
//
// A new user registers through the app's form (the browser makes the WebCrypto Ed25519
// owner key), signs in, sees the empty device list, pairs a real agent by opening its
// pair URL (the server's /pair page) in the same browser, sees the PC online in the list,
// opens its page, presses "Lock screen" and sees the command completed in the result
// dialog; the helper recorded exactly that command. Then the list and the device page at
// 1280 × 800 from a desktop context. Screenshots go to docs/screenshots/.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = resolve(here, "..", process.env.TETHER_BIN_DIR || "../target/debug");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = resolve(here, "../../docs/screenshots");
const PHONE = { width: 360, height: 780 };
const PASSWORD = "correct horse battery staple";

/** A child process whose output is kept, to print when the test fails. */
class Proc {
  constructor(name, args, env = {}) {
    this.name = name;
    this.out = "";
    this.child = spawn(join(BIN, name), args, {
      env: { ...process.env, TETHER_LOG: "info,sqlx=warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exited = null;
    this.child.on("error", (e) => {
      this.out += `[spawn error] ${e}\n`;
      this.exited ??= "not started";
    });
    this.child.on("exit", (code, sig) => (this.exited = `exit ${code ?? sig}`));
    for (const s of [this.child.stdout, this.child.stderr]) s.on("data", (d) => (this.out += d));
  }
  stop() {
    if (this.exited === null) this.child.kill("SIGTERM");
  }
  dump() {
    return `----- ${this.name} (${this.exited ?? "running"}) -----\n${this.out}`;
  }
}

/** Polls `check` every 50 ms until it returns a truthy value, failing after `ms`. */
async function waitFor(what, check, ms, procs) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    for (const p of procs) if (p.exited !== null) throw new Error(`${p.name} exited while waiting for ${what}`);
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const readJson = (path) => {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return null;
  }
};

test("phone: register, pair a real agent, see it online, lock its screen", { timeout: 120_000 }, async (t) => {
  for (const bin of ["tether-server", "tether-agent", "tether-helper"]) {
    assert.ok(
      existsSync(join(BIN, bin)),
      `${join(BIN, bin)} is missing: run 'cargo build -p tether-server -p tether-agent -p tether-helper' or set TETHER_BIN_DIR`,
    );
  }
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: 'apt-get install chromium' or set CHROMIUM`);
  const tmp = mkdtempSync(join(tmpdir(), "tether-web-e2e-"));
  const procs = [];
  let browser = null;
  t.after(async () => {
    await browser?.close().catch(() => undefined);
    for (const p of procs) p.stop();
    rmSync(tmp, { recursive: true, force: true });
  });
  try {
    // The real server, on a fresh data dir and a free port.
    const dataDir = join(tmp, "server");
    mkdirSync(dataDir);
    const readyFile = join(dataDir, "ready.json");
    // Telemetry every second, so the chart moves within the test; a 5 s heartbeat and a
    // 10 s presence TTL, so an agent that vanishes without closing goes offline quickly.
    const server = new Proc("tether-server", ["--data-dir", dataDir, "--listen", "127.0.0.1:0", "--ready-file", readyFile], {
      TETHER_SERVER_GATEWAY__TELEMETRY_INTERVAL_S: "1",
      TETHER_SERVER_GATEWAY__HEARTBEAT_INTERVAL_S: "5",
      TETHER_SERVER_GATEWAY__PRESENCE_TTL_S: "10",
    });
    procs.push(server);
    const ready = await waitFor("the server's ready file", () => readJson(readyFile), 60_000, procs);
    const url = ready.public_url;
    const caFile = join(tmp, "ca.pem");
    writeFileSync(caFile, ready.ca_pem);

    // The browser. The server's certificate is issued by its own self-signed CA, which
    // this throwaway browser profile does not trust: the context ignores HTTPS errors.
    // Acceptable for a test (the agent below does check the CA); a real phone installs
    // the CA from /ca.pem or the server uses a public certificate.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
    const context = await browser.newContext({
      viewport: PHONE,
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 1,
      ignoreHTTPSErrors: true,
      colorScheme: "light",
    });
    context.setDefaultTimeout(30_000);
    const page = await context.newPage();
    const consoleErrors = [];
    context.on("console", (m) => m.type() === "error" && consoleErrors.push(`${m.text()} (${m.location().url})`));
    context.on("weberror", (e) => consoleErrors.push(String(e.error())));
    context.on("response", (r) => r.status() >= 400 && consoleErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`));
    t.after(() => consoleErrors.length && console.error("browser console errors:\n" + consoleErrors.join("\n")));

    // Register through the app's form: the browser makes the owner key.
    const email = "ada@lab.example"; // a fresh server each run
    await page.goto(url + "/#/register");
    await page.getByRole("heading", { name: "Create an account" }).waitFor();
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, "phone-register.png") });
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

    // A real agent, with a real helper (recording executor) for the command.
    const agentState = join(tmp, "agent");
    const helperDir = join(tmp, "helper");
    mkdirSync(join(helperDir, "state"), { recursive: true });
    const helperSocket = join(helperDir, "helper.sock");
    const helperKey = join(helperDir, "state", "helper.pub");
    const record = join(helperDir, "recorded.jsonl");
    const deviceName = "lab-pc-1";
    const agentArgs = [
      "run",
      "--server", url,
      "--ca-file", caFile,
      "--state-dir", agentState,
      "--device-name", deviceName,
      "--helper-socket", helperSocket,
      "--helper-key-file", helperKey,
    ];
    let agent = new Proc("tether-agent", agentArgs);
    procs.push(agent);
    const agentPub = join(agentState, "agent.pub");
    await waitFor("the agent's agent.pub", () => existsSync(agentPub), 60_000, procs);
    const helper = new Proc("tether-helper", [
      "run",
      "--socket", helperSocket,
      "--state-dir", join(helperDir, "state"),
      "--agent-key-file", agentPub,
      "--agent-exe", join(BIN, "tether-agent"),
      "--executor", "recording",
      "--record", record,
    ]);
    procs.push(helper);
    await waitFor("the helper's socket and key", () => existsSync(helperSocket) && existsSync(helperKey), 30_000, procs);

    // Pair: open the agent's pair URL (what its QR code holds) in the same browser and
    // confirm with the account's credentials; the page shows the matching number, which
    // the agent prints too.
    const pairing = await waitFor("the agent's pairing.json", () => readJson(join(agentState, "pairing.json")), 60_000, procs);
    assert.match(pairing.pair_url, /\/pair#token=/);
    const pairPage = await context.newPage();
    await pairPage.goto(pairing.pair_url);
    await pairPage.getByLabel("Email").fill(email);
    await pairPage.getByLabel("Password").fill(PASSWORD);
    await pairPage.getByRole("button", { name: "Sign in and pair" }).click();
    await pairPage.locator("#done").waitFor();
    assert.equal(await pairPage.locator("#name").textContent(), deviceName);
    const code = (await pairPage.locator("#code").textContent()).trim();
    assert.match(code, /\S/);
    await pairPage.screenshot({ path: join(SHOTS, "phone-pair.png") });
    await waitFor(`the agent to print the pairing code ${code}`, () => agent.out.includes(code), 60_000, procs);
    await pairPage.close();

    // The app's list shows the new PC (the list loads devices when it opens, so reload:
    // the tab's session survives a reload) and flips it online live when the agent's
    // session comes up.
    await page.reload();
    const row = page.locator("a.row", { hasText: deviceName });
    await row.waitFor();
    await waitFor("the agent's session", () => agent.out.includes("connected: session"), 60_000, procs);
    await row.locator(".pill.on", { hasText: "online" }).waitFor();
    await page.locator(".live-dot.open").waitFor();

    // Live presence, without reloading: the agent stops (offline), starts again on the
    // same state dir (online).
    agent.stop();
    await waitFor("the agent to exit", () => agent.exited !== null, 30_000, []);
    procs.splice(procs.indexOf(agent), 1);
    await row.locator(".pill.off", { hasText: "offline" }).waitFor();
    agent = new Proc("tether-agent", agentArgs);
    procs.push(agent);
    await row.locator(".pill.on", { hasText: "online" }).waitFor();
    await page.screenshot({ path: join(SHOTS, "phone-devices.png") });

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
    await page.screenshot({ path: join(SHOTS, "phone-device.png") });

    // Lock screen: signed in the browser with the owner key, run through agent and helper.
    await page.getByRole("button", { name: "Lock screen" }).click();
    const dialog = page.locator("dialog[open]");
    await dialog.waitFor();
    await dialog.locator("p.state.completed", { hasText: "Done" }).waitFor({ timeout: 60_000 });
    const idText = await dialog.getByText(/^command /).textContent();
    const commandId = /command (\S+)/.exec(idText)[1];
    await page.screenshot({ path: join(SHOTS, "phone-lock-result.png") });

    // The helper recorded exactly that command, once.
    const runs = readFileSync(record, "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l));
    assert.equal(runs.length, 1, JSON.stringify(runs));
    assert.equal(runs[0].opcode, "EXEC_LOCK_SCREEN");
    assert.equal(runs[0].command_message_id, commandId);

    // The same screens on a wide screen (1280 × 800, a desktop browser): a new context,
    // so a new sign-in (the session is per tab).
    const wide = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true, colorScheme: "light" });
    wide.setDefaultTimeout(30_000);
    wide.on("console", (m) => m.type() === "error" && consoleErrors.push(`${m.text()} (${m.location().url})`));
    wide.on("response", (r) => r.status() >= 400 && consoleErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`));
    const desk = await wide.newPage();
    await desk.goto(url + "/#/login");
    await desk.getByLabel("Email").fill(email);
    await desk.getByLabel("Password").fill(PASSWORD);
    await desk.getByRole("button", { name: "Sign in" }).click();
    const deskRow = desk.locator("a.row", { hasText: deviceName });
    await deskRow.locator(".pill.on", { hasText: "online" }).waitFor();
    await desk.locator(".live-dot.open").waitFor();
    await desk.screenshot({ path: join(SHOTS, "wide-devices.png") });
    await deskRow.click();
    await desk.locator("dl.facts dd", { hasText: "%" }).first().waitFor();
    await desk.waitForTimeout(2_500); // a few samples: a line in the chart
    await desk.screenshot({ path: join(SHOTS, "wide-device.png") });
    await wide.close();

    // Nothing failed in the browser on the way (the app has no favicon yet).
    assert.deepEqual(consoleErrors.filter((e) => !e.includes("/favicon.ico")), []);
  } catch (e) {
    for (const p of procs) console.error(p.dump());
    throw e;
  }
});
