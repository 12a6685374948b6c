// The audit browser: the audit trail newest first with filters (actor, PC, action prefix,
// outcome, time range) kept in the page's URL (`#/staff/audit?device=…`, shareable),
// paged with the server's `next_before` cursor, and exported as CSV or JSON with the same
// filters. An export is fetched with the bearer token (a plain link could not carry it),
// turned into a Blob and saved through an `<a download>` with an object URL: the CSP
// governs fetches (`connect-src 'self'`), not the download of a blob: link.

import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "../errors";
import { formatBytes } from "../format";
import { navigate } from "../router";
import { ErrorBox } from "../ui";
import { staffApi, type AuditEvent, type AuditPage } from "./api";
import { ActionError, ScreenHead, TargetName, UserName, useDirectory } from "./common";
import {
  compactJson,
  currentCursor,
  filterParams,
  filtersFromParams,
  firstPage,
  formatTime,
  localInputToMs,
  msToLocalInput,
  newerPage,
  olderPage,
  OUTCOMES,
  pageNumber,
  summarizeExport,
  type AuditFilters,
  type Pager,
} from "./logic";

const PAGE_SIZES = [25, 50, 100, 200];

/** Action prefixes offered in the filter (any dotted prefix works). */
const ACTIONS = ["command", "policy", "pair", "device", "user", "login", "settings", "alert", "owner_keys", "agent"];

const PRESETS: [string, number][] = [
  ["Last hour", 3600_000],
  ["Last 24 h", 86_400_000],
  ["Last 7 days", 7 * 86_400_000],
];

export function AuditScreen({ query }: { query: URLSearchParams }) {
  const applied = filtersFromParams(query);
  const appliedKey = filterParams(applied).toString();
  const [limit, setLimit] = useState(50);
  // The pager belongs to one set of filters: a new filter starts at the newest page.
  const pagerKey = appliedKey + "|" + limit;
  const [paging, setPaging] = useState<{ key: string; pager: Pager }>({ key: pagerKey, pager: firstPage() });
  const pager = paging.key === pagerKey ? paging.pager : firstPage();
  const setPager = (f: (p: Pager) => Pager) => setPaging({ key: pagerKey, pager: f(pager) });
  const [page, setPage] = useState<AuditPage | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const [gen, setGen] = useState(0);

  useEffect(() => {
    let live = true;
    setLoading(true);
    staffApi.audit(applied, currentCursor(pager), limit).then(
      (p) => {
        if (!live) return;
        setPage(p);
        setError(null);
        setLoading(false);
      },
      (e) => {
        if (!live) return;
        setError(e);
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
  }, [appliedKey, pager.stack.join(","), limit, gen]);

  return (
    <section>
      <ScreenHead title="Audit log" sub="Every security-relevant action: who did what to what, when, and how it ended. Newest first.">
        <button onClick={() => setGen((g) => g + 1)} disabled={loading}>
          Refresh
        </button>
      </ScreenHead>
      <Filters key={appliedKey} applied={applied} />
      <Exports filters={applied} />
      <ErrorBox error={error} />
      <div class="pager-row">
        <span class="muted small" aria-live="polite">
          {loading ? "Loading…" : page ? `Page ${pageNumber(pager)} · ${page.events.length} event${page.events.length === 1 ? "" : "s"}` : ""}
        </span>
        <span class="grow" />
        <label class="inline-field small">
          Per page
          <select value={limit} onChange={(e) => setLimit(Number(e.currentTarget.value))}>
            {PAGE_SIZES.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <button disabled={pageNumber(pager) === 1 || loading} onClick={() => setPager(newerPage)}>
          ‹ Newer
        </button>
        <button
          disabled={!page?.next_before || loading}
          onClick={() => page?.next_before && setPager((p) => olderPage(p, page.next_before!))}
        >
          Older ›
        </button>
      </div>
      {page && <Events events={page.events} />}
    </section>
  );
}

function Filters({ applied }: { applied: AuditFilters }) {
  const dir = useDirectory();
  const [draft, setDraft] = useState<AuditFilters>(applied);
  const set = (k: keyof AuditFilters, v: string | number | undefined) =>
    setDraft((d) => {
      const n = { ...d };
      if (v === undefined || v === "") delete n[k];
      else (n as Record<string, unknown>)[k] = v;
      return n;
    });
  const apply = (f: AuditFilters) => {
    const q = filterParams(f).toString();
    navigate("/staff/audit" + (q ? "?" + q : ""));
  };
  const devices = [...dir.devices.values()].sort((a, b) => a.name.localeCompare(b.name));
  const users = [...dir.users.values()].sort((a, b) => a.email.localeCompare(b.email));
  const badRange = draft.since !== undefined && draft.until !== undefined && draft.since > draft.until;

  return (
    <form
      class="card filters"
      aria-label="Filters"
      onSubmit={(e) => {
        e.preventDefault();
        if (!badRange) apply(draft);
      }}
    >
      <label>
        Actor
        <input
          list="audit-actors"
          value={draft.actor ?? ""}
          placeholder="user id (usr_…)"
          onInput={(e) => set("actor", e.currentTarget.value)}
        />
        <datalist id="audit-actors">
          {users.map((u) => (
            <option key={u.id} value={u.id}>
              {u.email}
            </option>
          ))}
        </datalist>
        {draft.actor && dir.users.get(draft.actor) && <small>{dir.users.get(draft.actor)!.email}</small>}
      </label>
      <label>
        PC
        <select value={draft.device ?? ""} onChange={(e) => set("device", e.currentTarget.value)}>
          <option value="">Any PC</option>
          {draft.device && !dir.devices.has(draft.device) && <option value={draft.device}>{draft.device}</option>}
          {devices.map((d) => (
            <option key={d.id} value={d.id}>
              {d.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Action
        <input
          list="audit-actions"
          value={draft.action ?? ""}
          placeholder="e.g. command or policy.update"
          onInput={(e) => set("action", e.currentTarget.value)}
        />
        <datalist id="audit-actions">
          {ACTIONS.map((a) => (
            <option key={a} value={a} />
          ))}
        </datalist>
      </label>
      <label>
        Outcome
        <select value={draft.outcome ?? ""} onChange={(e) => set("outcome", e.currentTarget.value)}>
          <option value="">Any outcome</option>
          {OUTCOMES.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      </label>
      <label>
        From
        <input type="datetime-local" value={msToLocalInput(draft.since)} onInput={(e) => set("since", localInputToMs(e.currentTarget.value))} />
      </label>
      <label>
        To
        <input type="datetime-local" value={msToLocalInput(draft.until)} onInput={(e) => set("until", localInputToMs(e.currentTarget.value))} />
      </label>
      {badRange && (
        <p class="error" role="alert">
          “From” is after “To”: no event can match. Swap them or clear one.
        </p>
      )}
      <div class="filter-actions">
        <span class="muted small">Time:</span>
        {PRESETS.map(([label, ms]) => (
          <button
            key={label}
            type="button"
            class="chip"
            onClick={() => {
              const f = { ...draft, since: Date.now() - ms };
              delete f.until;
              setDraft(f);
              apply(f);
            }}
          >
            {label}
          </button>
        ))}
        <span class="grow" />
        <button type="button" onClick={() => apply({})}>
          Clear filters
        </button>
        <button class="primary inline" type="submit" disabled={badRange}>
          Apply filters
        </button>
      </div>
    </form>
  );
}

interface Saved {
  format: "csv" | "json";
  name: string;
  url: string;
  size: number;
  summary: ReturnType<typeof summarizeExport>;
}

function Exports({ filters }: { filters: AuditFilters }) {
  const [busy, setBusy] = useState<"csv" | "json" | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<Saved | null>(null);
  const urls = useRef<string[]>([]);
  useEffect(() => () => urls.current.forEach((u) => URL.revokeObjectURL(u)), []);

  const run = async (format: "csv" | "json") => {
    setBusy(format);
    setError(null);
    try {
      const d = await staffApi.exportAudit(format, filters);
      const url = URL.createObjectURL(d.blob);
      urls.current.push(url);
      // The download itself: an <a download> with the object URL, clicked.
      const a = document.createElement("a");
      a.href = url;
      a.download = d.name;
      a.rel = "noopener";
      document.body.append(a);
      a.click();
      a.remove();
      setSaved({ format, name: d.name, url, size: d.blob.size, summary: summarizeExport(format, d.text) });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };

  const active = Object.keys(filters).length;
  return (
    <div class="exports">
      <span class="muted small">
        Export {active ? `the ${active} filter${active === 1 ? "" : "s"} above` : "everything"} (all pages):
      </span>
      <button onClick={() => void run("csv")} disabled={busy !== null}>
        {busy === "csv" ? "Exporting…" : "Export CSV"}
      </button>
      <button onClick={() => void run("json")} disabled={busy !== null}>
        {busy === "json" ? "Exporting…" : "Export JSON"}
      </button>
      {saved && (
        <span class="small" role="status">
          Downloaded{" "}
          <a href={saved.url} download={saved.name}>
            {saved.name}
          </a>{" "}
          ({formatBytes(saved.size)}
          {"events" in saved.summary ? `, ${saved.summary.events} event${saved.summary.events === 1 ? "" : "s"}` : ""})
          {"problem" in saved.summary && <span class="warn"> — {saved.summary.problem}</span>}
        </span>
      )}
      <ActionError
        error={error}
        title={error ? "The export failed" : undefined}
        hint={error instanceof ApiError && error.code === 1002 ? "Narrow the filters (a time range, a PC, an action) and export again." : undefined}
      />
    </div>
  );
}

function Events({ events }: { events: AuditEvent[] }) {
  if (events.length === 0) return <p class="card">No event matches these filters.</p>;
  return (
    <div class="table-wrap">
      <table class="data audit">
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Actor</th>
            <th scope="col">Action</th>
            <th scope="col">Target</th>
            <th scope="col">Outcome</th>
            <th scope="col">Detail</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.seq} data-seq={e.seq} class={"outcome-" + e.outcome}>
              <td class="nowrap">
                {formatTime(e.at)}
                <small class="block muted">#{e.seq}</small>
              </td>
              <td>
                <UserName id={e.actor} />
              </td>
              <td>
                <code class="action">{e.action}</code>
              </td>
              <td class="target-cell">
                <TargetName id={e.target} />
              </td>
              <td>
                <span class={"outcome " + e.outcome}>{e.outcome}</span>
              </td>
              <td class="detail-cell">
                {e.detail && Object.keys(e.detail).length > 0 ? (
                  <details>
                    <summary>
                      <code>{compactJson(e.detail, 90)}</code>
                    </summary>
                    <pre>{JSON.stringify(e.detail, null, 2)}</pre>
                  </details>
                ) : (
                  <span class="muted">–</span>
                )}
                {e.trace_id && <small class="trace muted">trace {e.trace_id}</small>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
