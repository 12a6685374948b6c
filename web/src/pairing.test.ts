import { describe, expect, it } from "vitest";
import { capturePairLink, tokenFrom } from "./pairing";

const TOKEN = "Zx8_kq-3vN0aBcDeFgHiJkLmNoPqRsTu";

describe("pair links", () => {
  it("takes the token from the agent's link, its fragment, or the token itself", () => {
    expect(tokenFrom(`https://tether.lab:8443/pair#token=${TOKEN}`)).toBe(TOKEN);
    expect(tokenFrom(`#token=${TOKEN}`)).toBe(TOKEN);
    expect(tokenFrom(`token=${TOKEN}`)).toBe(TOKEN);
    expect(tokenFrom(`  ${TOKEN}\n`)).toBe(TOKEN);
    expect(tokenFrom("https://tether.lab:8443/pair")).toBeNull();
    expect(tokenFrom("hello")).toBeNull();
    expect(tokenFrom("#token=short")).toBeNull();
    expect(tokenFrom("")).toBeNull();
  });

  it("moves a token out of the address at start-up", () => {
    const store = new Map<string, string>();
    (globalThis as { sessionStorage?: unknown }).sessionStorage = {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => store.set(k, v),
      removeItem: (k: string) => store.delete(k),
    };
    const replaced: string[] = [];
    const history = { replaceState: (_s: unknown, _t: string, url?: string | URL | null) => void replaced.push(String(url)) };
    expect(capturePairLink({ hash: "#/devices", pathname: "/" }, history)).toBe(false);
    expect(replaced).toEqual([]);
    expect(capturePairLink({ hash: `#token=${TOKEN}`, pathname: "/pair" }, history)).toBe(true);
    expect(replaced).toEqual(["/#/pair"]);
    expect(store.get("tether.pairToken")).toBe(TOKEN);
  });
});
