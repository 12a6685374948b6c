// Shared pieces of the staff dashboard: one live stream for every screen, the directory
// that names users and devices, a confirm dialog, a ticking clock.

import type { ComponentChildren } from "preact";
import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import type { Device } from "../api";
import { formatAgo } from "../format";
import type { LiveEvent, LiveHandler, LiveState } from "../live";
import { describeError } from "../errors";
import { ErrorBox } from "../ui";
import type { StaffUser } from "./api";
import { formatTime } from "./logic";

// ---------------------------------------------------------------------------------------
// Live events: the shell follows /api/live once (every device staff may see) and fans the
// events out, so the screens do not each hold a connection open.

export interface LiveHub {
  state: LiveState;
  subscribe(h: LiveHandler): () => void;
}

export const LiveContext = createContext<LiveHub>({ state: "connecting", subscribe: () => () => undefined });

/** Calls `h` for each live event while the component is mounted. */
export function useLive(h: (e: LiveEvent) => void): LiveState {
  const hub = useContext(LiveContext);
  const ref = useRef(h);
  ref.current = h;
  useEffect(() => hub.subscribe((e) => ref.current(e)), [hub]);
  return hub.state;
}

// ---------------------------------------------------------------------------------------
// The directory: user ids to emails, device ids to names.

export interface Directory {
  users: Map<string, StaffUser>;
  devices: Map<string, Device>;
  usersError: unknown;
  devicesError: unknown;
  reload(): void;
}

export const DirectoryContext = createContext<Directory>({
  users: new Map(),
  devices: new Map(),
  usersError: null,
  devicesError: null,
  reload: () => undefined,
});

export const useDirectory = () => useContext(DirectoryContext);

/** A user shown by email (with the id as a tooltip), or the id when unknown. */
export function UserName({ id }: { id: string | null | undefined }) {
  const { users } = useDirectory();
  if (!id) return <span class="muted">–</span>;
  const u = users.get(id);
  return u ? (
    <span title={id}>{u.email}</span>
  ) : (
    <code class="id" title="unknown user (or the user list could not be loaded)">
      {id}
    </code>
  );
}

/** A device shown by name (with its id as a tooltip), or the id when unknown. */
export function DeviceName({ id, link = false }: { id: string | null | undefined; link?: boolean }) {
  const { devices } = useDirectory();
  if (!id) return <span class="muted">–</span>;
  const d = devices.get(id);
  const label = d ? d.name : id;
  const body = d ? <span title={id}>{label}</span> : <code class="id">{id}</code>;
  return link ? <a href={"#/staff/timeline/" + encodeURIComponent(id)}>{body}</a> : body;
}

/** The target of an audit event: a device or a user by name when it is one. */
export function TargetName({ id }: { id: string | null }) {
  const { devices, users } = useDirectory();
  if (!id) return <span class="muted">–</span>;
  if (devices.has(id)) return <DeviceName id={id} link />;
  if (users.has(id)) return <UserName id={id} />;
  return <code class="id">{id}</code>;
}

// ---------------------------------------------------------------------------------------
// Time

/** Now, re-rendered every `ms` (relative times stay current). */
export function useNow(ms = 15_000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/** A time as "5 min ago" with the exact time as a tooltip. */
export function Ago({ at, now }: { at: number | null | undefined; now: number }) {
  if (at === null || at === undefined) return <span class="muted">never</span>;
  return (
    <time dateTime={new Date(at).toISOString()} title={formatTime(at)}>
      {formatAgo(at, now)}
    </time>
  );
}

// ---------------------------------------------------------------------------------------
// Dialogs and page pieces

/**
 * A modal confirmation: the question, Cancel and a confirm button. `busy` disables both
 * while the action runs; `error` shows what went wrong (the dialog stays open).
 */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  confirmLabel: string;
  danger?: boolean;
  busy?: boolean;
  error?: unknown;
  onConfirm: () => void;
  onCancel: () => void;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog ref={ref} class="confirm" onClose={props.onCancel} aria-labelledby="confirm-title">
      <h2 id="confirm-title">{props.title}</h2>
      {props.children}
      <ErrorBox error={props.error} />
      <div class="dialog-actions">
        <button type="button" onClick={props.onCancel} disabled={props.busy}>
          Cancel
        </button>
        <button
          type="button"
          class={props.danger ? "danger" : "primary inline"}
          onClick={props.onConfirm}
          disabled={props.busy}
        >
          {props.busy ? "Working…" : props.confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

/** A screen's heading with its actions on the right. */
export function ScreenHead(props: { title: string; sub?: ComponentChildren; children?: ComponentChildren }) {
  return (
    <div class="screen-head">
      <div class="grow">
        <h2>{props.title}</h2>
        {props.sub && <p class="muted small">{props.sub}</p>}
      </div>
      {props.children && <div class="screen-actions">{props.children}</div>}
    </div>
  );
}

/** A read-only notice for auditors. */
export function ReadOnlyNote({ what }: { what: string }) {
  return (
    <p class="readonly-note" role="note">
      Read-only: auditors can look at {what} but not change it.
    </p>
  );
}

/** An error box whose title and hint a screen may override (it knows better what to do). */
export function ActionError({ error, title, hint }: { error: unknown; title?: string | undefined; hint?: string | undefined }) {
  if (!error) return null;
  const d = describeError(error);
  return (
    <div class="error" role="alert">
      <strong>{title ?? d.title}</strong>
      <p>{d.message}</p>
      <p class="hint">{hint ?? d.hint}</p>
      {title && <p class="detail">{d.title}</p>}
      {d.detail && <p class="detail">{d.detail}</p>}
    </div>
  );
}
