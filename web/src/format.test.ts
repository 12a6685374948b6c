import { describe, expect, it } from "vitest";
import { formatAgo, formatBytes, formatPct, formatState, isTerminal, memPct } from "./format";
import { parseHash } from "./router";
import { SseParser } from "./sse";

describe("formatting", () => {
  it("bytes", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(909.5753947429523)).toBe("910 B"); // network rates are fractional
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(17179869184)).toBe("16 GiB");
    expect(formatBytes(-1)).toBe("–");
  });
  it("percent", () => {
    expect(formatPct(12.345)).toBe("12.3 %");
    expect(formatPct(null)).toBe("–");
    expect(memPct(6442450944, 17179869184)).toBe(37.5);
    expect(memPct(1, 0)).toBeNull();
  });
  it("ago", () => {
    const now = 1_764_115_200_000;
    expect(formatAgo(now - 10_000, now)).toBe("just now");
    expect(formatAgo(now - 5 * 60_000, now)).toBe("5 min ago");
    expect(formatAgo(now - 3 * 3600_000, now)).toBe("3 h ago");
    expect(formatAgo(now - 3 * 86400_000, now)).toBe("3 d ago");
  });
  it("command states", () => {
    expect(formatState("completed")).toBe("Done");
    expect(formatState("something_new")).toBe("something_new");
    expect(isTerminal("completed")).toBe(true);
    expect(isTerminal("executing")).toBe(false);
  });
});

describe("routing", () => {
  it("parses hashes", () => {
    expect(parseHash("")).toMatchObject({ name: "devices" });
    expect(parseHash("#/device/dev_01%2FX")).toMatchObject({ name: "device", arg: "dev_01/X" });
    expect(parseHash("#/login?next=/device/a").query.get("next")).toBe("/device/a");
  });
});

describe("SSE parsing", () => {
  it("splits events across chunks and line endings, skipping comments", () => {
    const p = new SseParser();
    expect(p.push(": keep-alive\n\nevent: presence\ndata: {\"a\"")).toEqual([]);
    expect(p.push(":1}\r")).toEqual([]);
    expect(p.push("\n\r\nevent: telemetry\ndata: x\ndata: y\n\n")).toEqual([
      { event: "presence", data: '{"a":1}' },
      { event: "telemetry", data: "x\ny" },
    ]);
    expect(p.push("data:no-space\n\n")).toEqual([{ event: "message", data: "no-space" }]);
  });
});
