// The Tether web app: entry point and the screens' routing. Signed-out users are sent to
// the login screen and brought back to where they were.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, type User } from "./api";
import { navigate, useRoute } from "./router";
import { Login, Register } from "./screens/Auth";
import { DevicePage } from "./screens/Device";
import { Devices } from "./screens/Devices";
import "./style.css";

function App() {
  const route = useRoute();
  const [user, setUser] = useState<User | null>(api.currentUser);
  const [ready, setReady] = useState(false);
  const [expired, setExpired] = useState(false);

  useEffect(() => {
    const off = api.onSession((u) => {
      setUser((prev) => {
        if (prev && !u) setExpired(true);
        return u;
      });
    });
    api.resume().finally(() => setReady(true));
    return off;
  }, []);

  if (!ready) return <p class="muted center">Loading…</p>;

  if (!user) {
    if (route.name === "register") return <Register />;
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
    default:
      return <Devices />;
  }
}

const root = document.getElementById("app");
if (root) render(<App />, root);
