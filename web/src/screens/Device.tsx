// One PC: live status and figures, charts (live samples, or the hourly rollups of the last
// 48 hours), its alerts, the commands (signed here; queued while offline), each with a
// result dialog following its state live, its recent commands and its audit history.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, type CommandView, type Device, type MetricsResponse } from "../api";
import { AlertBanners } from "../alertsView";
import { TimeChart, type ChartSeries } from "../chart";
import { addSample, netColumns, rollupColumns, sampleOf, usageColumns, type Sample } from "../chartData";
import { CommandState } from "../commandView";
import { formatAgo, formatBytes, formatPct, formatState, isTerminal } from "../format";
import { subscribeLive } from "../liveHub";
import { methodDef, methodLabel, METHODS, type MethodDef } from "../methods";
import { sendOrQueue, useOnline, useOutbox } from "../outbox";
import { NetBanner, OutboxCard } from "../outboxView";
import { deviceAudit, deviceCommands, recentTelemetry, type AuditPage } from "../ownerApi";
import { MAX_PENDING, type Entry } from "../queue";
import { Dialog, ErrorBox, TopBar } from "../ui";

/** Live samples kept (at one a second or so: a quarter of an hour and more). */
const MAX_SAMPLES = 900;

const pct = (v: number) => v.toFixed(1) + " %";
const rate = (v: number) => formatBytes(v) + "/s";
const USAGE: ChartSeries[] = [
  { label: "CPU", stroke: "#2f81f7", fmt: pct },
  { label: "Memory", stroke: "#d29922", fmt: pct },
  { label: "Disk", stroke: "#a371f7", fmt: pct },
];
const NET: ChartSeries[] = [
  { label: "Received", stroke: "#3fb950", fmt: rate },
  { label: "Sent", stroke: "#f0883e", fmt: rate },
];

interface Run {
  def: MethodDef | { label: string; method: string };
  sending: boolean;
  error: unknown;
  cmd: CommandView | null;
  queuedId: string | null;
}

export function DevicePage({ id }: { id: string }) {
  const [device, setDevice] = useState<Device | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [history, setHistory] = useState<MetricsResponse | null>(null);
  const [range, setRange] = useState<"live" | "history">("live");
  const [run, setRun] = useState<Run | null>(null);
  const [dialog, setDialog] = useState(false);
  const [confirm, setConfirm] = useState<MethodDef | null>(null);
  const [recent, setRecent] = useState<CommandView[] | null>(null);
  const [recentError, setRecentError] = useState<unknown>(null);
  const [audit, setAudit] = useState<AuditPage | null | "unavailable">(null);
  const [auditError, setAuditError] = useState<unknown>(null);
  const online = useOnline();
  const outboxEntries = useOutbox();
  const runId = useRef<string | null>(null);

  const loadRecent = () => deviceCommands(id, 10).then((l) => (setRecent(l), setRecentError(null)), setRecentError);
  const loadAudit = () =>
    deviceAudit(id).then(
      (p) => (setAudit(p ?? "unavailable"), setAuditError(null)),
      setAuditError,
    );

  useEffect(() => {
    api.device(id).then(setDevice, setError);
    api.metrics(id, "hourly").then(setHistory, () => undefined); // no history yet is no banner
    recentTelemetry(id, 120).then(
      (evs) => setSamples((s) => evs.reduce((acc, e) => addSample(acc, sampleOf(e.body, e.collected_at), MAX_SAMPLES), s)),
      () => undefined,
    );
    void loadRecent();
    void loadAudit();
    return subscribeLive((e) => {
      if (e.device_id !== id) return;
      if (e.kind === "presence") {
        setDevice((d) => d && { ...d, online: e.data.online === true });
      } else if (e.kind === "telemetry") {
        setSamples((s) => addSample(s, sampleOf(e.data, e.at), MAX_SAMPLES));
      } else if (e.kind === "command_status") {
        const cid = e.data.command_id;
        const data = e.data as Partial<CommandView>;
        if (cid === runId.current) setRun((r) => r && r.cmd && { ...r, cmd: { ...r.cmd, ...data } });
        setRecent((l) => {
          if (!l) return l;
          if (!l.some((c) => c.command_id === cid)) {
            void loadRecent();
            return l;
          }
          return l.map((c) => (c.command_id === cid && !isTerminal(c.state) ? { ...c, ...data } : c));
        });
        if (typeof data.state === "string" && isTerminal(data.state)) void loadAudit();
      }
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [id]);

  // If events were missed (the stream reconnected), the command's own view catches up.
  useEffect(() => {
    const cmd = run?.cmd;
    if (!cmd || isTerminal(cmd.state)) return;
    const t = setTimeout(() => {
      api.command(cmd.command_id).then(
        (v) => setRun((r) => (r && r.cmd && r.cmd.command_id === v.command_id && !isTerminal(r.cmd.state) ? { ...r, cmd: v } : r)),
        () => undefined,
      );
    }, 4000);
    return () => clearTimeout(t);
  }, [run?.cmd]);

  const start = async (def: MethodDef) => {
    setConfirm(null);
    const r: Run = { def, sending: true, error: null, cmd: null, queuedId: null };
    runId.current = null;
    setRun(r);
    setDialog(true);
    try {
      const out = await sendOrQueue(id, device?.name ?? id, def.method, def.label, def.params);
      if (out.kind === "sent") {
        runId.current = out.view.command_id;
        setRun({ ...r, sending: false, cmd: out.view });
        void loadRecent();
      } else {
        setRun({ ...r, sending: false, queuedId: out.entry.id });
      }
    } catch (e) {
      setRun({ ...r, sending: false, error: e });
    }
  };

  const showCommand = (c: CommandView) => {
    runId.current = c.command_id;
    setRun({ def: methodDef(c.method) ?? { method: c.method, label: methodLabel(c.method) }, sending: false, error: null, cmd: c, queuedId: null });
    setDialog(true);
    api.command(c.command_id).then(
      (v) => setRun((r) => (r && r.cmd?.command_id === v.command_id ? { ...r, cmd: v } : r)),
      () => undefined,
    );
  };

  const latest = samples[samples.length - 1] ?? null;
  const usage = useMemo(() => usageColumns(samples), [samples]);
  const net = useMemo(() => netColumns(samples), [samples]);
  const histUsage = useMemo(() => rollupColumns(history?.buckets ?? [], ["cpu_pct", "mem_used_pct", "disk_used_pct"]), [history]);
  const histNet = useMemo(() => rollupColumns(history?.buckets ?? [], ["rx_bps", "tx_bps"]), [history]);
  const queued = run?.queuedId ? outboxEntries.find((e) => e.id === run.queuedId) : undefined;
  const usable = device !== null && device.status !== "revoked";
  const hist = history?.buckets ?? [];

  return (
    <>
      <TopBar title={device?.name ?? "PC"} back="#/devices">
        {device &&
          (online ? (
            <span class={"pill " + (device.online ? "on" : "off")}>{device.online ? "online" : "offline"}</span>
          ) : (
            <span class="pill off" title="This phone is offline: the PC's state is not known">not known</span>
          ))}
      </TopBar>
      <main class="device">
        <NetBanner />
        <AlertBanners deviceId={id} />
        <ErrorBox error={error} />
        {device && (
          <section class="card">
            <dl class="facts">
              <dt>CPU</dt>
              <dd>{formatPct(latest?.cpu)}</dd>
              <dt>Memory</dt>
              <dd>
                {latest?.memUsed != null && latest.memTotal != null
                  ? `${formatBytes(latest.memUsed)} of ${formatBytes(latest.memTotal)} (${formatPct(latest.mem)})`
                  : "–"}
              </dd>
              <dt>Disk</dt>
              <dd>
                {latest?.diskUsed != null && latest.diskTotal != null
                  ? `${latest.diskMount ?? ""} ${formatBytes(latest.diskUsed)} of ${formatBytes(latest.diskTotal)}`
                  : "–"}
              </dd>
              <dt>Network</dt>
              <dd>{latest?.rx != null && latest.tx != null ? `↓ ${rate(latest.rx)} · ↑ ${rate(latest.tx)}` : "–"}</dd>
              <dt>System</dt>
              <dd>
                {device.os} · {device.status === "awaiting_approval" ? "waiting for an admin's approval" : device.status}
              </dd>
            </dl>
          </section>
        )}

        <section class="card" aria-label="Commands">
          <h2>Commands</h2>
          {!online && (
            <p class="small muted">Offline: a command is signed now and waits in the queue (at most {MAX_PENDING}).</p>
          )}
          <div class="commands">
            {METHODS.map((m) => (
              <button
                key={m.method}
                class={m.method === "lock_screen" ? "primary" : m.confirm ? "cmd-danger" : ""}
                disabled={!usable}
                onClick={() => (m.confirm ? setConfirm(m) : void start(m))}
              >
                {m.label}
              </button>
            ))}
          </div>
        </section>

        <OutboxCard />

        <section class="card">
          <div class="card-head">
            <h2>{range === "live" ? "Live" : "Last 48 hours"}</h2>
            <div class="seg" role="group" aria-label="Chart range">
              <button aria-pressed={range === "live"} onClick={() => setRange("live")}>
                Live
              </button>
              <button
                aria-pressed={range === "history"}
                onClick={() => {
                  setRange("history");
                  api.metrics(id, "hourly").then(setHistory, () => undefined);
                }}
              >
                48 h
              </button>
            </div>
          </div>
          {range === "live" ? (
            <>
              {samples.length === 0 ? <p class="muted">Waiting for telemetry…</p> : null}
              <h3>CPU, memory and disk</h3>
              <TimeChart key="lu" label="CPU, memory and disk use, live" columns={usage} series={USAGE} yRange={[0, 100]} yTick={(v) => v + "%"} />
              <h3>Network</h3>
              <TimeChart key="ln" label="Network traffic, live" columns={net} series={NET} yTick={(v) => formatBytes(v)} />
            </>
          ) : (
            <>
              {hist.length === 0 ? <p class="muted">No hourly history yet: the first rollup appears within the hour.</p> : null}
              <h3>CPU, memory and disk (hourly means)</h3>
              <TimeChart
                key="hu"
                label="CPU, memory and disk use, hourly"
                columns={histUsage}
                series={USAGE}
                yRange={[0, 100]}
                yTick={(v) => v + "%"}
                pad={1800}
              />
              <h3>Network (hourly means)</h3>
              <TimeChart
                key="hn"
                label="Network traffic, hourly"
                columns={histNet}
                series={NET}
                yTick={(v) => formatBytes(v)}
                pad={1800}
              />
            </>
          )}
        </section>

        <section class="card" aria-label="Recent commands">
          <h2>Recent commands</h2>
          <ErrorBox error={recentError} />
          {recent?.length === 0 && <p class="muted">None yet.</p>}
          <ul class="history">
            {recent?.map((c) => (
              <li key={c.command_id}>
                <a
                  href={"#/device/" + encodeURIComponent(id)}
                  class="hrow"
                  data-command-id={c.command_id}
                  onClick={(e) => {
                    e.preventDefault();
                    showCommand(c);
                  }}
                >
                  <span class="grow">
                    <strong>{methodLabel(c.method)}</strong>
                    <small>{formatAgo(c.created_at, Date.now())}</small>
                  </span>
                  <span class={"state-tag " + c.state}>{formatState(c.state)}</span>
                </a>
              </li>
            ))}
          </ul>
        </section>

        <AuditCard
          audit={audit}
          error={auditError}
          me={api.currentUser?.id ?? ""}
          onMore={(before) =>
            deviceAudit(id, before).then(
              (p) => p && setAudit((a) => (a && a !== "unavailable" ? { events: [...a.events, ...p.events], next_before: p.next_before ?? null } : p)),
              setAuditError,
            )
          }
        />
      </main>

      <ConfirmDialog
        def={confirm}
        pc={device?.name ?? "this PC"}
        onCancel={() => setConfirm(null)}
        onConfirm={(m) => void start(m)}
      />
      <Dialog open={dialog} title={run?.def.label ?? "Command"} onClose={() => setDialog(false)}>
        {run?.sending && <p>Signing and sending…</p>}
        <ErrorBox error={run?.error} />
        {run?.cmd && <CommandState cmd={run.cmd} online={device?.online ?? false} />}
        {run?.queuedId && <QueuedState entry={queued} online={device?.online ?? false} />}
      </Dialog>
    </>
  );
}

/** A command kept in the offline queue, then (once sent) its state on the PC. */
function QueuedState({ entry, online }: { entry: Entry | undefined; online: boolean }) {
  if (!entry) return <p class="muted">It was removed from the queue.</p>;
  if (entry.state === "sent" && entry.view) {
    return <CommandState cmd={entry.view as unknown as CommandView} online={online} />;
  }
  if (entry.state === "failed" || entry.state === "expired") {
    return <p class="notice">{entry.note ?? "The server refused it: see the queue."}</p>;
  }
  return (
    <div class="queued" data-command-id={entry.id} data-state="waiting">
      <p class="state queued">
        <strong>Queued on this phone</strong>
      </p>
      <p>
        There is no connection to the server right now. The command is signed and waits in the queue; it is sent as
        soon as the connection is back, until {new Date(entry.notAfter).toLocaleTimeString()} (its signature's
        deadline).
      </p>
      <p class="small muted ids">command {entry.id}</p>
    </div>
  );
}

function ConfirmDialog(props: { def: MethodDef | null; pc: string; onCancel: () => void; onConfirm: (m: MethodDef) => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const open = props.def !== null;
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  const c = props.def?.confirm;
  return (
    <dialog ref={ref} onClose={props.onCancel} aria-labelledby="confirm-title" class="confirm">
      {props.def && c && (
        <>
          <h2 id="confirm-title">{c.question(props.pc)}</h2>
          <p>{c.detail}</p>
          <div class="row-buttons">
            <button onClick={props.onCancel}>Cancel</button>
            <button class="cmd-danger-solid" onClick={() => props.def && props.onConfirm(props.def)}>
              {c.action}
            </button>
          </div>
        </>
      )}
    </dialog>
  );
}

function AuditCard(props: {
  audit: AuditPage | null | "unavailable";
  error: unknown;
  me: string;
  onMore: (before: number) => void;
}) {
  const a = props.audit;
  return (
    <section class="card" aria-label="Audit history">
      <h2>Audit history</h2>
      <ErrorBox error={props.error} />
      {a === "unavailable" && <p class="muted">This server does not offer a device's audit history yet.</p>}
      {a === null && !props.error && <p class="muted">Loading…</p>}
      {a && a !== "unavailable" && (
        <>
          {a.events.length === 0 && <p class="muted">Nothing recorded yet.</p>}
          <ul class="history audit">
            {a.events.map((e) => (
              <li key={e.seq} class="hrow">
                <span class="grow">
                  <strong>{e.action}</strong>
                  <small>
                    {e.actor === props.me ? "you" : e.actor} · {new Date(e.at).toLocaleString()}
                  </small>
                </span>
                <span class={"state-tag " + (e.outcome === "success" ? "completed" : "failed")}>{e.outcome}</span>
              </li>
            ))}
          </ul>
          {a.next_before != null && (
            <button class="link" onClick={() => props.onMore(a.next_before as number)}>
              Older entries
            </button>
          )}
        </>
      )}
    </section>
  );
}
