// The Tether web app: entry point and the screens' routing. Signed-out users are sent to
// the login screen and brought back to where they were.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, type User } from "./api";
import { capturePairLink, pendingToken } from "./pairing";
import { registerServiceWorker } from "./pwa";
import { navigate, useRoute } from "./router";
import { Login, Register } from "./screens/Auth";
import { DevicePage } from "./screens/Device";
import { Devices } from "./screens/Devices";
import { OfflineStart } from "./screens/Offline";
import { PairScreen } from "./screens/Pair";
import { Staff, StaffEntry } from "./staff/Staff";
import { AppGuard } from "./screens/AppGuard";
import { Approvals } from "./screens/Approvals";
import { Security } from "./screens/Security";
import "./style.css";

// A pairing link (`/pair#token=…`, the agent's QR code): keep the token, show the pair screen.
capturePairLink(location, history);
registerServiceWorker();

function App() {
  const route = useRoute();
  const [user, setUser] = useState<User | null>(api.currentUser);
  const [ready, setReady] = useState(false);
  const [expired, setExpired] = useState(false);

  useEffect(() => {
    const off = api.onSession((u, change) => {
      // Only a session that ended on its own (expired, revoked) gets the notice.
      setExpired(change === "ended");
      setUser(u);
    });
    api.resume().finally(() => setReady(true));
    return off;
  }, []);

  if (!ready) return <p class="muted center">Loading…</p>;

  if (!user) {
    if (route.name === "register") return <Register />;
    // Started offline (the service worker's copy) with a session to resume: wait for the network.
    if (api.hasStoredSession && !navigator.onLine) return <OfflineStart onOnline={() => void api.resume()} />;
    if (route.name === "pair" && pendingToken() && !expired) {
      return <Login next="/pair" notice="Sign in to pair the PC that showed you this code." />;
    }
    const here = location.hash.replace(/^#/, "");
    const next = route.name === "login" ? (route.query.get("next") ?? "/devices") : here || "/devices";
    return <Login next={next} {...(expired ? { notice: "Your session ended. Sign in again to continue." } : {})} />;
  }

  switch (route.name) {
    case "device":
      return route.arg ? <DevicePage id={route.arg} /> : <Devices />;
    case "login":
    case "register":
      navigate(route.query.get("next") ?? "/devices");
      return null;
    case "pair":
      return <PairScreen />;
    case "security":
      return <Security />;
    case "approvals":
      return <Approvals />;
    case "staff":
      return <Staff arg={route.arg} query={route.query} user={user} />;
    default:
      return (
        <>
          <StaffEntry user={user} />
          <Devices />
        </>
      );
  }
}

const root = document.getElementById("app");
// AppGuard: the app lock and the step-up prompt, over whatever screen is open.
if (root)
  render(
    <>
      <App />
      <AppGuard />
    </>,
    root,
  );
