// The approvals inbox: commands other users sent that policy holds until authorised users
// approve them (`GET /api/approvals`). Approving signs the command's own statement
// (docs/protocol.md section 6.11: the same command_id, device_id, method, params and
// not_after its owner signed) with this user's key — a passkey or this browser's key —
// and sends it with `POST /api/command/{id}/approve`. The PC counts an approval only if
// its owner pinned that key (as an approver key) and it is not the key that signed the
// command.

import { useEffect, useState } from "preact/hooks";
import { api, type ApprovalCommand } from "../api";
import { formatState } from "../format";
import { signStatement } from "../passkeys";
import { commandStatement } from "../statement";
import { ErrorBox, TopBar } from "../ui";
import { InboxIcon, ShieldIcon } from "./ownerIcons";
import "./owner.css";

/** The body of an approval: a signature over the command's statement when the owner signed it. */
export async function approvalSignature(c: ApprovalCommand): Promise<unknown> {
  if (c.not_after === undefined) return undefined; // unsigned: every PC refuses it anyway
  const statement = commandStatement({
    commandId: c.command_id,
    deviceId: c.device_id,
    method: c.method,
    params: c.params ?? {},
    notAfter: c.not_after,
  });
  return signStatement(statement);
}

export function Approvals() {
  const [list, setList] = useState<ApprovalCommand[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [done, setDone] = useState<ApprovalCommand[]>([]);

  const load = () => api.approvals().then(setList, setError);
  useEffect(() => {
    void load();
  }, []);

  const approve = async (c: ApprovalCommand) => {
    setBusy(c.command_id);
    setError(null);
    try {
      const v = await api.approve(c.command_id, await approvalSignature(c));
      setDone((d) => [v, ...d]);
      setList((l) => l && l.filter((x) => x.command_id !== c.command_id));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };

  return (
    <>
      <TopBar title="Approvals" back="#/devices">
        <button type="button" class="link" onClick={() => void load()}>
          Refresh
        </button>
      </TopBar>
      <main class="approvals">
        <ErrorBox error={error} />
        {done.map((v) => (
          <p key={v.command_id} class="notice" role="status">
            Approved {v.method} on {v.device_id}:{" "}
            {v.state === "awaiting_approval"
              ? `${v.approvals?.length ?? 0} of ${v.approvals_required ?? "?"} approvals, it waits for more`
              : `it is ${formatState(v.state).toLowerCase()}`}
            .
          </p>
        ))}
        {list === null && !error && <p class="muted">Loading…</p>}
        {list?.length === 0 && (
          <div class="card">
            <p>Nothing waits for your approval.</p>
          </div>
        )}
        <ul class="list">
          {list?.map((c) => (
            <li key={c.command_id} class="card approval">
              <div class="card-head">
                <h2>{c.method.replace(/_/g, " ")}</h2>
                <span class="pill">
                  {c.approvals?.length ?? 0}/{c.approvals_required ?? "?"}
                </span>
              </div>
              <dl class="facts">
                <dt>PC</dt>
                <dd class="ids">{c.device_id}</dd>
                <dt>From</dt>
                <dd class="ids">{c.origin_user_id}</dd>
                <dt>Sent</dt>
                <dd>{new Date(c.created_at).toLocaleString()}</dd>
                <dt>Expires</dt>
                <dd>{new Date(c.not_after ?? c.expires_at).toLocaleString()}</dd>
                {Object.keys(c.params ?? {}).length > 0 && (
                  <>
                    <dt>Params</dt>
                    <dd class="ids">
                      <code>{JSON.stringify(c.params)}</code>
                    </dd>
                  </>
                )}
                {c.policy_rule && (
                  <>
                    <dt>Rule</dt>
                    <dd>{c.policy_rule}</dd>
                  </>
                )}
              </dl>
              {c.not_after === undefined && (
                <p class="hint small">Not signed by its owner: the PC will refuse it whatever the approvals.</p>
              )}
              <button
                type="button"
                class="primary"
                disabled={busy !== null}
                onClick={() => void approve(c)}
                aria-label={`Approve ${c.method} on ${c.device_id}`}
              >
                {busy === c.command_id ? "Signing…" : "Approve"}
              </button>
            </li>
          ))}
        </ul>
      </main>
    </>
  );
}

/** The header's links to the inbox (with how many commands wait) and to Security. */
export function OwnerNav() {
  return (
    <>
      <ApprovalsLink />
      <a href="#/security" class="bar-icon" aria-label="Security" title="Security">
        <ShieldIcon />
      </a>
    </>
  );
}

/** A link to the inbox with how many commands wait. */
export function ApprovalsLink() {
  const [n, setN] = useState(0);
  useEffect(() => {
    api.approvals().then((l) => setN(l.length), () => undefined);
  }, []);
  return (
    <a href="#/approvals" class="bar-icon" aria-label={n > 0 ? `Approvals (${n} waiting)` : "Approvals"} title="Approvals">
      <InboxIcon />
      {n > 0 && <span class="badge">{n}</span>}
    </a>
  );
}
