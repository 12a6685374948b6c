// A uPlot line chart over time (the device page's usage and network charts). The time
// axis's range comes from the data (chartData.timeRangeOf), so a single sample or rollup
// bucket is drawn at its own time, not on an axis of years.

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { timeRangeOf, type Columns } from "./chartData";

export interface ChartSeries {
  label: string;
  stroke: string;
  /** The legend's value. */
  fmt: (v: number) => string;
}

export interface ChartProps {
  columns: Columns;
  series: ChartSeries[];
  /** Fixed y range (percent charts), else from 0 to the data's maximum. */
  yRange?: [number, number];
  /** Tick labels of the y axis. */
  yTick: (v: number) => string;
  /** Half the span shown around a single point, seconds. */
  pad?: number;
  height?: number;
  label: string;
}

export function TimeChart(props: ChartProps) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const height = props.height ?? 170;
  const pad = useRef(props.pad ?? 60);
  pad.current = props.pad ?? 60;

  useEffect(() => {
    const host = el.current;
    if (!host) return;
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const axis = { stroke: dark ? "#c9d1d9" : "#333", grid: { stroke: dark ? "#30363d" : "#e5e5e5" }, ticks: { show: false } };
    const yMax = props.yRange;
    const opts: uPlot.Options = {
      width: host.clientWidth || 320,
      height,
      scales: {
        x: { time: true, range: (u) => timeRangeOf(u.data[0] ?? [], Date.now() / 1000, pad.current) },
        y: {
          range: yMax
            ? () => yMax
            : (_u, _min, max) => [0, Number.isFinite(max) && max > 0 ? Math.max(max * 1.15, 1024) : 1024],
        },
      },
      axes: [{ ...axis, space: 64 }, { ...axis, size: 56, values: (_u, v) => v.map(props.yTick) }],
      // Labels only: values at the cursor would read "–" until touched, on a phone always.
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          width: 2,
          points: { show: (u: uPlot) => u.data[0].length < 3 },
          value: (_u: uPlot, v: number | null) => (v == null ? "–" : s.fmt(v)),
        })),
      ],
    };
    plot.current = new uPlot(opts, [props.columns.t, ...props.columns.ys], host);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: host.clientWidth, height }));
    ro.observe(host);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // The chart is made once; data changes go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    plot.current?.setData([props.columns.t, ...props.columns.ys]);
  }, [props.columns]);

  return <div class="chart" ref={el} role="img" aria-label={props.label} />;
}
