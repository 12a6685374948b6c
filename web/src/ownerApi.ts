// The owner's calls beyond api.ts's basics (docs/protocol.md, docs/operations.md): pairing,
// a device's commands, telemetry and audit history, alerts. Each goes through
// `api.call` (the access token, one refresh, ApiError).

import { api, type CommandView } from "./api";
import { ApiError } from "./errors";
import type { Paired } from "./pairing";

const enc = encodeURIComponent;

/** `POST /api/pair/confirm`: the signed-in user takes the PC; answers its name and the matching number. */
export function confirmPairing(token: string): Promise<Paired> {
  return api.call("POST", "/api/pair/confirm", { pair_token: token });
}

/** `GET /api/commands?device=…&limit=…`: the device's commands, newest first. */
export function deviceCommands(deviceId: string, limit = 10): Promise<CommandView[]> {
  return api.call("GET", `/api/commands?device=${enc(deviceId)}&limit=${limit}`);
}

/** A stored telemetry event (`GET /api/devices/{id}/telemetry`), newest first. */
export interface TelemetryView {
  message_id: string;
  seq: number;
  collected_at: number;
  received_at: number;
  risk_score: number;
  body: Record<string, unknown>;
}

export function recentTelemetry(deviceId: string, limit = 120): Promise<TelemetryView[]> {
  return api.call("GET", `/api/devices/${enc(deviceId)}/telemetry?limit=${limit}`);
}

export interface AuditEvent {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target?: string | null;
  outcome: string;
  detail?: unknown;
  trace_id?: string | null;
}

export interface AuditPage {
  events: AuditEvent[];
  next_before?: number | null;
}

/**
 * `GET /api/devices/{id}/audit?before=&limit=`: the device's audit history, newest first.
 * Null when this server has no such route yet (a 404 "no such route").
 */
export async function deviceAudit(deviceId: string, before?: number | null, limit = 20): Promise<AuditPage | null> {
  const q = `limit=${limit}` + (before !== undefined && before !== null ? `&before=${before}` : "");
  try {
    return await api.call<AuditPage>("GET", `/api/devices/${enc(deviceId)}/audit?${q}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && e.code === 9003 && /route/i.test(e.message)) return null;
    throw e;
  }
}

export interface Alert {
  id: string;
  device_id: string;
  severity: "info" | "warning" | "critical" | string;
  kind: string;
  message: string;
  risk_score?: number | null;
  created_at: number;
  acked_at?: number | null;
  acked_by?: string | null;
}

/** `GET /api/alerts`: the open alerts of the user's devices, newest first. */
export function openAlerts(): Promise<Alert[]> {
  return api.call("GET", "/api/alerts");
}

/** `POST /api/alerts/{id}/ack`. */
export function ackAlert(id: string): Promise<Alert> {
  return api.call("POST", `/api/alerts/${enc(id)}/ack`);
}
