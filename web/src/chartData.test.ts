import { describe, expect, it } from "vitest";
import { addSample, netColumns, rollupColumns, sampleOf, timeRange, timeRangeOf, usageColumns, type Sample } from "./chartData";

const body = {
  collected_at: 1764115200000,
  cpu_pct: 12.5,
  disks: [
    { mount: "/", total_bytes: 1000, used_bytes: 250 },
    { mount: "/data", total_bytes: 2000, used_bytes: 1800 },
    { mount: "/empty", total_bytes: 0, used_bytes: 0 },
  ],
  mem_total_bytes: 16,
  mem_used_bytes: 4,
  net: { rx_bps: 1250, rx_total_bytes: 9, tx_bps: 310.5, tx_total_bytes: 1 },
};

describe("chart data", () => {
  it("reads a telemetry body: the fullest disk, memory percent, network rates", () => {
    const s = sampleOf(body, 0);
    expect(s).toMatchObject({ at: 1764115200000, cpu: 12.5, mem: 25, disk: 90, diskMount: "/data", rx: 1250, tx: 310.5 });
    expect(sampleOf({}, 7)).toMatchObject({ at: 7, cpu: null, mem: null, disk: null, rx: null });
  });

  it("adds samples in order, once each, keeping the newest", () => {
    const at = (t: number): Sample => ({ ...sampleOf(body, 0), at: t });
    let l: Sample[] = [];
    for (const t of [1000, 3000, 2000, 3000, 4000]) l = addSample(l, at(t), 3);
    expect(l.map((s) => s.at)).toEqual([2000, 3000, 4000]);
    expect(usageColumns(l).t).toEqual([2, 3, 4]);
    expect(netColumns(l).ys).toEqual([
      [1250, 1250, 1250],
      [310.5, 310.5, 310.5],
    ]);
  });

  it("turns rollups into columns of means, oldest first", () => {
    const c = rollupColumns(
      [
        { bucket_start: 7_200_000, metrics: { cpu_pct: { mean: 20 } } },
        { bucket_start: 3_600_000, metrics: { cpu_pct: { mean: 10 }, mem_used_pct: { mean: 50 } } },
      ],
      ["cpu_pct", "mem_used_pct"],
    );
    expect(c).toEqual({ t: [3600, 7200], ys: [[10, 20], [50, null]] });
  });

  it("gives one sample a real time range around it, not one around the epoch", () => {
    expect(timeRange(1_764_115_200, 1_764_115_200, 1_764_115_260)).toEqual([1_764_115_140, 1_764_115_260]);
    expect(timeRange(100, 500, 600)).toEqual([100, 500]);
    expect(timeRange(null, null, 600)).toEqual([540, 600]);
    expect(timeRange(100, 100, 600, 1800)).toEqual([-1700, 1900]);
  });

  it("takes the range from the data, not from uPlot's widened min and max", () => {
    // One hourly bucket: an hour's span around it (uPlot alone showed 2027…2029).
    expect(timeRangeOf([1_764_918_000], 1_764_920_000, 1800)).toEqual([1_764_916_200, 1_764_919_800]);
    expect(timeRangeOf([null, 100, 400, null], 500)).toEqual([100, 400]);
    expect(timeRangeOf([], 500)).toEqual([440, 500]);
  });
});
