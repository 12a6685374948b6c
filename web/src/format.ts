// Formatting helpers for the screens (pure, locale-independent where tests need it).

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return "–";
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[i]}`;
}

/** 12.345 → "12.3 %". */
export function formatPct(n: number | null | undefined): string {
  return n === null || n === undefined || !Number.isFinite(n) ? "–" : `${n.toFixed(1)} %`;
}

/** How long ago `at` (UnixMillis) was, relative to `now`: "just now", "5 min ago", "3 h ago", "2 d ago". */
export function formatAgo(at: number, now: number): string {
  const s = Math.round((now - at) / 1000);
  if (s < 0) return "in the future";
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} d ago`;
}

/** A command state as a person reads it (docs/protocol.md section 7.4). */
export function formatState(state: string): string {
  const words: Record<string, string> = {
    awaiting_approval: "Waiting for approval",
    queued: "Queued",
    sent: "Sent to the PC",
    ack_received: "The PC has it",
    executing: "Running",
    result_posted: "Result received",
    completed: "Done",
    failed: "Failed",
    denied: "Refused",
    expired: "Expired",
    delivery_failed: "Could not deliver",
  };
  return words[state] ?? state;
}

/** Whether a command state is final. */
export function isTerminal(state: string): boolean {
  return ["completed", "failed", "denied", "expired", "delivery_failed"].includes(state);
}

/** Memory use in percent, or null when the total is unknown. */
export function memPct(used: number, total: number): number | null {
  return total > 0 ? (100 * used) / total : null;
}
