// A tiny hash router: `#/devices`, `#/device/<id>`, `#/login?next=…`.

import { useEffect, useState } from "preact/hooks";

export interface Route {
  name: string;
  arg?: string;
  query: URLSearchParams;
}

/** Parses a location hash (pure). */
export function parseHash(hash: string): Route {
  const h = hash.replace(/^#\/?/, "");
  const [path = "", qs = ""] = h.split("?", 2);
  const [name = "", ...rest] = path.split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
  return { name: name || "devices", ...(arg !== undefined ? { arg } : {}), query: new URLSearchParams(qs) };
}

export function navigate(to: string): void {
  location.hash = to.startsWith("#") ? to : "#" + to;
}

export function useRoute(): Route {
  const [r, setR] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const f = () => setR(parseHash(location.hash));
    addEventListener("hashchange", f);
    return () => removeEventListener("hashchange", f);
  }, []);
  return r;
}
