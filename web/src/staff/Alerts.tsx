// The alert feed: every device's alerts, newest first, new ones arriving live (`alert`
// events carry the alert as `GET /api/alerts` shows it). Admins acknowledge; auditors
// read.

import { useEffect, useState } from "preact/hooks";
import { ErrorBox } from "../ui";
import { staffApi, type Alert } from "./api";
import { Ago, DeviceName, ReadOnlyNote, ScreenHead, UserName, useLive, useNow } from "./common";
import type { Abilities } from "./logic";
import { formatTime } from "./logic";

export function AlertsScreen({ can }: { can: Abilities }) {
  const [all, setAll] = useState(false);
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [ackError, setAckError] = useState<unknown>(null);
  const [acking, setAcking] = useState<string | null>(null);
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const now = useNow();

  useEffect(() => {
    let live = true;
    setAlerts(null);
    staffApi.alerts(all).then(
      (a) => {
        if (!live) return;
        setAlerts(a);
        setError(null);
      },
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [all]);

  useLive((e) => {
    if (e.kind !== "alert") return;
    const a = e.data as unknown as Alert;
    if (!a || typeof a.id !== "string") return;
    setAlerts((as) => {
      if (!as) return as;
      const rest = as.filter((x) => x.id !== a.id);
      if (!all && a.acked_at) return rest; // acknowledged: leaves the open list
      return [a, ...rest].sort((x, y) => y.created_at - x.created_at);
    });
    if (!a.acked_at) setFresh((f) => new Set(f).add(a.id));
  });

  const ack = async (id: string) => {
    setAcking(id);
    setAckError(null);
    try {
      const a = await staffApi.ackAlert(id);
      setAlerts((as) => as && (all ? as.map((x) => (x.id === id ? a : x)) : as.filter((x) => x.id !== id)));
    } catch (e) {
      setAckError(e);
    } finally {
      setAcking(null);
    }
  };

  const open = alerts?.filter((a) => !a.acked_at).length ?? 0;

  return (
    <section>
      <ScreenHead title="Alerts" sub="Raised by the server's rules (offline, CPU high, disk full, anomaly); new ones appear live.">
        <div class="segmented" role="group" aria-label="Which alerts">
          <button aria-pressed={!all} class={!all ? "selected" : ""} onClick={() => setAll(false)}>
            Open
          </button>
          <button aria-pressed={all} class={all ? "selected" : ""} onClick={() => setAll(true)}>
            All
          </button>
        </div>
      </ScreenHead>
      {!can.ackAlerts && <ReadOnlyNote what="alerts" />}
      <ErrorBox error={error} />
      <ErrorBox error={ackError} />
      {alerts === null && !error && <p class="muted">Loading…</p>}
      {alerts?.length === 0 && <p class="card">{all ? "No alert yet." : "No open alert. All quiet."}</p>}
      {alerts && alerts.length > 0 && (
        <>
          <p class="muted small" aria-live="polite">
            {open} open
          </p>
          <ul class="alert-feed">
            {alerts.map((a) => (
              <li key={a.id} class={"alert-item " + a.severity + (a.acked_at ? " acked" : "") + (fresh.has(a.id) ? " fresh" : "")} data-alert={a.id}>
                <span class={"sev " + a.severity}>{a.severity}</span>
                <div class="grow">
                  <div>
                    <strong>{a.kind}</strong> on <DeviceName id={a.device_id} link />
                    {a.risk_score !== null && a.risk_score !== undefined && (
                      <span class="muted small"> · risk {a.risk_score.toFixed(2)}</span>
                    )}
                  </div>
                  <p class="alert-msg">{a.message}</p>
                  <small class="muted">
                    <time title={formatTime(a.created_at)}>
                      <Ago at={a.created_at} now={now} />
                    </time>
                    {a.acked_at && (
                      <>
                        {" "}
                        · acknowledged <Ago at={a.acked_at} now={now} /> by <UserName id={a.acked_by} />
                      </>
                    )}
                  </small>
                </div>
                {can.ackAlerts && !a.acked_at && (
                  <button onClick={() => void ack(a.id)} disabled={acking === a.id}>
                    {acking === a.id ? "…" : "Acknowledge"}
                  </button>
                )}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
