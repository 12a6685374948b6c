// A uPlot line chart of CPU and memory use (percent) over time.

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  t: number[]; // seconds since the epoch
  cpu: (number | null)[];
  mem: (number | null)[];
}

export function UsageChart({ data }: { data: Series }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const host = el.current;
    if (!host) return;
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const axis = { stroke: dark ? "#c9d1d9" : "#333", grid: { stroke: dark ? "#30363d" : "#e5e5e5" } };
    const opts: uPlot.Options = {
      width: host.clientWidth || 320,
      height: 180,
      scales: { y: { range: [0, 100] } },
      axes: [axis, { ...axis, values: (_u, v) => v.map((x) => x + "%") }],
      series: [
        {},
        { label: "CPU", stroke: "#2f81f7", width: 2, value: (_u, v) => (v == null ? "–" : v.toFixed(1) + "%") },
        { label: "Memory", stroke: "#d29922", width: 2, value: (_u, v) => (v == null ? "–" : v.toFixed(1) + "%") },
      ],
    };
    plot.current = new uPlot(opts, [data.t, data.cpu, data.mem], host);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: host.clientWidth, height: 180 }));
    ro.observe(host);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData([data.t, data.cpu, data.mem]);
  }, [data]);

  return <div class="chart" ref={el} />;
}
