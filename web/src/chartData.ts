// The device page's chart data, as pure functions (chartData.test.ts): live telemetry
// samples, the hourly rollups, and the time axis's range.

import { memPct } from "./format";

/** Columns for uPlot: times in seconds, then one array per series. */
export interface Columns {
  t: number[];
  ys: (number | null)[][];
}

/** One telemetry sample reduced to what the page shows. */
export interface Sample {
  at: number; // UnixMillis (collected_at)
  cpu: number | null;
  memUsed: number | null;
  memTotal: number | null;
  mem: number | null; // percent
  disk: number | null; // the fullest disk, percent
  diskUsed: number | null;
  diskTotal: number | null;
  diskMount: string | null;
  rx: number | null; // bytes per second
  tx: number | null;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** A telemetry body (docs/protocol.md, `telemetry`) as a Sample; `fallbackAt` when it has no time. */
export function sampleOf(body: Record<string, unknown>, fallbackAt: number): Sample {
  const used = num(body.mem_used_bytes);
  const total = num(body.mem_total_bytes);
  let disk: number | null = null;
  let diskUsed: number | null = null;
  let diskTotal: number | null = null;
  let diskMount: string | null = null;
  if (Array.isArray(body.disks)) {
    for (const d of body.disks as Record<string, unknown>[]) {
      const u = num(d?.used_bytes);
      const t = num(d?.total_bytes);
      if (u === null || t === null || t <= 0) continue;
      const pct = (100 * u) / t;
      if (disk === null || pct > disk) {
        disk = pct;
        diskUsed = u;
        diskTotal = t;
        diskMount = typeof d.mount === "string" ? d.mount : null;
      }
    }
  }
  const net = (body.net ?? {}) as Record<string, unknown>;
  return {
    at: num(body.collected_at) ?? fallbackAt,
    cpu: num(body.cpu_pct),
    memUsed: used,
    memTotal: total,
    mem: used !== null && total !== null ? memPct(used, total) : null,
    disk,
    diskUsed,
    diskTotal,
    diskMount,
    rx: num(net.rx_bps),
    tx: num(net.tx_bps),
  };
}

/**
 * Adds a sample in time order (a sample already there, by time, is not added twice) and
 * keeps the newest `max`.
 */
export function addSample(list: Sample[], s: Sample, max: number): Sample[] {
  if (list.some((x) => x.at === s.at)) return list;
  const out = [...list, s];
  if (out.length > 1 && (out[out.length - 2]?.at ?? 0) > s.at) out.sort((a, b) => a.at - b.at);
  return out.length > max ? out.slice(out.length - max) : out;
}

/** Live samples as columns: [cpu, mem, disk] percent, or [rx, tx] bytes/s. */
export function usageColumns(samples: Sample[]): Columns {
  return { t: samples.map((s) => s.at / 1000), ys: [samples.map((s) => s.cpu), samples.map((s) => s.mem), samples.map((s) => s.disk)] };
}
export function netColumns(samples: Sample[]): Columns {
  return { t: samples.map((s) => s.at / 1000), ys: [samples.map((s) => s.rx), samples.map((s) => s.tx)] };
}

export interface Bucket {
  bucket_start: number;
  metrics: Record<string, { mean: number } | undefined>;
}

/** Rollup buckets (oldest first) as columns of the named metrics' means. */
export function rollupColumns(buckets: Bucket[], metrics: string[]): Columns {
  const sorted = [...buckets].sort((a, b) => a.bucket_start - b.bucket_start);
  return {
    t: sorted.map((b) => b.bucket_start / 1000),
    ys: metrics.map((m) => sorted.map((b) => num(b.metrics[m]?.mean))),
  };
}

/**
 * The time axis's range for the times `xs` (seconds, ascending), from the data itself:
 * for a single point uPlot widens min and max on its own (by a tenth of the value's order
 * of magnitude: years, for a Unix time) before any range function sees them, which is
 * why one sample or one rollup bucket used to show an axis of 2027…2029.
 */
export function timeRangeOf(xs: ArrayLike<number | null | undefined>, nowS: number, pad = 60): [number, number] {
  let min: number | null = null;
  let max: number | null = null;
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i];
    if (typeof v !== "number" || !Number.isFinite(v)) continue;
    if (min === null || v < min) min = v;
    if (max === null || v > max) max = v;
  }
  return timeRange(min, max, nowS, pad);
}

/**
 * The time axis's range in seconds. uPlot cannot make a range of a single instant (one
 * sample, or one rollup bucket): it would show a span around the epoch or a meaningless
 * scale. One point is centred in `pad` seconds either side; no point shows the last
 * `pad` seconds up to `now`.
 */
export function timeRange(min: number | null, max: number | null, nowS: number, pad = 60): [number, number] {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [nowS - pad, nowS];
  if (max - min < 1) return [min - pad, max + pad];
  return [min, max];
}
