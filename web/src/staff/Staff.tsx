// The staff dashboard (`#/staff/<screen>`): a sidebar at ≥ 900 px (a scrolling tab strip
// on a phone), one live stream shared by the screens, and the directory naming users and
// devices. Admins see everything; auditors read (no role changes, policy saves or
// approvals); students get a short refusal and never the navigation.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, type Device, type User } from "../api";
import type { LiveEvent, LiveHandler, LiveState } from "../live";
import { subscribeLive } from "../liveHub";
import { staffApi, type StaffUser } from "./api";
import { ActionError, DirectoryContext, LiveContext, type Directory, type LiveHub } from "./common";
import { abilities, SCREENS, staffScreen } from "./logic";
import { AlertsScreen } from "./Alerts";
import { ApprovalsScreen } from "./Approvals";
import { AuditScreen } from "./Audit";
import { FleetScreen } from "./Fleet";
import { PolicyScreen } from "./Policy";
import { TimelineScreen } from "./Timeline";
import { UsersScreen } from "./Users";
import "./staff.css";

export function Staff({ arg, query, user }: { arg?: string | undefined; query: URLSearchParams; user: User }) {
  const can = abilities(user.role);
  if (!can.staff) return <NotStaff />;
  return <Shell arg={arg} query={query} user={user} />;
}

function NotStaff() {
  return (
    <main class="narrow">
      <div class="card">
        <h2>Not available</h2>
        <p>The staff dashboard is for lab admins and auditors. Your account manages its own PCs.</p>
        <p>
          <a href="#/devices">Go to your PCs</a>
        </p>
      </div>
    </main>
  );
}

function Shell({ arg, query, user }: { arg?: string | undefined; query: URLSearchParams; user: User }) {
  const { screen, arg: sub } = staffScreen(arg);
  const can = abilities(user.role);

  // One live stream for every screen (the page's shared connection, liveHub.ts).
  const [liveState, setLiveState] = useState<LiveState>("connecting");
  const handlers = useRef(new Set<LiveHandler>());
  useEffect(
    () =>
      subscribeLive(
        (e: LiveEvent) => {
          for (const h of handlers.current) h(e);
        },
        (st) => setLiveState(st),
      ),
    [],
  );
  const hub = useMemo<LiveHub>(
    () => ({
      state: liveState,
      subscribe: (h) => {
        handlers.current.add(h);
        return () => handlers.current.delete(h);
      },
    }),
    [liveState],
  );

  // The directory: users (admins and auditors may list them) and devices.
  const [users, setUsers] = useState<StaffUser[]>([]);
  const [devices, setDevices] = useState<Device[]>([]);
  const [usersError, setUsersError] = useState<unknown>(null);
  const [devicesError, setDevicesError] = useState<unknown>(null);
  const [gen, setGen] = useState(0);
  useEffect(() => {
    staffApi.users().then(
      (u) => {
        setUsers(u);
        setUsersError(null);
      },
      setUsersError,
    );
    staffApi.devices().then(
      (d) => {
        setDevices(d);
        setDevicesError(null);
      },
      setDevicesError,
    );
  }, [gen]);
  const directory = useMemo<Directory>(
    () => ({
      users: new Map(users.map((u) => [u.id, u])),
      devices: new Map(devices.map((d) => [d.id, d])),
      usersError,
      devicesError,
      reload: () => setGen((g) => g + 1),
    }),
    [users, devices, usersError, devicesError],
  );

  // On a phone the navigation is a scrolling strip: keep the current screen's tab in view.
  const navRef = useRef<HTMLElement>(null);
  useEffect(() => {
    const a = navRef.current?.querySelector<HTMLElement>('[aria-current="page"]');
    const strip = navRef.current;
    if (a && strip && strip.scrollWidth > strip.clientWidth) {
      strip.scrollLeft = a.offsetLeft - (strip.clientWidth - a.offsetWidth) / 2;
    }
  }, [screen]);

  const signOut = () => void api.logout().then(() => (location.hash = "#/login"));

  return (
    <LiveContext.Provider value={hub}>
      <DirectoryContext.Provider value={directory}>
        <div class="staff">
          <header class="staff-top">
            <a class="staff-brand" href="#/staff/fleet">
              Tether <span>staff</span>
            </a>
            <span class={"live-dot " + liveState} title={"live view: " + liveState} aria-label={"live view " + liveState} />
            {liveState === "retrying" && (
              <span class="live-note" role="status">
                live view reconnecting…
              </span>
            )}
            <span class="grow" />
            <span class="who">
              <span class="email">{user.email}</span>
              <span class={"role-badge " + user.role}>{user.role}</span>
            </span>
            <button class="link" onClick={signOut}>
              Sign out
            </button>
          </header>
          <nav class="staff-nav" aria-label="Staff" ref={navRef}>
            <ul>
              {SCREENS.map((s) => (
                <li key={s.id}>
                  <a href={"#/staff/" + s.id} aria-current={s.id === screen ? "page" : undefined}>
                    {s.label}
                  </a>
                </li>
              ))}
              <li class="sep">
                <a href="#/devices">My PCs</a>
              </li>
            </ul>
            {!can.changeRoles && <p class="nav-note">Auditor: read-only</p>}
          </nav>
          <main class="staff-main">
            {(usersError || devicesError) && (
              <ActionError
                error={usersError ?? devicesError}
                title={usersError ? "The list of users could not be loaded" : "The list of PCs could not be loaded"}
                hint="Ids are shown instead of names. Reload the page to try again."
              />
            )}
            {screen === "fleet" && <FleetScreen />}
            {screen === "timeline" && <TimelineScreen deviceId={sub} />}
            {screen === "alerts" && <AlertsScreen can={can} />}
            {screen === "approvals" && <ApprovalsScreen can={can} />}
            {screen === "users" && <UsersScreen can={can} me={user} />}
            {screen === "policy" && <PolicyScreen can={can} />}
            {screen === "audit" && <AuditScreen query={query} />}
          </main>
        </div>
      </DirectoryContext.Provider>
    </LiveContext.Provider>
  );
}

/** The strip above the owner screens that takes staff to their dashboard. */
export function StaffEntry({ user }: { user: User }) {
  if (!abilities(user.role).staff) return null;
  return (
    <nav class="staff-entry" aria-label="Staff">
      <a href="#/staff/fleet">Staff dashboard ›</a>
      <span class={"role-badge " + user.role}>{user.role}</span>
    </nav>
  );
}
