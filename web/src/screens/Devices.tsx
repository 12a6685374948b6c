// The device list, with live online / offline from the presence events.

import { useEffect, useState } from "preact/hooks";
import { api, type Device } from "../api";
import { followLive, type LiveState } from "../live";
import { ErrorBox, TopBar } from "../ui";

export function Devices() {
  const [devices, setDevices] = useState<Device[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState<LiveState>("connecting");

  useEffect(() => {
    api.devices().then(setDevices, setError);
    const sub = followLive(
      [],
      (e) => {
        if (e.kind !== "presence") return;
        const online = e.data.online === true;
        setDevices((ds) => ds && ds.map((d) => (d.id === e.device_id ? { ...d, online } : d)));
      },
      (s) => setLive(s),
    );
    return () => sub.stop();
  }, []);

  return (
    <>
      <TopBar title="Your PCs">
        <span class={"live-dot " + live} title={"live view: " + live} />
        <button class="link" onClick={() => void api.logout().then(() => (location.hash = "#/login"))}>
          Sign out
        </button>
      </TopBar>
      <main>
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
              <a href={"#/device/" + encodeURIComponent(d.id)} class="row">
                <span class={"status " + (d.online ? "on" : "off")} aria-hidden="true" />
                <span class="grow">
                  <strong>{d.name}</strong>
                  <small>
                    {d.os} · {d.status}
                  </small>
                </span>
                <span class={"pill " + (d.online ? "on" : "off")}>{d.online ? "online" : "offline"}</span>
              </a>
            </li>
          ))}
        </ul>
      </main>
    </>
  );
}
