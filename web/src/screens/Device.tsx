// One PC: live status, a CPU / memory chart (rollup history + live telemetry), and the
// lock-screen command with its live state and result.

import { useEffect, useRef, useState } from "preact/hooks";
import { api, type CommandView, type Device } from "../api";
import { UsageChart, type Series } from "../chart";
import { sendSigned } from "../commands";
import { formatBytes, formatPct, formatState, isTerminal, memPct } from "../format";
import { ApiError } from "../errors";
import { followLive } from "../live";
import { Dialog, ErrorBox, TopBar } from "../ui";

/** Live points kept on the chart beyond the history. */
const MAX_POINTS = 720;

interface Latest {
  cpu: number;
  memUsed: number;
  memTotal: number;
}

export function DevicePage({ id }: { id: string }) {
  const [device, setDevice] = useState<Device | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [series, setSeries] = useState<Series>({ t: [], cpu: [], mem: [] });
  const [latest, setLatest] = useState<Latest | null>(null);
  const [cmd, setCmd] = useState<CommandView | null>(null);
  const [cmdError, setCmdError] = useState<unknown>(null);
  const [dialog, setDialog] = useState(false);
  const [sending, setSending] = useState(false);
  const cmdId = useRef<string | null>(null);

  useEffect(() => {
    api.device(id).then(setDevice, setError);
    api.metrics(id, "hourly").then(
      (m) => {
        const hist: Series = { t: [], cpu: [], mem: [] };
        for (const b of m.buckets) {
          hist.t.push(b.bucket_start / 1000);
          hist.cpu.push(b.metrics.cpu_pct?.mean ?? null);
          hist.mem.push(b.metrics.mem_used_pct?.mean ?? null);
        }
        // Live points that came in first stay after the history.
        setSeries((s) => ({ t: [...hist.t, ...s.t], cpu: [...hist.cpu, ...s.cpu], mem: [...hist.mem, ...s.mem] }));
      },
      () => undefined, // no history yet is not an error worth a banner
    );
    const sub = followLive([id], (e) => {
      if (e.kind === "presence") {
        setDevice((d) => d && { ...d, online: e.data.online === true });
      } else if (e.kind === "telemetry") {
        const cpu = Number(e.data.cpu_pct);
        const used = Number(e.data.mem_used_bytes);
        const total = Number(e.data.mem_total_bytes);
        const at = Number(e.data.collected_at ?? e.at);
        setLatest({ cpu, memUsed: used, memTotal: total });
        setSeries((s) => ({
          t: [...s.t, at / 1000].slice(-MAX_POINTS),
          cpu: [...s.cpu, cpu].slice(-MAX_POINTS),
          mem: [...s.mem, memPct(used, total)].slice(-MAX_POINTS),
        }));
      } else if (e.kind === "command_status" && e.data.command_id === cmdId.current) {
        setCmd((c) => (c ? { ...c, ...(e.data as Partial<CommandView>) } : c));
      }
    });
    return () => sub.stop();
  }, [id]);

  // If events were missed (the stream reconnected), the command's own view catches up.
  useEffect(() => {
    if (!cmd || isTerminal(cmd.state)) return;
    const t = setTimeout(() => {
      api.command(cmd.command_id).then((v) => setCmd((c) => (c && !isTerminal(c.state) ? v : c)), () => undefined);
    }, 5000);
    return () => clearTimeout(t);
  }, [cmd]);

  const lock = async () => {
    setSending(true);
    setCmd(null);
    setCmdError(null);
    setDialog(true);
    try {
      const v = await sendSigned(id, "lock_screen");
      cmdId.current = v.command_id;
      setCmd(v);
    } catch (e) {
      setCmdError(e);
    } finally {
      setSending(false);
    }
  };

  return (
    <>
      <TopBar title={device?.name ?? "PC"} back="#/devices">
        {device && <span class={"pill " + (device.online ? "on" : "off")}>{device.online ? "online" : "offline"}</span>}
      </TopBar>
      <main>
        <ErrorBox error={error} />
        {device && (
          <section class="card">
            <dl class="facts">
              <dt>CPU</dt>
              <dd>{formatPct(latest?.cpu)}</dd>
              <dt>Memory</dt>
              <dd>
                {latest ? `${formatBytes(latest.memUsed)} of ${formatBytes(latest.memTotal)}` : "–"}
              </dd>
              <dt>System</dt>
              <dd>
                {device.os} · {device.status}
              </dd>
            </dl>
          </section>
        )}
        <section class="card">
          <h2>CPU and memory</h2>
          {series.t.length === 0 ? <p class="muted">Waiting for telemetry…</p> : null}
          <UsageChart data={series} />
        </section>
        <section class="actions">
          <button class="primary big" onClick={lock} disabled={sending || !device}>
            Lock screen
          </button>
        </section>
      </main>
      <Dialog open={dialog} title="Lock screen" onClose={() => setDialog(false)}>
        {sending && <p>Signing and sending…</p>}
        <ErrorBox error={cmdError} />
        {cmd && <CommandState cmd={cmd} online={device?.online ?? false} />}
      </Dialog>
    </>
  );
}

function CommandState({ cmd, online }: { cmd: CommandView; online: boolean }) {
  const done = isTerminal(cmd.state);
  const result = cmd.result as { status?: string; notes?: string; duration_ms?: number } | undefined;
  return (
    <div aria-live="polite">
      <p class={"state " + cmd.state}>
        <strong>{formatState(cmd.state)}</strong>
        {!done && <span class="spinner" aria-hidden="true" />}
      </p>
      {!done && !online && cmd.state === "queued" && (
        <p class="muted">The PC is offline; it will run this when it reconnects, within 5 minutes.</p>
      )}
      {done && result && (
        <p>
          {result.status ?? ""} {result.notes ? `— ${result.notes}` : ""}
          {result.duration_ms !== undefined ? ` [${result.duration_ms} ms]` : ""}
        </p>
      )}
      {done && cmd.error !== undefined && (
        <ErrorBox error={new ApiError(0, cmd.error, "Command failed", `The command ended with error ${cmd.error}.`)} />
      )}
      <p class="small muted">
        command {cmd.command_id} · trace {cmd.trace_id}
      </p>
    </div>
  );
}
