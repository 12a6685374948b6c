// End-to-end, lab staff on a wide screen (issue 7, flow 10), in Debian's Chromium against
// the real tether-server, two real tether-agents and their tether-helpers (rig.mjs).
//
//   cd web && node --test e2e/staff.test.mjs
//
// Two students register through the app (each browser makes its owner key) and pair
// their own PC through the app's Pair screen (the QR code's URL); each sees only their
// own PC, and another student's device URL is "not found". An admin (made
// with `tether-server create-admin`) signs in at 1280 × 800 and sees both PCs in Fleet
// health, online / offline live; promotes a third user to auditor in Users (and is
// refused demoting the last admin, 409); saves a policy after a field-path validation
// error; asks for a dry run. Student A locks their PC's screen through the app; the
// admin sees it in the command timeline. The auditor signs in, filters the audit log by
// A's PC, downloads the CSV and JSON exports (real downloads: fetch with the token, Blob,
// <a download>) and finds that command in both; the auditor has no role, policy, approve
// or acknowledge controls. Screenshots: docs/screenshots/wide-staff-*.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { pairInApp, registerInApp, signIn } from "./flows.mjs";
import { PASSWORD, PHONE, Rig, waitFor } from "./rig.mjs";

/** A JSON call to the server from node, checking its certificate against the server's CA. */
function apiCall(server, method, path, body, token) {
  const u = new URL(path, server.url);
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      {
        method,
        ca: readFileSync(server.caFile),
        headers: {
          Accept: "application/json",
          ...(data ? { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) } : {}),
          ...(token ? { Authorization: `Bearer ${token}` } : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => {
          if (res.statusCode >= 400) return reject(new Error(`${method} ${path}: HTTP ${res.statusCode} ${text}`));
          resolve(text ? JSON.parse(text) : undefined);
        });
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

/** The id of the one PC `email` owns (the API, with the user's own token). */
async function ownDeviceId(server, email) {
  const login = await apiCall(server, "POST", "/api/login", { email, password: PASSWORD });
  const devices = await apiCall(server, "GET", "/api/devices", undefined, login.access_token);
  assert.equal(devices.length, 1, JSON.stringify(devices));
  return devices[0].id;
}

async function signInWide(page, url, email) {
  await page.goto(url + "/#/login");
  await signIn(page, email);
  await page.getByRole("heading", { name: "Your PCs" }).waitFor();
}

test("staff: fleet, roles, policy, timeline and audit exports at 1280x800", { timeout: 300_000 }, async (t) => {
  const rig = new Rig(t);
  const procs = rig.procs;
  try {
    // An offline alert 3 s after a PC's last sign of life, checked every second.
    const server = await rig.startServer({
      TETHER_SERVER_ALERTS__OFFLINE_AFTER_S: "3",
      TETHER_SERVER_ALERTS__OFFLINE_CHECK_S: "1",
    });
    const { url } = server;
    await rig.launch();

    const A = "ada@lab.example";
    const B = "bob@lab.example";
    const C = "cyd@lab.example";
    const ADMIN = "root@lab.example";

    // Two students register through the app (their browsers make their owner keys).
    const ctxA = await rig.context();
    const pageA = await ctxA.newPage();
    await registerInApp(pageA, url, A);
    const ctxB = await rig.context();
    const pageB = await ctxB.newPage();
    await registerInApp(pageB, url, B);
    // A third user, to become an auditor; and the admin, from the server's CLI.
    await apiCall(server, "POST", "/api/register", { email: C, password: PASSWORD });
    await rig.serverCommand(["create-admin", "--email", ADMIN], PASSWORD + "\n");

    // Each pairs their own real PC through the app's Pair screen (the QR code's URL).
    const pcA = await rig.startPc("lab-pc-a");
    const pcB = await rig.startPc("lab-pc-b");
    await (await pairInApp(rig, ctxA, pcA, A)).pairPage.close();
    await (await pairInApp(rig, ctxB, pcB, B)).pairPage.close();
    const devA = await ownDeviceId(server, A);
    const devB = await ownDeviceId(server, B);
    await waitFor("both agents' sessions", () => pcA.agent.out.includes("connected: session") && pcB.agent.out.includes("connected: session"), 60_000, procs);

    // Student A sees only their own PC; B's device URL is not found; no staff anything.
    await pageA.reload();
    await pageA.locator("a.row", { hasText: "lab-pc-a" }).locator(".pill.on").waitFor();
    assert.equal(await pageA.locator("a.row").count(), 1);
    assert.equal(await pageA.locator("a.row", { hasText: "lab-pc-b" }).count(), 0);
    assert.equal(await pageA.locator("nav[aria-label=Staff]").count(), 0);
    await pageA.goto(url + "/#/device/" + encodeURIComponent(devB));
    await pageA.getByRole("alert").filter({ hasText: "NOT_FOUND" }).first().waitFor();
    await pageA.getByText("no such device").first().waitFor();
    await pageA.goto(url + "/#/staff/fleet");
    await pageA.getByRole("heading", { name: "Not available" }).waitFor();
    assert.equal(await pageA.locator("nav[aria-label=Staff]").count(), 0);
    await pageB.reload();
    await pageB.locator("a.row", { hasText: "lab-pc-b" }).waitFor();
    assert.equal(await pageB.locator("a.row").count(), 1);

    // The admin, on a wide screen: the owner list leads to the dashboard.
    const ctxAdmin = await rig.context({ wide: true });
    const admin = await ctxAdmin.newPage();
    await signInWide(admin, url, ADMIN);
    await admin.getByRole("link", { name: "Staff dashboard ›" }).click();
    await admin.getByRole("heading", { name: "Fleet health" }).waitFor();
    const nav = admin.locator("nav[aria-label=Staff]");
    for (const s of ["Fleet health", "Command timeline", "Alerts", "Approvals", "Users and roles", "Policy", "Audit log"]) {
      await nav.getByRole("link", { name: s }).waitFor();
    }
    // The sidebar sits beside the content at this width.
    const navBox = await nav.boundingBox();
    const mainBox = await admin.locator("main.staff-main").boundingBox();
    assert.ok(navBox.x + navBox.width <= mainBox.x + 1 && navBox.height > 300, JSON.stringify({ navBox, mainBox }));
    const rowA = admin.locator("table.fleet tr", { hasText: "lab-pc-a" });
    const rowB = admin.locator("table.fleet tr", { hasText: "lab-pc-b" });
    await rowA.locator(".pill.on").waitFor();
    await rowB.locator(".pill.on").waitFor();
    await rowA.getByText(A).waitFor();
    await rowB.getByText(B).waitFor();
    await admin.locator(".staff-top .live-dot.open").waitFor();
    await rig.shot(admin, "wide-staff-fleet");

    // Live: B's agent stops, its row turns offline without a reload; the offline alert
    // comes into the feed.
    await pcB.stopAgent();
    await rowB.locator(".pill.off", { hasText: "offline" }).waitFor();
    await rowA.locator(".pill.on").waitFor();
    await nav.getByRole("link", { name: "Alerts" }).click();
    const offlineB = admin.locator(".alert-item", { hasText: "lab-pc-b" }).filter({ has: admin.locator("strong", { hasText: /^offline$/ }) });
    await offlineB.waitFor({ timeout: 30_000 });
    await offlineB.getByRole("button", { name: "Acknowledge" }).waitFor();

    // Users and roles: promote C to auditor (with a confirmation) ...
    await nav.getByRole("link", { name: "Users and roles" }).click();
    const rowC = admin.locator(`tr[data-user="${C}"]`);
    await rowC.getByLabel(`New role for ${C}`).selectOption("auditor");
    await rowC.getByRole("button", { name: "Change role" }).click();
    const dialog = admin.locator("dialog[open]");
    await dialog.getByText("student → auditor").waitFor();
    await dialog.getByRole("button", { name: "Make auditor" }).click();
    await admin.getByRole("status").filter({ hasText: `${C} is now an auditor.` }).waitFor();
    await rowC.locator(".role-badge.auditor").waitFor();
    // ... and the last admin cannot be demoted: the server's 409, explained.
    const rowAdmin = admin.locator(`tr[data-user="${ADMIN}"]`);
    await rowAdmin.getByLabel(`New role for ${ADMIN}`).selectOption("student");
    await rowAdmin.getByRole("button", { name: "Change role" }).click();
    await dialog.getByText("This is your own account").waitFor();
    await dialog.getByRole("button", { name: "Make student" }).click();
    await dialog.getByRole("alert").filter({ hasText: "The last admin cannot be demoted" }).waitFor();
    await dialog.getByText("this user is the last admin: make another user an admin first").waitFor();
    await rig.shot(admin, "wide-staff-users");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await rowAdmin.getByLabel(`New role for ${ADMIN}`).selectOption("admin");

    // The policy editor: a bad field is refused with its path; a good policy saves as
    // version 1; a dry run decides with it.
    await nav.getByRole("link", { name: "Policy" }).click();
    await admin.getByTestId("policy-version").filter({ hasText: "0" }).waitFor();
    const editor = admin.getByLabel("Policy bundle (JSON)");
    const rule = (method) =>
      JSON.stringify(
        { format: 1, default: "allow", rules: [{ id: "no-student-dumps", effect: "deny", match: { roles: ["student"], methods: [method] } }] },
        null,
        2,
      );
    await editor.fill(rule("format_disk"));
    await admin.getByRole("button", { name: "Save policy" }).click();
    await dialog.getByRole("button", { name: "Save", exact: true }).click();
    const refusal = admin.getByRole("alert").filter({ hasText: "The server refused the policy" });
    await refusal.waitFor();
    assert.equal(await refusal.locator("code.field-path").textContent(), "rules[0].match.methods[0]");
    await editor.fill(rule("memory_dump"));
    await admin.getByRole("button", { name: "Save policy" }).click();
    await dialog.getByRole("button", { name: "Save", exact: true }).click();
    await admin.getByRole("status").filter({ hasText: "Saved as version 1." }).waitFor();
    await admin.getByTestId("policy-version").filter({ hasText: "1" }).waitFor();
    const dry = admin.locator("form.dry-run");
    await dry.getByLabel("PC").selectOption(devA);
    await dry.getByLabel("Method").selectOption("memory_dump");
    await dry.getByLabel("As user").selectOption({ label: `${A} (student)` });
    await dry.getByRole("button", { name: "Dry run" }).click();
    await dry.locator(".decision.deny", { hasText: "no-student-dumps" }).waitFor();
    await admin.evaluate(() => window.scrollTo(0, 0));
    await rig.shot(admin, "wide-staff-policy");

    // Student A locks their PC's screen through the app (signed with A's browser key).
    await pageA.goto(url + "/#/devices");
    await pageA.locator("a.row", { hasText: "lab-pc-a" }).click();
    const lock = pageA.getByRole("button", { name: "Lock screen" });
    await waitFor("the Lock screen button to be enabled", () => lock.isEnabled(), 30_000, procs);
    await lock.click();
    const result = pageA.locator("dialog[open]");
    await result.getByText("Done").first().waitFor({ timeout: 60_000 });
    const commandId = /command ([0-9a-f-]{36})/.exec(await result.textContent())?.[1];
    assert.ok(commandId, await result.textContent());
    const runs = pcA.runs();
    assert.equal(runs.length, 1, JSON.stringify(runs));
    assert.equal(runs[0].command_message_id, commandId);

    // The admin's command timeline of A's PC shows it, done, with its steps.
    await nav.getByRole("link", { name: "Fleet health" }).click();
    await rowA.getByRole("link", { name: "Timeline" }).click();
    const item = admin.locator(`li.tl-item[data-command="${commandId}"]`);
    await item.locator(".state-pill.completed").waitFor();
    await item.locator("ol.steps").getByText("Done").waitFor();
    await item.getByText(A).waitFor();
    await rig.shot(admin, "wide-staff-timeline");

    // The auditor signs in (the new role applies at sign-in), opens the audit log and
    // filters by A's PC.
    const ctxAud = await rig.context({ wide: true, colorScheme: "dark" }); // the auditor prefers dark mode
    const aud = await ctxAud.newPage();
    await signInWide(aud, url, C);
    await aud.getByRole("link", { name: "Staff dashboard ›" }).click();
    const audNav = aud.locator("nav[aria-label=Staff]");
    await audNav.getByText("Auditor: read-only").waitFor();
    await audNav.getByRole("link", { name: "Audit log" }).click();
    await aud.getByRole("heading", { name: "Audit log" }).waitFor();
    const filters = aud.locator("form.filters");
    await filters.getByLabel("PC").selectOption(devA);
    await filters.getByRole("button", { name: "Apply filters" }).click();
    await aud.waitForURL((u) => u.hash.includes("device=" + encodeURIComponent(devA)));
    const events = aud.locator("table.audit tbody tr");
    // The filtered page replaces the unfiltered one: only A's PC's events.
    await waitFor(
      "the audit log filtered by A's PC",
      async () => {
        const rows = await events.allTextContents();
        return rows.some((r) => r.includes("command.completed")) && rows.every((r) => !r.includes("lab-pc-b"));
      },
      30_000,
      procs,
    );

    // Both exports download (a fetch with the token, a Blob, an <a download>).
    const download = async (label) => {
      const [d] = await Promise.all([aud.waitForEvent("download"), aud.getByRole("button", { name: label }).click()]);
      const path = await d.path();
      return { name: d.suggestedFilename(), text: readFileSync(path, "utf8") };
    };
    const csv = await download("Export CSV");
    assert.match(csv.name, /\.csv$/);
    assert.ok(csv.text.startsWith("seq,at,actor,action,target,outcome,trace_id,detail"), csv.text.slice(0, 200));
    assert.ok(csv.text.includes(commandId), "the CSV export holds the command id");
    assert.match(csv.text, /,command\.(queued|completed)/);
    assert.doesNotMatch(csv.text, new RegExp(devB));
    await aud.getByRole("status").filter({ hasText: csv.name }).waitFor();
    const json = await download("Export JSON");
    assert.match(json.name, /\.json$/);
    const doc = JSON.parse(json.text);
    assert.equal(doc.filters.device, devA);
    // Its trail: the policy decision, then each state as `command.<state>`.
    const mine = doc.events.filter((e) => e.detail?.command_id === commandId).map((e) => e.action);
    assert.ok(mine.includes("command.queued") && mine.includes("command.completed"), JSON.stringify(mine));
    assert.ok(mine.filter((a) => a.startsWith("command.")).length >= 3, JSON.stringify(mine));
    await aud.getByRole("status").filter({ hasText: json.name }).waitFor();
    await rig.shot(aud, "wide-staff-audit");

    // The auditor changes nothing: no role, policy, approve or acknowledge controls.
    await audNav.getByRole("link", { name: "Users and roles" }).click();
    await aud.locator(`tr[data-user="${C}"] .role-badge.auditor`).waitFor();
    await aud.getByText("Read-only: auditors can look at users").waitFor();
    assert.equal(await aud.getByRole("button", { name: "Change role" }).count(), 0);
    assert.equal(await aud.locator("table.users select").count(), 0);
    await audNav.getByRole("link", { name: "Policy" }).click();
    await aud.getByTestId("policy-version").filter({ hasText: "1" }).waitFor();
    assert.equal(await aud.getByRole("button", { name: "Save policy" }).count(), 0);
    assert.equal(await aud.getByLabel("Policy bundle (JSON)").getAttribute("readonly"), "");
    assert.equal(await aud.locator("form.dry-run").count(), 0);
    await audNav.getByRole("link", { name: "Approvals" }).click();
    await aud.getByText("Read-only: auditors can look at pending PCs").waitFor();
    assert.equal(await aud.getByRole("button", { name: "Approve" }).count(), 0);
    await audNav.getByRole("link", { name: "Alerts" }).click();
    await aud.locator(".alert-item", { hasText: "lab-pc-b" }).first().waitFor();
    assert.equal(await aud.getByRole("button", { name: "Acknowledge" }).count(), 0);

    // On a phone the same dashboard puts its navigation above the content.
    await aud.setViewportSize(PHONE);
    await audNav.getByRole("link", { name: "Audit log" }).click();
    await aud.getByRole("button", { name: "Export CSV" }).waitFor();
    const phoneNav = await audNav.boundingBox();
    const phoneMain = await aud.locator("main.staff-main").boundingBox();
    assert.ok(phoneNav.y + phoneNav.height <= phoneMain.y + 1 && phoneMain.width >= PHONE.width - 1, JSON.stringify({ phoneNav, phoneMain }));
    assert.ok(await aud.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "no sideways scrolling of the page on a phone");

    // What failed in the browsers was expected: B's device URL from A's session (404s),
    // the last-admin refusal (409), the invalid policy (422). Nothing else.
    const expected = [
      (e) => e.includes("/favicon.ico"),
      (e) => e.includes(encodeURIComponent(devB)) || e.includes(devB),
      (e) => /^409 PUT .*\/api\/users\/usr_[^/]+\/role$/.test(e),
      (e) => /^422 PUT .*\/api\/policy$/.test(e),
      (e) => /status of 409 .*\/api\/users\/usr_[^/]+\/role\)$/.test(e),
      (e) => /status of 422 .*\/api\/policy\)$/.test(e),
    ];
    assert.deepEqual(rig.browserErrors.filter((e) => !expected.some((f) => f(e))), []);
  } catch (e) {
    rig.fail(e);
  }
});
