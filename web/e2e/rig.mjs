// The browser tests' rig: the real tether-server, tether-agent and tether-helper
// (recording executor) binaries on a fresh temp dir and a free port, and Debian's Chromium
// through playwright-core (which never downloads a browser).
//
//   TETHER_BIN_DIR   the binaries (default ../target/debug, relative to web/)
//   CHROMIUM         the browser (default /usr/bin/chromium)
//   TETHER_WEB_DIR   serve the app from this directory (a `vite build --outDir …`) instead
//                    of the copy embedded in the server: front-end development only

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = resolve(here, "..", process.env.TETHER_BIN_DIR || "../target/debug");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const SHOTS = resolve(here, "../../docs/screenshots");
export const PHONE = { width: 360, height: 780 };
export const WIDE = { width: 1280, height: 800 };
export const PASSWORD = "correct horse battery staple";

/** A child process whose output is kept, to print when the test fails. */
export class Proc {
  constructor(name, args, env = {}) {
    this.name = name;
    this.out = "";
    this.child = spawn(join(BIN, name), args, {
      env: { ...process.env, TETHER_LOG: "info,sqlx=warn", ...env },
      stdio: ["pipe", "pipe", "pipe"],
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
export async function waitFor(what, check, ms, procs = []) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    for (const p of procs) if (p.exited !== null) throw new Error(`${p.name} exited while waiting for ${what}`);
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const readJson = (path) => {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return null;
  }
};

/** The lines of a JSONL file (the helper's record), parsed; [] if it does not exist. */
export const readJsonl = (path) =>
  existsSync(path)
    ? readFileSync(path, "utf8")
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l))
    : [];

/**
 * One test's world: a temp dir, its processes and browser, torn down by `t.after`.
 * Call `rig.fail(e)` from the test's catch to print every process's output.
 */
export class Rig {
  constructor(t) {
    for (const bin of ["tether-server", "tether-agent", "tether-helper"]) {
      assert.ok(
        existsSync(join(BIN, bin)),
        `${join(BIN, bin)} is missing: run 'cargo build -p tether-server -p tether-agent -p tether-helper' or set TETHER_BIN_DIR`,
      );
    }
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: 'apt-get install chromium' or set CHROMIUM`);
    this.tmp = mkdtempSync(join(tmpdir(), "tether-web-e2e-"));
    this.procs = [];
    this.browser = null;
    /** Everything that went wrong in any page: console errors, page errors, HTTP ≥ 400. */
    this.browserErrors = [];
    t.after(async () => {
      await this.browser?.close().catch(() => undefined);
      for (const p of this.procs) p.stop();
      rmSync(this.tmp, { recursive: true, force: true });
    });
    t.after(() => this.browserErrors.length && console.error("browser errors:\n" + this.browserErrors.join("\n")));
    mkdirSync(SHOTS, { recursive: true });
  }

  spawn(name, args, env) {
    const p = new Proc(name, args, env);
    this.procs.push(p);
    return p;
  }

  /** Stops a process and waits for it to exit. */
  async stop(p) {
    p.stop();
    await waitFor(`${p.name} to exit`, () => p.exited !== null, 30_000);
    this.procs.splice(this.procs.indexOf(p), 1);
  }

  fail(e) {
    for (const p of this.procs) console.error(p.dump());
    throw e;
  }

  /**
   * The real server on a fresh data dir and a free port. Telemetry every second (charts
   * move within a test), a 5 s heartbeat and a 10 s presence TTL (a vanished agent goes
   * offline quickly). Returns { url, caFile, dataDir, server }.
   */
  async startServer(env = {}) {
    const dataDir = join(this.tmp, "server");
    mkdirSync(dataDir, { recursive: true });
    const readyFile = join(dataDir, "ready.json");
    const webDir = process.env.TETHER_WEB_DIR ? { TETHER_SERVER_WEB_DIR: resolve(process.env.TETHER_WEB_DIR) } : {};
    const server = this.spawn("tether-server", ["--data-dir", dataDir, "--listen", "127.0.0.1:0", "--ready-file", readyFile], {
      TETHER_SERVER_GATEWAY__TELEMETRY_INTERVAL_S: "1",
      TETHER_SERVER_GATEWAY__HEARTBEAT_INTERVAL_S: "5",
      TETHER_SERVER_GATEWAY__PRESENCE_TTL_S: "10",
      ...webDir,
      ...env,
    });
    const ready = await waitFor("the server's ready file", () => readJson(readyFile), 60_000, this.procs);
    const caFile = join(this.tmp, "ca.pem");
    writeFileSync(caFile, ready.ca_pem);
    this.server = { url: ready.public_url, caFile, dataDir, proc: server };
    return this.server;
  }

  /** Runs `tether-server <args>` on the server's data dir (e.g. `create-admin`), feeding `stdin`. */
  async serverCommand(args, stdin = "") {
    const p = new Proc("tether-server", ["--data-dir", this.server.dataDir, ...args]);
    p.child.stdin.end(stdin);
    await waitFor(`tether-server ${args.join(" ")}`, () => p.exited !== null, 60_000);
    assert.equal(p.exited, "exit 0", p.dump());
    return p.out;
  }

  /**
   * A real PC: an agent and its helper (recording executor) on their own state dirs.
   * Returns { agent, helper, record, state, name, pairing(), restartAgent(), stopAgent() }.
   */
  async startPc(name = "lab-pc-1") {
    const base = join(this.tmp, `pc-${name}`);
    const agentState = join(base, "agent");
    const helperDir = join(base, "helper");
    mkdirSync(join(helperDir, "state"), { recursive: true });
    const helperSocket = join(helperDir, "helper.sock");
    const helperKey = join(helperDir, "state", "helper.pub");
    const record = join(helperDir, "recorded.jsonl");
    const agentArgs = [
      "run",
      "--server", this.server.url,
      "--ca-file", this.server.caFile,
      "--state-dir", agentState,
      "--device-name", name,
      "--helper-socket", helperSocket,
      "--helper-key-file", helperKey,
    ];
    const pc = { name, record, state: agentState, agent: this.spawn("tether-agent", agentArgs) };
    const agentPub = join(agentState, "agent.pub");
    await waitFor("the agent's agent.pub", () => existsSync(agentPub), 60_000, this.procs);
    pc.helper = this.spawn("tether-helper", [
      "run",
      "--socket", helperSocket,
      "--state-dir", join(helperDir, "state"),
      "--agent-key-file", agentPub,
      "--agent-exe", join(BIN, "tether-agent"),
      "--executor", "recording",
      "--record", record,
    ]);
    await waitFor("the helper's socket and key", () => existsSync(helperSocket) && existsSync(helperKey), 30_000, this.procs);
    /** The agent's pairing.json ({ pair_url, … }) once it has asked to pair. */
    pc.pairing = () => waitFor("the agent's pairing.json", () => readJson(join(agentState, "pairing.json")), 60_000, this.procs);
    pc.stopAgent = () => this.stop(pc.agent);
    pc.restartAgent = () => {
      pc.agent = this.spawn("tether-agent", agentArgs);
      return pc.agent;
    };
    /** What the helper recorded: one object per executed request. */
    pc.runs = () => readJsonl(record);
    return pc;
  }

  /**
   * Chromium, headless. The server's certificate is issued by its own CA, which this
   * throwaway profile does not trust, so contexts ignore HTTPS errors (the agent does
   * check the CA); a real phone installs the CA from /ca.pem or the server uses a
   * public certificate. `--ignore-certificate-errors` extends that to the service
   * worker's script, which Chromium otherwise refuses to register over an untrusted
   * certificate (a phone that trusts the server's CA registers it).
   */
  async launch(args = []) {
    this.browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--ignore-certificate-errors", ...args],
    });
    return this.browser;
  }

  /** A browser context (phone by default) whose errors are collected in `browserErrors`. */
  async context({ wide = false, colorScheme = "light" } = {}) {
    const context = await this.browser.newContext({
      viewport: wide ? WIDE : PHONE,
      ...(wide ? {} : { isMobile: true, hasTouch: true }),
      deviceScaleFactor: 1,
      ignoreHTTPSErrors: true,
      colorScheme,
    });
    context.setDefaultTimeout(30_000);
    context.on("console", (m) => m.type() === "error" && this.browserErrors.push(`${m.text()} (${m.location().url})`));
    context.on("weberror", (e) => this.browserErrors.push(String(e.error())));
    context.on("response", (r) => r.status() >= 400 && this.browserErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`));
    return context;
  }

  /** Saves a screenshot as docs/screenshots/<name>.png. */
  shot(page, name) {
    return page.screenshot({ path: join(SHOTS, `${name}.png`) });
  }
}
