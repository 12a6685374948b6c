import { describe, expect, it } from "vitest";
import {
  abilities,
  auditPath,
  checkPolicyText,
  cleanFilters,
  currentCursor,
  exportFallbackName,
  exportPath,
  filenameFromDisposition,
  filterParams,
  filtersFromParams,
  firstPage,
  formatUptime,
  localInputToMs,
  msToLocalInput,
  newerPage,
  olderPage,
  pageNumber,
  parseCsv,
  parsePolicyError,
  sameFilters,
  SCREENS,
  staffScreen,
  summarizeExport,
} from "./logic";

describe("role gating", () => {
  it("admins may do everything", () => {
    expect(abilities("admin")).toEqual({
      staff: true,
      changeRoles: true,
      editPolicy: true,
      approveDevices: true,
      ackAlerts: true,
      audit: true,
    });
  });
  it("auditors read and export, change nothing", () => {
    const a = abilities("auditor");
    expect(a.staff).toBe(true);
    expect(a.audit).toBe(true);
    expect(a.changeRoles || a.editPolicy || a.approveDevices || a.ackAlerts).toBe(false);
  });
  it("students and unknown roles get no staff dashboard at all", () => {
    for (const r of ["student", "", undefined, null, "Admin", "root"]) {
      expect(Object.values(abilities(r)).some(Boolean)).toBe(false);
    }
  });
  it("routes to a screen, fleet by default", () => {
    expect(staffScreen(undefined)).toEqual({ screen: "fleet" });
    expect(staffScreen("audit")).toEqual({ screen: "audit" });
    expect(staffScreen("timeline/dev_a/b")).toEqual({ screen: "timeline", arg: "dev_a/b" });
    expect(staffScreen("nope")).toEqual({ screen: "fleet" });
    expect(SCREENS.map((s) => s.id)).toContain("policy");
  });
});

describe("audit filters", () => {
  it("drop empty values and trim", () => {
    expect(cleanFilters({ actor: "  ", device: " dev_1 ", action: "", since: Number.NaN, until: 5.7 })).toEqual({
      device: "dev_1",
      until: 5,
    });
  });
  it("make the API's query string in a fixed order", () => {
    expect(auditPath({})).toBe("/api/audit");
    expect(auditPath({ until: 20, action: "command", actor: "usr_1", since: 10, outcome: "denied", device: "dev_1" })).toBe(
      "/api/audit?actor=usr_1&device=dev_1&action=command&outcome=denied&since=10&until=20",
    );
    expect(auditPath({ device: "dev 1&x" }, { before: 42, limit: 50 })).toBe("/api/audit?device=dev+1%26x&before=42&limit=50");
    expect(auditPath({}, { before: null, limit: 25 })).toBe("/api/audit?limit=25");
    expect(auditPath({}, { before: 0 })).toBe("/api/audit?before=0");
  });
  it("make the export's query string with the format first", () => {
    expect(exportPath("csv", {})).toBe("/api/audit/export?format=csv");
    expect(exportPath("json", { device: "dev_1", action: "command." })).toBe("/api/audit/export?format=json&device=dev_1&action=command.");
  });
  it("round-trip through the page's URL", () => {
    const f = { actor: "usr_1", device: "dev_1", action: "policy", outcome: "success", since: 1000, until: 2000 };
    expect(filtersFromParams(filterParams(f))).toEqual(f);
    expect(filtersFromParams(new URLSearchParams("since=abc&until=-5&bogus=1&device="))).toEqual({});
    expect(sameFilters({ device: "x " }, { device: "x", actor: "" })).toBe(true);
    expect(sameFilters({ device: "x" }, { device: "y" })).toBe(false);
  });
  it("convert datetime-local values", () => {
    const ms = localInputToMs("2025-03-04T05:06");
    expect(ms).toBe(new Date(2025, 2, 4, 5, 6).getTime());
    expect(msToLocalInput(ms)).toBe("2025-03-04T05:06");
    expect(localInputToMs("")).toBeUndefined();
    expect(localInputToMs("yesterday")).toBeUndefined();
    expect(msToLocalInput(undefined)).toBe("");
  });
  it("page newest first with a cursor stack", () => {
    let p = firstPage();
    expect(currentCursor(p)).toBeNull();
    expect(newerPage(p)).toBe(p);
    p = olderPage(p, 90);
    p = olderPage(p, 40);
    expect(currentCursor(p)).toBe(40);
    expect(pageNumber(p)).toBe(3);
    p = newerPage(p);
    expect(currentCursor(p)).toBe(90);
    expect(currentCursor(newerPage(p))).toBeNull();
  });
});

describe("exports", () => {
  it("name the file from Content-Disposition, safely", () => {
    expect(filenameFromDisposition('attachment; filename="tether-audit.csv"', "x")).toBe("tether-audit.csv");
    expect(filenameFromDisposition("attachment; filename=audit.json", "x")).toBe("audit.json");
    expect(filenameFromDisposition("attachment; filename=\"a.csv\"; filename*=UTF-8''b%C3%A9.csv", "x")).toBe("bé.csv");
    expect(filenameFromDisposition('attachment; filename="../../etc/passwd"', "x")).toBe("_.._etc_passwd");
    expect(filenameFromDisposition("attachment", "fallback.csv")).toBe("fallback.csv");
    expect(filenameFromDisposition(null, "fallback.csv")).toBe("fallback.csv");
    expect(exportFallbackName("csv", new Date(2025, 0, 2, 10, 30).getTime())).toBe("tether-audit-20250102-1030.csv");
  });
  it("parse CSV with quotes, commas and line breaks in fields", () => {
    const text = 'seq,at,detail\r\n1,2,"{""a"":1,""b"":""x\ny""}"\n2,3,\n';
    expect(parseCsv(text)).toEqual([
      ["seq", "at", "detail"],
      ["1", "2", '{"a":1,"b":"x\ny"}'],
      ["2", "3", ""],
    ]);
    expect(parseCsv("\ufeffa,b")).toEqual([["a", "b"]]);
    expect(parseCsv("")).toEqual([]);
  });
  it("summarize an export", () => {
    const csv = 'seq,at,actor,action,target,outcome,trace_id,detail\n5,1,usr_1,command.queued,dev_1,success,t,"{""command_id"":""c""}"\n';
    expect(summarizeExport("csv", csv)).toEqual({ events: 1 });
    expect(summarizeExport("csv", "nope\n")).toEqual({ problem: "unexpected CSV header: nope" });
    expect(summarizeExport("json", '{"exported_at":1,"filters":{},"events":[{},{}]}')).toEqual({ events: 2 });
    expect("problem" in summarizeExport("json", "{")).toBe(true);
    expect(summarizeExport("json", "{}")).toEqual({ problem: "the JSON export has no events array" });
  });
});

describe("policy", () => {
  it("splits the server's field path from the reason", () => {
    expect(parsePolicyError('policy rules[2].match.methods[0]: unknown variant "format_disk", expected one of …')).toEqual({
      path: "rules[2].match.methods[0]",
      reason: 'unknown variant "format_disk", expected one of …',
    });
    expect(parsePolicyError("policy format: must be 1")).toEqual({ path: "format", reason: "must be 1" });
    expect(parsePolicyError('invalid field rules[1].id: duplicate rule id "x" (also rules[0])')).toEqual({
      path: "rules[1].id",
      reason: 'duplicate rule id "x" (also rules[0])',
    });
    expect(parsePolicyError("something else")).toEqual({ reason: "something else" });
  });
  it("checks the editor's text", () => {
    expect(checkPolicyText('{"format": 1, "rules": []}')).toEqual({ ok: true, bundle: { format: 1, rules: [] } });
    // A missing comma: engines that give the position get a line and column.
    const bad = checkPolicyText('{\n  "format": 1\n  "rules": []\n}');
    expect(bad.ok).toBe(false);
    if (!bad.ok) {
      expect(bad.message).toMatch(/^Not valid JSON/);
      if (bad.line !== undefined) expect([bad.line, bad.column]).toEqual([3, 3]);
    }
    expect(checkPolicyText('{"rules": [,]}')).toMatchObject({ ok: false, message: expect.stringMatching(/^Not valid JSON/) });
    expect(checkPolicyText("[]")).toMatchObject({ ok: false });
    expect(checkPolicyText('{"format": 2}')).toMatchObject({ ok: false, message: expect.stringContaining("format") });
    expect(checkPolicyText('{"format": 1, "rules": {}}')).toMatchObject({ ok: false });
    expect(checkPolicyText('{"format": 1, "default": "maybe"}')).toMatchObject({ ok: false });
  });
});

describe("formatting", () => {
  it("uptime", () => {
    expect(formatUptime(59)).toBe("59 s");
    expect(formatUptime(60)).toBe("1 min");
    expect(formatUptime(7260)).toBe("2 h 1 min");
    expect(formatUptime(93784)).toBe("1 d 2 h");
    expect(formatUptime(null)).toBe("–");
    expect(formatUptime(-1)).toBe("–");
  });
});
