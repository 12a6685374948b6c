// Open alerts as banners, most severe first: loaded from `GET /api/alerts`, kept current
// by the live stream's `alert` events (a new alert appears, an acknowledged one goes), and
// acknowledged with `POST /api/alerts/{id}/ack`.

import { useEffect, useState } from "preact/hooks";
import { formatAgo } from "./format";
import { subscribeLive } from "./liveHub";
import { ackAlert, openAlerts, type Alert } from "./ownerApi";
import { ErrorBox } from "./ui";

const RANK: Record<string, number> = { critical: 0, warning: 1, info: 2 };

/** Most severe first, then newest first. */
export function sortAlerts(list: Alert[]): Alert[] {
  return [...list].sort(
    (a, b) => (RANK[a.severity] ?? 3) - (RANK[b.severity] ?? 3) || b.created_at - a.created_at,
  );
}

/** An alert event applied to the open list. */
export function applyAlert(list: Alert[], a: Alert): Alert[] {
  const rest = list.filter((x) => x.id !== a.id);
  return a.acked_at ? rest : sortAlerts([...rest, a]);
}

const KIND: Record<string, string> = {
  anomaly: "Unusual activity",
  cpu_high: "CPU busy",
  disk_full: "Disk almost full",
  offline: "PC offline",
};

export function AlertBanners({ deviceId, names }: { deviceId?: string; names?: Record<string, string> }) {
  const [alerts, setAlerts] = useState<Alert[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);

  useEffect(() => {
    openAlerts().then((l) => setAlerts(sortAlerts(l)), setError);
    return subscribeLive((e) => {
      if (e.kind === "alert" && e.data && typeof e.data.id === "string") {
        setAlerts((l) => applyAlert(l, e.data as unknown as Alert));
      }
    });
  }, []);

  const ack = async (id: string) => {
    setBusy(id);
    setError(null);
    try {
      const a = await ackAlert(id);
      setAlerts((l) => applyAlert(l, { ...a, acked_at: a.acked_at ?? Date.now() }));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };

  const shown = deviceId ? alerts.filter((a) => a.device_id === deviceId) : alerts;
  if (!shown.length && !error) return null;
  const now = Date.now();
  return (
    <section class="alerts" aria-label="Alerts">
      <ErrorBox error={error} />
      {shown.map((a) => (
        <div key={a.id} class={"alert " + a.severity} role="status" data-alert-id={a.id}>
          <div class="grow">
            <strong>
              <span class="alert-sev">{a.severity}</span> {KIND[a.kind] ?? a.kind}
              {!deviceId && names?.[a.device_id] ? ` · ${names[a.device_id]}` : ""}
            </strong>
            <p>{a.message}</p>
            <small>{formatAgo(a.created_at, now)}</small>
          </div>
          <button onClick={() => void ack(a.id)} disabled={busy === a.id} aria-label={`Acknowledge: ${a.message}`}>
            {busy === a.id ? "…" : "Acknowledge"}
          </button>
        </div>
      ))}
    </section>
  );
}
