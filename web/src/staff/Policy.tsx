// The policy editor: the bundle in force as JSON with its version, checked in the
// browser (JSON, format 1) and by the server on save (`422 1005` naming the field path,
// shown as such); saving asks first and warns when someone else saved meanwhile. A dry
// run asks the saved policy what it would decide. Auditors read the policy only.

import { useEffect, useState } from "preact/hooks";
import { ApiError } from "../errors";
import { ErrorBox } from "../ui";
import { staffApi, type DryRunView, type PolicyView } from "./api";
import { ActionError, ConfirmDialog, ReadOnlyNote, ScreenHead, UserName, useDirectory } from "./common";
import { checkPolicyText, formatTime, METHODS, parsePolicyError, type Abilities } from "./logic";

const pretty = (v: unknown) => JSON.stringify(v, null, 2);

export function PolicyScreen({ can }: { can: Abilities }) {
  const [policy, setPolicy] = useState<PolicyView | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [text, setText] = useState("");
  const [check, setCheck] = useState<ReturnType<typeof checkPolicyText> | null>(null);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [confirming, setConfirming] = useState<{ bundle: Record<string, unknown>; newer: PolicyView | null } | null>(null);
  const [saving, setSaving] = useState(false);
  const [saved, setSaved] = useState<string | null>(null);

  const load = () => {
    setLoadError(null);
    staffApi.policy().then(
      (p) => {
        setPolicy(p);
        setText(pretty(p.bundle));
        setCheck(null);
        setSaveError(null);
      },
      setLoadError,
    );
  };
  useEffect(load, []);

  const dirty = policy !== null && text !== pretty(policy.bundle);

  const runCheck = () => {
    const c = checkPolicyText(text);
    setCheck(c);
    setSaveError(null);
    setSaved(null);
    return c;
  };

  const askSave = async () => {
    const c = runCheck();
    if (!c.ok || !policy) return;
    // Someone may have saved since this page loaded: say so before replacing it.
    let newer: PolicyView | null = null;
    try {
      const now = await staffApi.policy();
      if (now.policy_version !== policy.policy_version) newer = now;
    } catch (e) {
      setSaveError(e);
      return;
    }
    setConfirming({ bundle: c.bundle, newer });
  };

  const save = async () => {
    if (!confirming) return;
    setSaving(true);
    setSaveError(null);
    try {
      const p = await staffApi.savePolicy(confirming.bundle);
      setPolicy(p);
      setText(pretty(p.bundle));
      setSaved(`Saved as version ${p.policy_version}.`);
      setConfirming(null);
    } catch (e) {
      setSaveError(e);
      setConfirming(null);
    } finally {
      setSaving(false);
    }
  };

  const fieldError = saveError instanceof ApiError && saveError.code === 1005 ? parsePolicyError(saveError.message) : null;

  return (
    <section>
      <ScreenHead
        title="Policy"
        sub={
          policy ? (
            <>
              Version <strong data-testid="policy-version">{policy.policy_version}</strong>
              {policy.builtin ? " (built-in: nothing saved yet)" : ""}
              {policy.author && (
                <>
                  {" "}
                  · saved by <UserName id={policy.author} />
                </>
              )}
              {policy.created_at ? ` · ${formatTime(policy.created_at)}` : ""} · hash <code class="id">{policy.policy_hash.slice(0, 16)}…</code>
            </>
          ) : (
            "Loading…"
          )
        }
      >
        <a href="#/staff/audit?action=policy">Policy changes in the audit log</a>
      </ScreenHead>
      {!can.editPolicy && <ReadOnlyNote what="the policy" />}
      <ErrorBox error={loadError} />
      <div class="policy-grid">
        <div class="card policy-editor">
          <label for="policy-text">
            Policy bundle (JSON)
            <small>
              Rules are tried in order; the first that holds decides. Format: docs/policy.md.
            </small>
          </label>
          <textarea
            id="policy-text"
            class="code"
            spellcheck={false}
            readOnly={!can.editPolicy}
            aria-invalid={check !== null && !check.ok}
            value={text}
            rows={20}
            onInput={(e) => {
              setText(e.currentTarget.value);
              setCheck(null);
              setSaved(null);
            }}
          />
          {check && !check.ok && (
            <div class="error" role="alert">
              <strong>Not saved: the policy does not check</strong>
              <p>
                {check.message}
                {check.line !== undefined && ` (line ${check.line}, column ${check.column})`}
              </p>
              <p class="hint">Correct it and check again.</p>
            </div>
          )}
          {check?.ok && !saveError && !saved && (
            <p class="ok-note" role="status">
              Looks well-formed. The server checks every field when you save.
            </p>
          )}
          {fieldError ? (
            <div class="error" role="alert">
              <strong>The server refused the policy ({(saveError as ApiError).error} {(saveError as ApiError).code})</strong>
              {fieldError.path && (
                <p>
                  Field <code class="field-path">{fieldError.path}</code>
                </p>
              )}
              <p>{fieldError.reason}</p>
              <p class="hint">Correct that field and save again. Nothing was saved.</p>
              {saveError instanceof ApiError && saveError.traceId && <p class="detail">trace {saveError.traceId}</p>}
            </div>
          ) : (
            <ErrorBox error={saveError} />
          )}
          {saved && (
            <p class="notice" role="status">
              {saved}
            </p>
          )}
          {can.editPolicy && (
            <div class="button-row">
              <button onClick={runCheck}>Check</button>
              <button
                onClick={() => {
                  const c = checkPolicyText(text);
                  if (c.ok) setText(pretty(c.bundle));
                  else setCheck(c);
                }}
              >
                Format
              </button>
              <button disabled={!dirty} onClick={() => policy && (setText(pretty(policy.bundle)), setCheck(null), setSaveError(null))}>
                Discard changes
              </button>
              <span class="grow" />
              <button class="primary inline" disabled={!policy || !dirty} onClick={() => void askSave()}>
                Save policy
              </button>
            </div>
          )}
        </div>
        {can.editPolicy && <DryRun />}
      </div>
      <ConfirmDialog
        open={confirming !== null}
        title={`Save policy version ${(confirming?.newer ?? policy)?.policy_version !== undefined ? ((confirming?.newer ?? policy)!.policy_version + 1) : ""}?`}
        confirmLabel={confirming?.newer ? "Replace it anyway" : "Save"}
        danger={Boolean(confirming?.newer)}
        busy={saving}
        onConfirm={() => void save()}
        onCancel={() => setConfirming(null)}
      >
        <p>
          It applies to every command from now on ({Array.isArray(confirming?.bundle.rules) ? confirming.bundle.rules.length : 0} rules, default{" "}
          <strong>{String(confirming?.bundle.default ?? "allow")}</strong>). The change is audited.
        </p>
        {confirming?.newer && (
          <p class="warn">
            Someone saved version {confirming.newer.policy_version} after you opened this page (you edited version{" "}
            {policy?.policy_version}). Saving replaces their change; cancel and reload to see it first.
          </p>
        )}
      </ConfirmDialog>
    </section>
  );
}

function DryRun() {
  const dir = useDirectory();
  const devices = [...dir.devices.values()].sort((a, b) => a.name.localeCompare(b.name));
  const users = [...dir.users.values()].sort((a, b) => a.email.localeCompare(b.email));
  const [device, setDevice] = useState("");
  const [method, setMethod] = useState<string>("lock_screen");
  const [asUser, setAsUser] = useState("");
  const [params, setParams] = useState("");
  const [result, setResult] = useState<DryRunView | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const run = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setResult(null);
    let p: Record<string, unknown> | undefined;
    if (params.trim()) {
      try {
        const v: unknown = JSON.parse(params);
        if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("parameters are a JSON object");
        p = v as Record<string, unknown>;
      } catch (err) {
        setError(new Error(`Parameters: ${err instanceof Error ? err.message : String(err)}`));
        return;
      }
    }
    setBusy(true);
    try {
      setResult(
        await staffApi.dryRun({
          device_id: device,
          method,
          ...(p ? { params: p } : {}),
          ...(asUser ? { user_id: asUser } : {}),
        }),
      );
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card dry-run" onSubmit={(e) => void run(e)}>
      <h3>Dry run</h3>
      <p class="muted small">What the saved policy decides now; nothing is sent or stored. Save edits first to try them.</p>
      <label>
        PC
        <select required value={device} onChange={(e) => setDevice(e.currentTarget.value)}>
          <option value="">Choose a PC…</option>
          {devices.map((d) => (
            <option key={d.id} value={d.id}>
              {d.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Method
        <select value={method} onChange={(e) => setMethod(e.currentTarget.value)}>
          {METHODS.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
      </label>
      <label>
        As user
        <select value={asUser} onChange={(e) => setAsUser(e.currentTarget.value)}>
          <option value="">me</option>
          {users.map((u) => (
            <option key={u.id} value={u.id}>
              {u.email} ({u.role})
            </option>
          ))}
        </select>
      </label>
      <label>
        Parameters <small>optional, JSON object</small>
        <input class="code" value={params} placeholder="{}" onInput={(e) => setParams(e.currentTarget.value)} />
      </label>
      <button class="primary" type="submit" disabled={busy || !device}>
        {busy ? "Asking…" : "Dry run"}
      </button>
      <ActionError error={error} />
      {result && (
        <div class={"decision " + result.decision} role="status">
          <p>
            <strong class="decision-word">{result.decision.replace(/_/g, " ")}</strong>
            {result.rule ? (
              <>
                {" "}
                by rule <code>{result.rule}</code>
              </>
            ) : (
              " by the default"
            )}
          </p>
          {result.reason && <p>{result.reason}</p>}
          <p class="muted small">
            policy v{result.policy_version}
            {result.sensitive ? " · sensitive" : ""}
            {result.fresh_second_factor_s ? ` · second factor within ${result.fresh_second_factor_s} s` : ""}
            {result.approvals ? ` · ${result.approvals} approval(s)` : ""}
          </p>
        </div>
      )}
    </form>
  );
}
