import { describe, expect, it } from "vitest";
import { applyAlert, sortAlerts } from "./alertsView";
import type { Alert } from "./ownerApi";

const a = (id: string, severity: string, created_at: number, acked_at: number | null = null): Alert => ({
  id,
  device_id: "dev_1",
  severity,
  kind: "disk_full",
  message: id,
  created_at,
  acked_at,
});

describe("alert banners", () => {
  it("put the most severe first, then the newest", () => {
    const l = sortAlerts([a("w1", "warning", 1), a("i", "info", 9), a("c", "critical", 2), a("w2", "warning", 5)]);
    expect(l.map((x) => x.id)).toEqual(["c", "w2", "w1", "i"]);
  });
  it("add a raised alert, replace a known one, drop an acknowledged one", () => {
    let l = [a("w1", "warning", 1)];
    l = applyAlert(l, a("c", "critical", 2));
    expect(l.map((x) => x.id)).toEqual(["c", "w1"]);
    l = applyAlert(l, { ...a("w1", "warning", 1), message: "again" });
    expect(l.find((x) => x.id === "w1")?.message).toBe("again");
    l = applyAlert(l, a("c", "critical", 2, 3));
    expect(l.map((x) => x.id)).toEqual(["w1"]);
  });
});
