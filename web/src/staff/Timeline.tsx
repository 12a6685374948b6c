// A device's command timeline: its commands newest first (`GET /api/commands`), states
// moving live (`command_status`), each command's transitions on demand.

import { useEffect, useRef, useState } from "preact/hooks";
import { formatState, isTerminal } from "../format";
import { navigate } from "../router";
import { ErrorBox } from "../ui";
import { staffApi, type StaffCommand, type Transition } from "./api";
import { Ago, ScreenHead, UserName, useDirectory, useLive, useNow } from "./common";
import { compactJson, formatTime } from "./logic";

export function TimelineScreen({ deviceId }: { deviceId?: string | undefined }) {
  const dir = useDirectory();
  const devices = [...dir.devices.values()].sort((a, b) => a.name.localeCompare(b.name));
  const device = deviceId ? dir.devices.get(deviceId) : undefined;

  return (
    <section>
      <ScreenHead
        title={device ? `Command timeline — ${device.name}` : "Command timeline"}
        sub="Every command sent to one PC, newest first; states change live."
      >
        <label class="inline-field">
          PC
          <select
            value={deviceId ?? ""}
            onChange={(e) => {
              const v = e.currentTarget.value;
              navigate(v ? "/staff/timeline/" + encodeURIComponent(v) : "/staff/timeline");
            }}
          >
            <option value="">Choose a PC…</option>
            {devices.map((d) => (
              <option key={d.id} value={d.id}>
                {d.name}
              </option>
            ))}
          </select>
        </label>
        {deviceId && <a href={"#/staff/audit?device=" + encodeURIComponent(deviceId)}>Audit events of this PC</a>}
      </ScreenHead>
      {!deviceId && <p class="card">Choose a PC to see the commands sent to it.</p>}
      {deviceId && <Commands key={deviceId} deviceId={deviceId} />}
    </section>
  );
}

function Commands({ deviceId }: { deviceId: string }) {
  const [cmds, setCmds] = useState<StaffCommand[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [gen, setGen] = useState(0);
  const now = useNow();
  const ids = useRef(new Set<string>());

  useEffect(() => {
    let live = true;
    staffApi.commands(deviceId, 100).then(
      (c) => {
        if (!live) return;
        setCmds(c);
        ids.current = new Set(c.map((x) => x.command_id));
        setError(null);
        setOpen((o) => o ?? c[0]?.command_id ?? null);
      },
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [deviceId, gen]);

  useLive((e) => {
    if (e.kind !== "command_status" || e.device_id !== deviceId) return;
    const d = e.data as Partial<StaffCommand> & { command_id?: string };
    const id = d.command_id;
    if (!id) return;
    if (!ids.current.has(id)) {
      // A new command: read the list again for its full view.
      ids.current.add(id);
      setGen((g) => g + 1);
      return;
    }
    setCmds((cs) => cs && cs.map((c) => (c.command_id === id ? ({ ...c, ...d, updated_at: e.at } as StaffCommand) : c)));
  });

  if (error) return <ErrorBox error={error} />;
  if (cmds === null) return <p class="muted">Loading…</p>;
  if (cmds.length === 0) return <p class="card">No command has been sent to this PC yet.</p>;

  return (
    <ol class="timeline">
      {cmds.map((c) => (
        <li key={c.command_id} class={"tl-item " + c.state} data-command={c.command_id}>
          <span class="tl-dot" aria-hidden="true" />
          <div class="tl-body">
            <div class="tl-line">
              <strong class="method">{c.method}</strong>
              <span class={"state-pill " + c.state}>{formatState(c.state)}</span>
              <span class="muted small">
                <time title={formatTime(c.created_at)}>{formatTime(c.created_at)}</time> · <Ago at={c.created_at} now={now} />
              </span>
              <span class="grow" />
              <button
                class="link"
                aria-expanded={open === c.command_id}
                onClick={() => setOpen((o) => (o === c.command_id ? null : c.command_id))}
              >
                {open === c.command_id ? "Hide steps" : "Steps"}
              </button>
            </div>
            <dl class="tl-facts small">
              <dt>By</dt>
              <dd>
                <UserName id={c.origin_user_id} />
              </dd>
              <dt>Policy</dt>
              <dd>
                v{c.policy_version ?? 0}
                {c.policy_rule ? ` · rule ${c.policy_rule}` : " · default"}
              </dd>
              {c.error !== undefined && c.error !== null && (
                <>
                  <dt>Error</dt>
                  <dd class="err-text">{c.error}</dd>
                </>
              )}
              {c.result && (
                <>
                  <dt>Result</dt>
                  <dd>{compactJson(c.result, 120)}</dd>
                </>
              )}
              <dt>Command</dt>
              <dd>
                <code class="id">{c.command_id}</code>
              </dd>
              <dt>Trace</dt>
              <dd>
                <code class="id">{c.trace_id}</code>
              </dd>
            </dl>
            {open === c.command_id && <Steps id={c.command_id} state={c.state} />}
          </div>
        </li>
      ))}
    </ol>
  );
}

/** A command's transitions, read again when its state moves. */
function Steps({ id, state }: { id: string; state: string }) {
  const [steps, setSteps] = useState<Transition[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    staffApi.command(id).then(
      (c) => live && setSteps(c.transitions ?? []),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [id, state]);
  if (error) return <ErrorBox error={error} />;
  if (!steps) return <p class="muted small">Loading steps…</p>;
  return (
    <ol class="steps small" aria-label="State changes">
      {steps.map((t, i) => (
        <li key={i}>
          <time>{formatTime(t.at)}</time>.{String(t.at % 1000).padStart(3, "0")}{" "}
          <span class="muted">{t.from ? formatState(t.from) : "submitted"} →</span> <strong>{formatState(t.to)}</strong>
          {t.detail && Object.keys(t.detail).length > 0 && <code class="detail">{compactJson(t.detail, 140)}</code>}
        </li>
      ))}
      {!isTerminal(state) && <li class="muted">…in progress</li>}
    </ol>
  );
}
