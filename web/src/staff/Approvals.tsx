// Approvals: PCs paired while `require_device_approval` is on wait here
// (`awaiting_approval`) until an admin approves or revokes them; the setting itself; and
// the commands that wait for the caller's approval (approved with a signature, from the
// CLI).

import { useEffect, useState } from "preact/hooks";
import type { Device } from "../api";
import { formatState } from "../format";
import { ErrorBox } from "../ui";
import { staffApi, type Settings, type StaffCommand } from "./api";
import { Ago, ConfirmDialog, DeviceName, ReadOnlyNote, ScreenHead, UserName, useDirectory, useNow } from "./common";
import type { Abilities } from "./logic";

/** How often the pending list is read again. */
const POLL_MS = 20_000;

export function ApprovalsScreen({ can }: { can: Abilities }) {
  const dir = useDirectory();
  const [devices, setDevices] = useState<Device[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [gen, setGen] = useState(0);
  const [busy, setBusy] = useState<string | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const [revoking, setRevoking] = useState<Device | null>(null);
  const now = useNow();

  useEffect(() => {
    let live = true;
    const load = () =>
      staffApi.devices().then(
        (d) => {
          if (!live) return;
          setDevices(d);
          setError(null);
        },
        (e) => live && setError(e),
      );
    void load();
    const t = setInterval(load, POLL_MS);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [gen]);

  const pending = (devices ?? []).filter((d) => d.status === "awaiting_approval");

  const approve = async (d: Device) => {
    setBusy(d.id);
    setActionError(null);
    setDone(null);
    try {
      await staffApi.approveDevice(d.id);
      setDone(`${d.name} is approved: it can connect now.`);
      setGen((g) => g + 1);
      dir.reload();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(null);
    }
  };

  const revoke = async () => {
    const d = revoking;
    if (!d) return;
    setBusy(d.id);
    setActionError(null);
    setDone(null);
    try {
      await staffApi.revokeDevice(d.id);
      setDone(`${d.name} is revoked: its certificate no longer works.`);
      setRevoking(null);
      setGen((g) => g + 1);
      dir.reload();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(null);
    }
  };

  return (
    <section>
      <ScreenHead title="Approvals" sub="PCs waiting for an admin before they may connect, and commands waiting for approvals.">
        <button onClick={() => setGen((g) => g + 1)}>Refresh</button>
      </ScreenHead>
      {!can.approveDevices && <ReadOnlyNote what="pending PCs" />}
      {can.approveDevices && <ApprovalSetting />}
      <ErrorBox error={error} />
      {!revoking && <ErrorBox error={actionError} />}
      {done && (
        <p class="notice" role="status">
          {done}
        </p>
      )}
      <div class="card">
        <h3>PCs awaiting approval</h3>
        {devices === null && !error && <p class="muted">Loading…</p>}
        {devices && pending.length === 0 && <p class="muted">No PC is waiting.</p>}
        {pending.length > 0 && (
          <div class="table-wrap">
            <table class="data">
              <thead>
                <tr>
                  <th scope="col">PC</th>
                  <th scope="col">Owner</th>
                  <th scope="col">Paired</th>
                  {can.approveDevices && (
                    <th scope="col">
                      <span class="sr-only">Actions</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody>
                {pending.map((d) => (
                  <tr key={d.id} data-device={d.id}>
                    <td>
                      <strong>{d.name}</strong>
                      <small class="block muted">
                        {d.os} · <code class="id">{d.id}</code>
                      </small>
                    </td>
                    <td>
                      <UserName id={d.owner_id} />
                    </td>
                    <td>
                      <Ago at={d.paired_at} now={now} />
                    </td>
                    {can.approveDevices && (
                      <td class="row-actions">
                        <button class="primary inline" disabled={busy === d.id} onClick={() => void approve(d)}>
                          Approve
                        </button>
                        <button class="danger" disabled={busy === d.id} onClick={() => setRevoking(d)}>
                          Revoke
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </div>
      <CommandApprovals />
      <ConfirmDialog
        open={revoking !== null}
        title="Revoke this PC?"
        confirmLabel="Revoke"
        danger
        busy={busy !== null}
        error={actionError}
        onConfirm={() => void revoke()}
        onCancel={() => {
          setRevoking(null);
          setActionError(null);
        }}
      >
        <p>
          <strong>{revoking?.name}</strong> will be refused from now on (its certificate is revoked). Its owner must pair it
          again to use it.
        </p>
      </ConfirmDialog>
    </section>
  );
}

function ApprovalSetting() {
  const [s, setS] = useState<Settings | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [saving, setSaving] = useState(false);
  useEffect(() => {
    staffApi.settings().then(setS, setError);
  }, []);
  const toggle = async (v: boolean) => {
    setSaving(true);
    setError(null);
    try {
      setS(await staffApi.putSettings({ require_device_approval: v }));
    } catch (e) {
      setError(e);
    } finally {
      setSaving(false);
    }
  };
  return (
    <div class="card setting">
      <label class="check">
        <input
          type="checkbox"
          checked={s?.require_device_approval ?? false}
          disabled={!s || saving}
          onChange={(e) => void toggle(e.currentTarget.checked)}
        />
        <span>
          Newly paired PCs wait for an admin's approval
          <small>When off, a PC its owner pairs is active at once.</small>
        </span>
      </label>
      <ErrorBox error={error} />
    </div>
  );
}

function CommandApprovals() {
  const [cmds, setCmds] = useState<StaffCommand[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const now = useNow();
  useEffect(() => {
    staffApi.commandApprovals().then(setCmds, setError);
  }, []);
  return (
    <div class="card">
      <h3>Commands waiting for your approval</h3>
      <ErrorBox error={error} />
      {cmds === null && !error && <p class="muted">Loading…</p>}
      {cmds?.length === 0 && <p class="muted">None.</p>}
      {cmds && cmds.length > 0 && (
        <>
          <p class="muted small">
            An approval is signed with your own key: approve them in your <a href="#/approvals">approvals inbox</a> (it
            signs with this browser's key) or with <code>tether approve &lt;command id&gt;</code>.
          </p>
          <ul class="plain">
            {cmds.map((c) => (
              <li key={c.command_id}>
                <strong>{c.method}</strong> on <DeviceName id={c.device_id} link /> by <UserName id={c.origin_user_id} />,{" "}
                <Ago at={c.created_at} now={now} /> · {formatState(c.state)} · needs {c.approvals_required ?? "?"} · <code class="id">{c.command_id}</code>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
