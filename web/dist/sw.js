// Tether's service worker: keeps the app shell (index.html and the built assets) so the
// app starts without a network. It never answers for the API: /api/*, /agent/*, the live
// stream and everything that is not a plain GET of the app go to the network untouched,
// and nothing from them is ever cached.
//
// - Navigations (/, /pair, …): the network first (the page names the current assets),
//   the cached page when the network fails.
// - /assets/*: content-hashed and immutable, so the cache first. Each fresh page prunes
//   the assets it no longer names.
// - Other top-level files (icons, the manifest): the network first, the cache offline.

const CACHE = "tether-shell-v1";
const SHELL = "/";
const STATIC = ["/favicon.svg", "/manifest.webmanifest", "/icon-192.png", "/icon-512.png"];

const assetsOf = (html) => [...new Set([...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]))];

async function keepPage(cache, res) {
  const html = await res.clone().text();
  const wanted = new Set(assetsOf(html));
  await cache.put(SHELL, res);
  await Promise.all(
    [...wanted].map(async (a) => {
      if (!(await cache.match(a))) await cache.add(a).catch(() => undefined);
    }),
  );
  for (const req of await cache.keys()) {
    const path = new URL(req.url).pathname;
    if (path.startsWith("/assets/") && !wanted.has(path)) await cache.delete(req);
  }
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const res = await fetch(SHELL, { cache: "no-cache" });
      if (res.ok) await keepPage(cache, res);
      await Promise.all(STATIC.map((u) => cache.add(u).catch(() => undefined)));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

function isApi(path) {
  return (
    path.startsWith("/api/") ||
    path.startsWith("/agent/") ||
    path === "/healthz" ||
    path === "/metrics" ||
    path === "/ca.pem" ||
    path.startsWith("/.well-known/")
  );
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || isApi(url.pathname)) return; // the network, untouched

  if (req.mode === "navigate") {
    let kept = () => undefined;
    event.waitUntil(new Promise((resolve) => (kept = resolve)));
    event.respondWith(
      (async () => {
        try {
          const res = await fetch(req);
          const ct = res.headers.get("content-type") || "";
          if (res.ok && ct.startsWith("text/html")) {
            const copy = res.clone();
            caches
              .open(CACHE)
              .then((cache) => keepPage(cache, copy))
              .catch(() => undefined)
              .finally(kept);
          } else {
            kept();
          }
          return res;
        } catch (e) {
          kept();
          const cached = await caches.match(SHELL);
          if (cached) return cached;
          throw e;
        }
      })(),
    );
    return;
  }

  if (url.pathname.startsWith("/assets/")) {
    event.respondWith(
      (async () => {
        const cache = await caches.open(CACHE);
        const hit = await cache.match(req);
        if (hit) return hit;
        const res = await fetch(req);
        if (res.ok) await cache.put(req, res.clone());
        return res;
      })(),
    );
    return;
  }

  if (!url.pathname.slice(1).includes("/")) {
    event.respondWith(
      (async () => {
        try {
          const res = await fetch(req);
          if (res.ok) (await caches.open(CACHE)).put(req, res.clone());
          return res;
        } catch (e) {
          const hit = await caches.match(req);
          if (hit) return hit;
          throw e;
        }
      })(),
    );
  }
});
