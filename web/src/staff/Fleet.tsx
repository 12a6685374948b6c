// Fleet health: every device with its owner, online / offline live (presence events),
// uptime when the server knows it, last seen, status.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Device } from "../api";
import { ErrorBox } from "../ui";
import { staffApi } from "./api";
import { Ago, ScreenHead, UserName, useDirectory, useLive, useNow } from "./common";
import { formatUptime } from "./logic";

type Show = "all" | "online" | "offline" | "awaiting_approval" | "revoked";

const STATUS_WORDS: Record<string, string> = {
  active: "Active",
  awaiting_approval: "Awaiting approval",
  pending_pairing: "Pairing",
  revoked: "Revoked",
};

export function FleetScreen() {
  const dir = useDirectory();
  const [devices, setDevices] = useState<Device[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loadedAt, setLoadedAt] = useState(Date.now());
  const [show, setShow] = useState<Show>("all");
  const [search, setSearch] = useState("");
  const [gen, setGen] = useState(0);
  const now = useNow(5_000);
  const known = useRef(new Set<string>());

  useEffect(() => {
    let live = true;
    staffApi.devices().then(
      (d) => {
        if (!live) return;
        setDevices(d);
        setLoadedAt(Date.now());
        setError(null);
        known.current = new Set(d.map((x) => x.id));
      },
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [gen]);

  const liveState = useLive((e) => {
    if (e.kind !== "presence" && e.kind !== "telemetry") return;
    if (!known.current.has(e.device_id)) {
      // A PC paired since the list loaded: read the list again (once per new id).
      known.current.add(e.device_id);
      setGen((g) => g + 1);
      dir.reload();
      return;
    }
    setDevices(
      (ds) =>
        ds &&
        ds.map((d) => {
          if (d.id !== e.device_id) return d;
          if (e.kind === "presence") {
            const online = e.data.online === true;
            return { ...d, online, last_seen: e.at };
          }
          return { ...d, last_seen: e.at };
        }),
    );
  });

  const counts = useMemo(() => {
    const ds = devices ?? [];
    return {
      all: ds.length,
      online: ds.filter((d) => d.online).length,
      offline: ds.filter((d) => !d.online && d.status === "active").length,
      awaiting_approval: ds.filter((d) => d.status === "awaiting_approval").length,
      revoked: ds.filter((d) => d.status === "revoked").length,
    };
  }, [devices]);

  const rows = useMemo(() => {
    const q = search.trim().toLowerCase();
    return (devices ?? [])
      .filter((d) => {
        if (show === "online") return d.online;
        if (show === "offline") return !d.online && d.status === "active";
        if (show === "awaiting_approval" || show === "revoked") return d.status === show;
        return true;
      })
      .filter((d) => {
        if (!q) return true;
        const owner = d.owner_id ? (dir.users.get(d.owner_id)?.email ?? d.owner_id) : "";
        return [d.name, d.id, owner, d.os].some((s) => s.toLowerCase().includes(q));
      })
      .sort((a, b) => Number(b.online) - Number(a.online) || a.name.localeCompare(b.name));
  }, [devices, show, search, dir.users]);

  // The server may report uptime (heartbeats); the column shows only when it does.
  const hasUptime = (devices ?? []).some((d) => d.uptime_s !== undefined && d.uptime_s !== null);
  const uptime = (d: Device): string => {
    if (d.uptime_s === null || d.uptime_s === undefined || !d.online) return "–";
    return formatUptime(d.uptime_s + Math.max(0, now - loadedAt) / 1000);
  };

  return (
    <section>
      <ScreenHead title="Fleet health" sub={<>Every PC in the lab, online / offline live ({liveState === "open" ? "live" : liveState}).</>}>
        <button onClick={() => setGen((g) => g + 1)}>Refresh</button>
      </ScreenHead>
      <ErrorBox error={error} />
      <div class="tiles" role="group" aria-label="Filter by state">
        {(
          [
            ["all", "PCs"],
            ["online", "Online"],
            ["offline", "Offline"],
            ["awaiting_approval", "Awaiting approval"],
            ["revoked", "Revoked"],
          ] as [Show, string][]
        ).map(([k, label]) => (
          <button key={k} class={"tile " + k + (show === k ? " selected" : "")} aria-pressed={show === k} onClick={() => setShow(k)}>
            <strong>{counts[k]}</strong>
            <span>{label}</span>
          </button>
        ))}
      </div>
      <label class="inline-field">
        Search
        <input type="search" value={search} placeholder="name, owner, id" onInput={(e) => setSearch(e.currentTarget.value)} />
      </label>
      {devices === null && !error && <p class="muted">Loading…</p>}
      {devices?.length === 0 && <p class="card">No PC has been paired yet.</p>}
      {devices && devices.length > 0 && (
        <div class="table-wrap">
          <table class="data fleet">
            <thead>
              <tr>
                <th scope="col">PC</th>
                <th scope="col">Owner</th>
                <th scope="col">Presence</th>
                {hasUptime && <th scope="col">Uptime</th>}
                <th scope="col">Last seen</th>
                <th scope="col">Status</th>
                <th scope="col">
                  <span class="sr-only">Links</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((d) => (
                <tr key={d.id} data-device={d.id}>
                  <td class="pc">
                    <strong>{d.name}</strong>
                    <small class="block muted">
                      {d.os} · <code class="id">{d.id}</code>
                    </small>
                  </td>
                  <td data-label="Owner">
                    <UserName id={d.owner_id} />
                  </td>
                  <td class="presence">
                    <span class={"pill " + (d.online ? "on" : "off")}>{d.online ? "online" : "offline"}</span>
                  </td>
                  {hasUptime && <td data-label="Uptime">{uptime(d)}</td>}
                  <td data-label="Last seen">{d.online ? "now" : <Ago at={d.last_seen} now={now} />}</td>
                  <td data-label="Status">
                    <span class={"status-word " + d.status}>{STATUS_WORDS[d.status] ?? d.status}</span>
                  </td>
                  <td class="links">
                    <a href={"#/staff/timeline/" + encodeURIComponent(d.id)}>Timeline</a>
                    <a href={"#/staff/audit?device=" + encodeURIComponent(d.id)}>Audit</a>
                  </td>
                </tr>
              ))}
              {rows.length === 0 && (
                <tr>
                  <td colSpan={7} class="muted">
                    No PC matches.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
