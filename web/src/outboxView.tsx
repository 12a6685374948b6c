// The offline banner and the queue of commands waiting for the network (outbox.ts), each
// with its state: waiting, sending, retrying (with the next try), sent and then its state
// on the PC, refused, or dropped because its deadline passed.

import { useEffect, useState } from "preact/hooks";
import { formatState, isTerminal } from "./format";
import { outbox, useOnline, useOutbox } from "./outbox";
import { errorOf, isPending, MAX_PENDING, type Entry } from "./queue";
import { ErrorBox } from "./ui";

export function NetBanner() {
  const online = useOnline();
  if (online) return null;
  return (
    <p class="netbanner" role="status">
      <strong>You are offline.</strong> Commands are signed now and sent when the phone is back online (at most{" "}
      {MAX_PENDING} wait).
    </p>
  );
}

function useTick(ms: number, on: boolean) {
  const [, set] = useState(0);
  useEffect(() => {
    if (!on) return;
    const t = setInterval(() => set((n) => n + 1), ms);
    return () => clearInterval(t);
  }, [ms, on]);
}

const secs = (ms: number) => Math.max(0, Math.ceil(ms / 1000));
function mmss(ms: number): string {
  const s = secs(ms);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** The entry's state in words, and the state name the page and tests key on. */
function stateOf(e: Entry, now: number): { text: string; key: string } {
  switch (e.state) {
    case "waiting":
      return { text: `Waiting for the network · expires in ${mmss(e.notAfter - now)}`, key: "waiting" };
    case "sending":
      return { text: "Sending…", key: "sending" };
    case "retrying":
      return {
        text: `Could not reach the server · next try in ${secs((e.nextAttemptAt ?? now) - now)} s (attempt ${e.attempts + 1})`,
        key: "retrying",
      };
    case "sent": {
      const s = e.view?.state ?? "queued";
      return { text: `Sent · ${formatState(s)}`, key: s };
    }
    case "failed":
      return { text: "Refused by the server", key: "failed" };
    case "expired":
      return { text: "Dropped: its deadline passed", key: "dropped" };
  }
}

export function OutboxCard() {
  const entries = useOutbox();
  const live = entries.some((e) => isPending(e) || (e.state === "sent" && !isTerminal(e.view?.state ?? "")));
  useTick(1000, live);
  if (!entries.length) return null;
  const pending = entries.filter(isPending).length;
  const now = Date.now();
  return (
    <section class="card outbox" aria-label="Commands waiting to send">
      <h2>
        {pending ? "Waiting to send" : "Sent from the queue"}{" "}
        <span class="count">
          {pending} of {MAX_PENDING} waiting
        </span>
      </h2>
      <ol>
        {entries.map((e) => {
          const s = stateOf(e, now);
          return (
            <li key={e.id} data-command-id={e.id} data-state={s.key} class={"q-" + e.state}>
              <div class="grow">
                <strong>{e.label}</strong> <span class="muted">· {e.deviceName}</span>
                <p class={"qstate " + s.key}>
                  {(e.state === "sending" || (e.state === "sent" && !isTerminal(s.key))) && (
                    <span class="spinner" aria-hidden="true" />
                  )}
                  {s.text}
                </p>
                {e.note && <p class="small">{e.note}</p>}
                {e.state === "failed" && e.error && <ErrorBox error={errorOf(e.error)} />}
                <p class="small muted ids">command {e.id}</p>
              </div>
              {(e.state === "waiting" || e.state === "retrying") && (
                <button class="link" onClick={() => outbox.remove(e.id)}>
                  Remove
                </button>
              )}
            </li>
          );
        })}
      </ol>
      {entries.length > pending && (
        <button class="link" onClick={() => outbox.clearFinished()}>
          Clear finished
        </button>
      )}
    </section>
  );
}
