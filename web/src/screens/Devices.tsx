// The device list, live: presence events flip online / offline, and a presence event of a
// device the list does not have (a PC paired meanwhile, here or on another phone, coming
// online) loads the list again. The server has no separate "paired" event: a newly paired
// PC's first sign of life is its agent's session, which is that presence event.

import { useEffect, useRef, useState } from "preact/hooks";
import { api, type Device } from "../api";
import { AlertBanners } from "../alertsView";
import type { LiveState } from "../live";
import { subscribeLive } from "../liveHub";
import { NetBanner, OutboxCard } from "../outboxView";
import { pendingToken } from "../pairing";
import { navigate } from "../router";
import { ErrorBox, TopBar } from "../ui";
import { OwnerNav } from "./Approvals";

export function Devices() {
  const [devices, setDevices] = useState<Device[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState<LiveState>("connecting");
  const known = useRef<Set<string>>(new Set());
  const loading = useRef<Promise<void> | null>(null);
  const broke = useRef(false);

  useEffect(() => {
    const load = () => {
      loading.current ??= api
        .devices()
        .then(
          (ds) => {
            known.current = new Set(ds.map((d) => d.id));
            setDevices(ds);
            setError(null);
          },
          (e) => setError(e),
        )
        .finally(() => {
          loading.current = null;
        });
      return loading.current;
    };
    void load();
    return subscribeLive(
      (e) => {
        if (e.kind !== "presence" || !e.device_id) return;
        if (!known.current.has(e.device_id)) {
          // A PC this list has not seen: paired since it loaded.
          void load();
          return;
        }
        const online = e.data.online === true;
        setDevices((ds) => ds && ds.map((d) => (d.id === e.device_id ? { ...d, online } : d)));
      },
      (s) => {
        setLive(s);
        // Back after a break: what changed meanwhile (new PCs, presence) is not replayed.
        if (s === "open" && broke.current) void load();
        broke.current = s === "retrying" || (broke.current && s !== "open");
      },
    );
  }, []);

  const names = Object.fromEntries((devices ?? []).map((d) => [d.id, d.name]));
  const waiting = pendingToken();

  return (
    <>
      <TopBar title="Your PCs">
        <span class={"live-dot " + live} title={"live view: " + live} />
        <OwnerNav />
        <button class="link" onClick={() => void api.logout().then(() => (location.hash = "#/login"))}>
          Sign out
        </button>
      </TopBar>
      <main class="fill">
        <NetBanner />
        {waiting && (
          <p class="notice">
            You opened a pairing link. <a href="#/pair">Continue pairing</a>
          </p>
        )}
        <AlertBanners names={names} />
        <OutboxCard />
        <ErrorBox error={error} />
        {devices === null && !error && <p class="muted">Loading…</p>}
        {devices?.length === 0 && (
          <div class="card">
            <p>No PC yet. Run the agent on your PC and open the pairing link it shows (or scan its QR code).</p>
          </div>
        )}
        <ul class="list">
          {devices?.map((d) => (
            <li key={d.id}>
              <a href={"#/device/" + encodeURIComponent(d.id)} class="row" data-device-id={d.id}>
                <span class={"status " + (d.online ? "on" : "off")} aria-hidden="true" />
                <span class="grow">
                  <strong>{d.name}</strong>
                  <small>
                    {d.os} · {d.status === "awaiting_approval" ? "waiting for an admin's approval" : d.status}
                  </small>
                </span>
                <span class={"pill " + (d.online ? "on" : "off")}>{d.online ? "online" : "offline"}</span>
              </a>
            </li>
          ))}
        </ul>
        <section class="actions">
          <button class="primary big" onClick={() => navigate("/pair")}>
            Pair a PC
          </button>
        </section>
      </main>
    </>
  );
}
