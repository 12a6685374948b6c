/// <reference types="vite/client" />
// Installable app: the service worker (public/sw.js) keeps the app shell for an offline
// start. Registered only from a production build over HTTPS (the dev server serves the
// sources, which the worker must not pin).

export function registerServiceWorker(): void {
  if (!import.meta.env.PROD || !("serviceWorker" in navigator) || location.protocol !== "https:") return;
  addEventListener("load", () => {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((e: unknown) => {
      // Not fatal: the app works without it, it just cannot start offline.
      console.warn("service worker not registered:", e);
    });
  });
}
