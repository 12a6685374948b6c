// The live view: `/api/live` read through fetch (Authorization header, not a token in
// the URL), parsed with SseParser, reconnecting with backoff. Each event's data is
// `{kind, device_id, owner_id, at, data}` (docs/operations.md, "Live view").

import { api } from "./api";
import { SseParser } from "./sse";

export interface LiveEvent {
  kind: string;
  device_id: string;
  owner_id?: string;
  at: number;
  data: Record<string, unknown>;
}

export type LiveHandler = (e: LiveEvent) => void;
export type LiveState = "connecting" | "open" | "retrying";

/** Follows the live stream (optionally for some devices) until `stop()` is called. */
export function followLive(
  devices: string[],
  onEvent: LiveHandler,
  onState: (s: LiveState, err?: unknown) => void = () => undefined,
): { stop: () => void } {
  const ctl = new AbortController();
  const q = devices.map((d) => "device=" + encodeURIComponent(d)).join("&");
  const path = "/api/live" + (q ? "?" + q : "");
  let delay = 1000;

  (async () => {
    while (!ctl.signal.aborted) {
      onState("connecting");
      try {
        const r = await api.stream(path, ctl.signal);
        onState("open");
        delay = 1000;
        const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
        const parser = new SseParser();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const ev of parser.push(value)) {
            if (ev.event === "lagged") continue;
            try {
              onEvent(JSON.parse(ev.data) as LiveEvent);
            } catch {
              // a malformed event is skipped, not fatal
            }
          }
        }
        // The stream ends when the access token expires: reconnect (refreshing it).
      } catch (e) {
        if (ctl.signal.aborted) return;
        onState("retrying", e);
        // Wait out the backoff, or less: the browser saying the network is back ends it.
        await new Promise<void>((res) => {
          const done = () => {
            clearTimeout(t);
            removeEventListener("online", done);
            res();
          };
          const t = setTimeout(done, delay);
          addEventListener("online", done);
        });
        delay = Math.min(delay * 2, 30_000);
      }
    }
  })();

  return { stop: () => ctl.abort() };
}
