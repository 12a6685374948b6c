import { describe, expect, it } from "vitest";
import { b64urlDecode, b64urlEncode } from "./b64";
import { commandStatement } from "./statement";
import {
  FLAG_UP,
  FLAG_UV,
  assertionJson,
  checkAssertion,
  credentialFromAttestation,
  creationOptions,
  decodeCbor,
  derToRawSignature,
  p256PointFromSpki,
  p256Spki,
  rawToDerSignature,
  registrationJson,
  requestOptions,
  spkiFromCose,
  userSigFromAssertion,
  verifyAssertion,
  type WebauthnUserSig,
} from "./webauthn";

// The protocol's test vector (docs/protocol.md section 6.11).
const STATEMENT = commandStatement({
  commandId: "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10",
  deviceId: "dev_01HZX3K9",
  method: "lock_screen",
  params: {},
  notAfter: 1764115500000,
});
const CHALLENGE = "HfsQMzFNvJUUeeDUXbHyrtBNFrh-lbJ87As8aSqX6HQ";
const RP = { origin: "https://localhost:8443", rpId: "localhost" };
const enc = new TextEncoder();

const sha256 = async (b: Uint8Array<ArrayBuffer>) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** A software authenticator: a P-256 credential answering `.get()` as a browser would. */
async function authenticator(credentialId = crypto.getRandomValues(new Uint8Array(16))) {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return {
    credentialId,
    spki,
    raw,
    async get(
      challenge: string,
      o: { rpId?: string; origin?: string; flags?: number; type?: string; crossOrigin?: boolean } = {},
    ) {
      const clientDataJSON = enc.encode(
        JSON.stringify({
          type: o.type ?? "webauthn.get",
          challenge,
          origin: o.origin ?? RP.origin,
          crossOrigin: o.crossOrigin ?? false,
        }),
      );
      const authenticatorData = concat(await sha256(enc.encode(o.rpId ?? RP.rpId)), new Uint8Array([o.flags ?? FLAG_UP | FLAG_UV]), new Uint8Array([0, 0, 0, 7]));
      const p1363 = new Uint8Array(
        await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, concat(authenticatorData, await sha256(clientDataJSON))),
      );
      // Authenticators answer DER.
      return { rawId: credentialId, authenticatorData, clientDataJSON, signature: rawToDerSignature(p1363) };
    },
  };
}

describe("assertion → user_sig", () => {
  it("encodes each member as unpadded base64url of what the authenticator returned", async () => {
    const a = await authenticator(new Uint8Array([1, 2, 3, 250, 251, 252]));
    const parts = await a.get(CHALLENGE);
    const sig = userSigFromAssertion(parts);
    expect(sig.kind).toBe("webauthn-es256");
    expect(sig.kid).toBe("AQID-vv8");
    expect(Object.keys(sig).sort()).toEqual(["authenticator_data", "client_data_json", "kid", "kind", "signature"]);
    for (const v of Object.values(sig)) expect(v).not.toMatch(/[=+/]/);
    expect(b64urlDecode(sig.authenticator_data)).toEqual(parts.authenticatorData);
    expect(b64urlDecode(sig.client_data_json)).toEqual(parts.clientDataJSON);
    expect(b64urlDecode(sig.signature)).toEqual(parts.signature);
  });

  it("takes ArrayBuffers as the browser gives them", async () => {
    const a = await authenticator();
    const p = await a.get(CHALLENGE);
    const fromBuffers = userSigFromAssertion({
      rawId: p.rawId.buffer.slice(0),
      authenticatorData: p.authenticatorData.buffer.slice(0),
      clientDataJSON: p.clientDataJSON.buffer.slice(0),
      signature: p.signature.buffer.slice(0),
    });
    expect(fromBuffers).toEqual(userSigFromAssertion(p));
  });

  it("passes the PC's checks and verifies with the credential's SPKI", async () => {
    const a = await authenticator();
    const sig = userSigFromAssertion(await a.get(CHALLENGE));
    expect(await checkAssertion(STATEMENT, sig, RP)).toBeNull();
    expect(await verifyAssertion(a.spki, sig)).toBe(true);
  });

  it("is refused as the PC refuses it", async () => {
    const a = await authenticator();
    const other = commandStatement({ commandId: "c", deviceId: "dev_01HZX3K9", method: "lock_screen", params: {}, notAfter: 1 });
    const cases: [string, Promise<WebauthnUserSig>, RegExp][] = [
      ["another statement", a.get(b64urlEncode(await sha256(other))).then(userSigFromAssertion), /challenge/],
      ["another origin", a.get(CHALLENGE, { origin: "https://evil.example" }).then(userSigFromAssertion), /origin/],
      ["another RP id", a.get(CHALLENGE, { rpId: "evil.example" }).then(userSigFromAssertion), /not for localhost/],
      ["no user verification", a.get(CHALLENGE, { flags: FLAG_UP }).then(userSigFromAssertion), /UV/],
      ["no user presence", a.get(CHALLENGE, { flags: FLAG_UV }).then(userSigFromAssertion), /UP/],
      ["a registration", a.get(CHALLENGE, { type: "webauthn.create" }).then(userSigFromAssertion), /webauthn\.get/],
      ["cross-origin", a.get(CHALLENGE, { crossOrigin: true }).then(userSigFromAssertion), /cross-origin/],
    ];
    for (const [what, sig, why] of cases) expect(await checkAssertion(STATEMENT, await sig, RP), what).toMatch(why);
  });

  it("checks the protocol's size limits", async () => {
    const a = await authenticator(new Uint8Array(49));
    const sig = userSigFromAssertion(await a.get(CHALLENGE));
    expect(await checkAssertion(STATEMENT, sig, RP)).toMatch(/credential id/);
    const short = { ...userSigFromAssertion(await (await authenticator()).get(CHALLENGE)), authenticator_data: b64urlEncode(new Uint8Array(36)) };
    expect(await checkAssertion(STATEMENT, short, RP)).toMatch(/authenticator data/);
  });

  it("does not verify a tampered assertion or another key", async () => {
    const a = await authenticator();
    const b = await authenticator();
    const sig = userSigFromAssertion(await a.get(CHALLENGE));
    expect(await verifyAssertion(b.spki, sig)).toBe(false);
    const cd = b64urlDecode(sig.client_data_json)!;
    cd[cd.length - 2] = cd[cd.length - 2]! ^ 1;
    expect(await verifyAssertion(a.spki, { ...sig, client_data_json: b64urlEncode(cd) })).toBe(false);
    expect(await verifyAssertion(a.spki, { ...sig, signature: "AAAA" })).toBe(false);
  });
});

describe("ECDSA signatures: DER ↔ raw", () => {
  it("round-trips, adding a zero byte to a high r or s and dropping leading zeros", () => {
    const raw = new Uint8Array(64);
    raw.fill(0x80, 0, 32); // r ≥ 2^255: DER needs a leading 0x00
    raw[32] = 0;
    raw[33] = 0;
    raw.fill(0x11, 34); // s < 2^240: DER drops the zeros
    const der = rawToDerSignature(raw);
    expect(der[0]).toBe(0x30);
    expect(der[1]).toBe(der.length - 2);
    expect(der.subarray(2, 5)).toEqual(new Uint8Array([0x02, 33, 0x00]));
    expect(derToRawSignature(der)).toEqual(raw);
  });

  it("refuses what is not a minimal DER signature", () => {
    const good = rawToDerSignature(new Uint8Array(64).fill(0x22));
    expect(derToRawSignature(good)).not.toBeNull();
    expect(derToRawSignature(new Uint8Array([0x31, ...good.subarray(1)]))).toBeNull(); // not a SEQUENCE
    expect(derToRawSignature(new Uint8Array([...good, 0]))).toBeNull(); // trailing byte
    expect(derToRawSignature(new Uint8Array([0x30, 6, 0x02, 1, 0x80, 0x02, 1, 1]))).toBeNull(); // negative r
    expect(derToRawSignature(new Uint8Array([0x30, 7, 0x02, 2, 0, 1, 0x02, 1, 1]))).toBeNull(); // padded r
    expect(derToRawSignature(new Uint8Array([0x30, 4, 0x02, 1, 1]))).toBeNull(); // truncated
  });
});

describe("P-256 public keys as SPKI DER", () => {
  it("builds the SPKI WebCrypto exports, and reads its point back", async () => {
    const a = await authenticator();
    expect(a.raw.length).toBe(65);
    expect(p256Spki(a.raw.subarray(1, 33), a.raw.subarray(33))).toEqual(a.spki);
    expect(p256PointFromSpki(a.spki)).toEqual(a.raw);
    // And what p256Spki builds imports as a P-256 key.
    await expect(
      crypto.subtle.importKey("spki", p256Spki(a.raw.subarray(1, 33), a.raw.subarray(33)), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]),
    ).resolves.toBeDefined();
  });

  it("refuses other keys", async () => {
    const ed = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
    expect(p256PointFromSpki(new Uint8Array(await crypto.subtle.exportKey("spki", ed.publicKey)))).toBeNull();
    const a = await authenticator();
    const bent = a.spki.slice();
    bent[20] = bent[20]! ^ 1; // another curve OID
    expect(p256PointFromSpki(bent)).toBeNull();
    expect(p256PointFromSpki(a.spki.subarray(0, 90))).toBeNull();
  });
});

/** A tiny CBOR encoder for the tests' attestation objects. */
function cbor(v: unknown): number[] {
  const head = (major: number, n: number) =>
    n < 24 ? [(major << 5) | n] : n < 256 ? [(major << 5) | 24, n] : [(major << 5) | 25, n >> 8, n & 255];
  if (typeof v === "number") return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === "string") {
    const b = enc.encode(v);
    return [...head(3, b.length), ...b];
  }
  if (v instanceof Uint8Array) return [...head(2, v.length), ...v];
  if (v instanceof Map) return [...head(5, v.size), ...[...v].flatMap(([k, x]) => [...cbor(k), ...cbor(x)])];
  throw new Error("unsupported");
}

describe("attestation objects and COSE keys", () => {
  it("finds the credential id and the P-256 key (for browsers without getPublicKey)", async () => {
    const a = await authenticator(new Uint8Array(32).fill(7));
    const cose = new Map<number, unknown>([
      [1, 2],
      [3, -7],
      [-1, 1],
      [-2, a.raw.subarray(1, 33)],
      [-3, a.raw.subarray(33)],
    ]);
    const authData = new Uint8Array([
      ...(await sha256(enc.encode("localhost"))),
      FLAG_UP | FLAG_UV | 0x40,
      0, 0, 0, 0,
      ...new Uint8Array(16), // AAGUID
      0, 32,
      ...a.credentialId,
      ...cbor(cose),
    ]);
    const att = new Uint8Array(cbor(new Map<string, unknown>([["fmt", "none"], ["attStmt", new Map()], ["authData", authData]])));
    const got = credentialFromAttestation(att);
    expect(got.credentialId).toEqual(a.credentialId);
    expect(got.spki).toEqual(a.spki);
  });

  it("answers no SPKI for a key that is not ES256", () => {
    expect(spkiFromCose(new Map<unknown, unknown>([[1, 3], [3, -257]]) as never)).toBeNull();
    expect(spkiFromCose(new Map<unknown, unknown>([[1, 2], [3, -7], [-1, 1], [-2, new Uint8Array(31)], [-3, new Uint8Array(32)]]) as never)).toBeNull();
  });

  it("decodes CBOR and refuses what it does not expect", () => {
    expect(decodeCbor(new Uint8Array(cbor(-7))).value).toBe(-7);
    expect(decodeCbor(new Uint8Array(cbor(1000))).value).toBe(1000);
    expect(decodeCbor(new Uint8Array([0xf5])).value).toBe(true);
    expect(() => decodeCbor(new Uint8Array([0x5f]))).toThrow(); // indefinite length
    expect(() => decodeCbor(new Uint8Array([0x45, 1, 2]))).toThrow(/truncated/);
  });
});

describe("the server's ceremony JSON", () => {
  it("turns creation options into WebAuthn's, offering ES256 only", () => {
    const o = creationOptions({
      publicKey: {
        rp: { id: "localhost", name: "Tether" },
        user: { id: "AAECAw", name: "ada@lab.example", displayName: "ada@lab.example" },
        challenge: CHALLENGE,
        pubKeyCredParams: [
          { type: "public-key", alg: -7 },
          { type: "public-key", alg: -257 },
        ],
        excludeCredentials: [{ type: "public-key", id: "AQID" }],
        authenticatorSelection: { userVerification: "required" },
      },
    }).publicKey!;
    expect(o.challenge).toEqual(b64urlDecode(CHALLENGE));
    expect(o.user.id).toEqual(new Uint8Array([0, 1, 2, 3]));
    expect(o.pubKeyCredParams).toEqual([{ type: "public-key", alg: -7 }]);
    expect(o.excludeCredentials?.[0]?.id).toEqual(new Uint8Array([1, 2, 3]));
    expect(o.authenticatorSelection?.userVerification).toBe("required");
  });

  it("turns request options into WebAuthn's", () => {
    const o = requestOptions({
      publicKey: { challenge: CHALLENGE, rpId: "localhost", allowCredentials: [{ type: "public-key", id: "AQID" }], userVerification: "required" },
    }).publicKey!;
    expect(o.challenge).toEqual(b64urlDecode(CHALLENGE));
    expect(o.allowCredentials?.[0]).toEqual({ type: "public-key", id: new Uint8Array([1, 2, 3]) });
    expect(o.rpId).toBe("localhost");
    expect(() => requestOptions({ publicKey: { challenge: "a=" } })).toThrow(/challenge/);
  });

  it("encodes credentials as webauthn-rs reads them", () => {
    const buf = (...b: number[]) => new Uint8Array(b).buffer;
    expect(
      registrationJson({ id: "AQID", rawId: buf(1, 2, 3), type: "public-key", response: { clientDataJSON: buf(123), attestationObject: buf(0xa0) } }),
    ).toEqual({ id: "AQID", rawId: "AQID", type: "public-key", response: { clientDataJSON: "ew", attestationObject: "oA" }, extensions: {} });
    expect(
      assertionJson({
        id: "AQID",
        rawId: buf(1, 2, 3),
        type: "public-key",
        response: { clientDataJSON: buf(123), authenticatorData: buf(1), signature: buf(2), userHandle: null },
      }).response,
    ).toEqual({ clientDataJSON: "ew", authenticatorData: "AQ", signature: "Ag", userHandle: null });
  });
});
