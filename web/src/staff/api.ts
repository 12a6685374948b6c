// The staff API (docs/protocol.md; crates/server/src/routes/*.rs): the audit trail and
// its exports, users and roles, every device, commands, alerts, the policy, device
// approvals and admin settings. Every call goes through `api.call` (tokens, one refresh,
// ApiError) or `api.getRaw` (downloads).

import { api, type CommandView, type Device } from "../api";
import {
  auditPath,
  exportFallbackName,
  exportPath,
  filenameFromDisposition,
  type AuditFilters,
  type Role,
} from "./logic";

export interface AuditEvent {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target: string | null;
  outcome: "success" | "failure" | "denied" | string;
  detail: Record<string, unknown> | null;
  trace_id: string | null;
}

export interface AuditPage {
  events: AuditEvent[];
  next_before: number | null;
}

export interface StaffUser {
  id: string;
  email: string;
  role: Role | string;
  totp_enabled: boolean;
  created_at: number;
  devices: number;
}

export interface Alert {
  id: string;
  device_id: string;
  severity: "info" | "warning" | "critical" | string;
  kind: string;
  message: string;
  risk_score: number | null;
  created_at: number;
  acked_at: number | null;
  acked_by: string | null;
}

export interface PolicyView {
  policy_version: number;
  policy_hash: string;
  bundle: Record<string, unknown>;
  builtin: boolean;
  author?: string;
  created_at?: number;
}

export interface DryRunRequest {
  device_id: string;
  method: string;
  params?: Record<string, unknown>;
  user_id?: string;
}

export interface DryRunView {
  decision: "allow" | "deny" | "needs_step_up" | "needs_approval" | string;
  rule?: string;
  reason?: string;
  sensitive?: boolean;
  fresh_second_factor_s?: number;
  approvals?: number;
  approvers?: unknown;
  policy_version: number;
  policy_hash: string;
  user_id: string;
  device_id: string;
  method: string;
}

export interface Transition {
  from: string | null;
  to: string;
  at: number;
  detail: Record<string, unknown>;
}

/** A command as the staff screens show it (the API's CommandView, with every field). */
export interface StaffCommand extends CommandView {
  params?: Record<string, unknown>;
  origin_user_id?: string;
  updated_at?: number;
  policy_version?: number;
  policy_rule?: string;
  approvals_required?: number;
  transitions?: Transition[];
}

export interface Settings {
  require_device_approval: boolean;
}

/** A downloaded export: its name, bytes and text. */
export interface Download {
  name: string;
  blob: Blob;
  text: string;
}

const enc = encodeURIComponent;

export const staffApi = {
  audit(f: AuditFilters, before: number | null, limit: number): Promise<AuditPage> {
    return api.call("GET", auditPath(f, { before, limit }));
  },

  deviceAudit(id: string, before: number | null, limit: number): Promise<AuditPage> {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before !== null) q.set("before", String(before));
    return api.call("GET", `/api/devices/${enc(id)}/audit?${q}`);
  },

  /** Fetches an export with the bearer token (a plain link could not send it). */
  async exportAudit(format: "csv" | "json", f: AuditFilters): Promise<Download> {
    const r = await api.getRaw(exportPath(format, f), format === "csv" ? "text/csv" : "application/json");
    const blob = await r.blob();
    const name = filenameFromDisposition(r.headers.get("Content-Disposition"), exportFallbackName(format, Date.now()));
    return { name, blob, text: await blob.text() };
  },

  async users(): Promise<StaffUser[]> {
    const r = await api.call<{ users: StaffUser[] }>("GET", "/api/users");
    return r.users;
  },

  setRole(id: string, role: Role): Promise<unknown> {
    return api.call("PUT", `/api/users/${enc(id)}/role`, { role });
  },

  devices(): Promise<Device[]> {
    return api.devices();
  },

  commands(device: string, limit = 100): Promise<StaffCommand[]> {
    return api.call("GET", `/api/commands?device=${enc(device)}&limit=${limit}`);
  },

  command(id: string): Promise<StaffCommand> {
    return api.call("GET", `/api/command/${enc(id)}`);
  },

  alerts(all: boolean, limit = 200): Promise<Alert[]> {
    return api.call("GET", `/api/alerts?all=${all}&limit=${limit}`);
  },

  ackAlert(id: string): Promise<Alert> {
    return api.call("POST", `/api/alerts/${enc(id)}/ack`);
  },

  policy(): Promise<PolicyView> {
    return api.call("GET", "/api/policy");
  },

  savePolicy(bundle: Record<string, unknown>): Promise<PolicyView> {
    return api.call("PUT", "/api/policy", bundle);
  },

  dryRun(req: DryRunRequest): Promise<DryRunView> {
    return api.call("POST", "/api/policy/dry-run", req);
  },

  commandApprovals(): Promise<StaffCommand[]> {
    return api.call("GET", "/api/approvals");
  },

  approveDevice(id: string): Promise<Device> {
    return api.call("POST", `/api/devices/${enc(id)}/approve`);
  },

  revokeDevice(id: string): Promise<Device> {
    return api.call("POST", `/api/devices/${enc(id)}/revoke`);
  },

  settings(): Promise<Settings> {
    return api.call("GET", "/api/admin/settings");
  },

  putSettings(s: Settings): Promise<Settings> {
    return api.call("PUT", "/api/admin/settings", s);
  },
};
