import { describe, expect, it } from "vitest";
import { b64urlDecode, b64urlEncode } from "./b64";
import { OWNER_KEYS_STATEMENT_TYPE, STATEMENT_LIFETIME_MS, ownerKeysStatement, passkeyOwnerKey, passkeysOf, statementBytes } from "./ownerKeys";
import { signEd25519 } from "./statement";

async function p256Spki(): Promise<Uint8Array<ArrayBuffer>> {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  return new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
}

describe("a passkey as an owner key", () => {
  it("is pinned under its credential id with its SPKI DER", async () => {
    const spki = await p256Spki();
    const k = passkeyOwnerKey(new Uint8Array([0xfb, 0xff, 0x01]), spki);
    expect(k).toEqual({ kid: "-_8B", kind: "webauthn-es256", public_key: b64urlEncode(spki) });
    expect(b64urlDecode(k.public_key)).toEqual(spki);
  });

  it("is refused when a PC could not pin it", async () => {
    const spki = await p256Spki();
    expect(() => passkeyOwnerKey(new Uint8Array(49), spki)).toThrow(/at most 48/);
    expect(() => passkeyOwnerKey(new Uint8Array(0), spki)).toThrow();
    const ed = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const edSpki = new Uint8Array(await crypto.subtle.exportKey("spki", ed.publicKey));
    expect(() => passkeyOwnerKey(new Uint8Array(16), edSpki)).toThrow(/P-256/);
  });

  it("signs only in the owner role", () => {
    const keys = [
      { kid: "a", kind: "ed25519", public_key: "x" },
      { kid: "b", kind: "webauthn-es256", public_key: "y" },
      { kid: "c", kind: "webauthn-es256", public_key: "z", role: "approver" as const },
      { kid: "d", kind: "webauthn-es256", public_key: "w", role: "owner" as const },
    ];
    expect(passkeysOf(keys).map((k) => k.kid)).toEqual(["b", "d"]);
  });
});

describe("the owner-keys statement", () => {
  const key = { kid: "AQID", kind: "webauthn-es256", public_key: "MFkw" };

  it("is canonical, as the server and the PCs rebuild it", () => {
    const s = ownerKeysStatement({ userId: "usr_ada", lastVersion: 0, now: 1764115500000, add: [key] });
    expect(s.type).toBe(OWNER_KEYS_STATEMENT_TYPE);
    expect(s.not_after).toBe(1764115500000 + STATEMENT_LIFETIME_MS);
    expect(new TextDecoder().decode(statementBytes(s))).toBe(
      '{"add":[{"kid":"AQID","kind":"webauthn-es256","public_key":"MFkw"}],"not_after":1795651500000,' +
        '"remove":[],"type":"tether.owner_keys.v1","user_id":"usr_ada","version":1764115500000}',
    );
  });

  it("leaves an owner role out, as the server serializes it, and keeps approver", () => {
    const s = ownerKeysStatement({
      userId: "u",
      lastVersion: 0,
      now: 5,
      add: [{ ...key, role: "owner" }, { ...key, kid: "b", role: "approver" }],
      deviceId: "dev_1",
    });
    const text = new TextDecoder().decode(statementBytes(s));
    expect(text).toContain('{"kid":"AQID","kind":"webauthn-es256","public_key":"MFkw"}');
    expect(text).toContain('"role":"approver"');
    expect(text).toContain('"device_id":"dev_1"');
  });

  it("takes a version above the last one even when the clock is behind", () => {
    expect(ownerKeysStatement({ userId: "u", lastVersion: 10, now: 5, add: [key] }).version).toBe(11);
    expect(ownerKeysStatement({ userId: "u", lastVersion: 10, now: 500, add: [key] }).version).toBe(500);
    expect(() => ownerKeysStatement({ userId: "u", lastVersion: 0, now: 5 })).toThrow();
  });

  it("is signed over its canonical bytes by the Ed25519 owner key", async () => {
    const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    const bytes = statementBytes(ownerKeysStatement({ userId: "u", lastVersion: 0, now: 5, add: [key] }));
    const sig = await signEd25519(pair.privateKey, raw, bytes);
    expect(sig.kind).toBe("ed25519");
    expect(await crypto.subtle.verify("Ed25519", pair.publicKey, b64urlDecode(sig.sig)!, bytes)).toBe(true);
  });
});
