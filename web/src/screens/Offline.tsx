// The app started without a network (from the service worker's copy) while the tab still
// has a session: say so, and resume the session as soon as the browser is online.

import { useEffect } from "preact/hooks";

export function OfflineStart({ onOnline }: { onOnline: () => void }) {
  useEffect(() => {
    addEventListener("online", onOnline);
    return () => removeEventListener("online", onOnline);
  }, [onOnline]);
  return (
    <main class="narrow">
      <h1 class="brand">Tether</h1>
      <section class="card" role="status">
        <h2>You are offline</h2>
        <p>Tether opened from this phone's copy. It signs you in again and shows your PCs as soon as the connection is back.</p>
        <p class="small muted">Commands you queued earlier are kept and sent then.</p>
      </section>
    </main>
  );
}
