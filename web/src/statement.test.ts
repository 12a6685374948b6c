import { describe, expect, it } from "vitest";
import { b64urlDecode, b64urlEncode, hex } from "./b64";
import { commandStatement, kidForEd25519, signEd25519, webauthnChallenge } from "./statement";

// docs/protocol.md sections 3.11 and 6.11: the published TEST key (seed = 32 × 0x01).
const SEED = new Uint8Array(32).fill(1);
const PUB_B64 = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w";
const STATEMENT =
  '{"command_id":"0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10","device_id":"dev_01HZX3K9","method":"lock_screen","not_after":1764115500000,"params":{},"type":"tether.command.v1"}';

function vector(): Uint8Array<ArrayBuffer> {
  return commandStatement({
    commandId: "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10",
    deviceId: "dev_01HZX3K9",
    method: "lock_screen",
    params: {},
    notAfter: 1764115500000,
  });
}

async function testKey(): Promise<CryptoKey> {
  // PKCS#8 for an Ed25519 seed: a fixed 16-byte prefix, then the seed.
  const pkcs8 = new Uint8Array([
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...SEED,
  ]);
  return crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
}

describe("the tether.command.v1 statement", () => {
  it("matches the protocol's test vector byte for byte", async () => {
    const s = vector();
    expect(new TextDecoder().decode(s)).toBe(STATEMENT);
    expect(hex(new Uint8Array(await crypto.subtle.digest("SHA-256", s)))).toBe(
      "1dfb1033314dbc951479e0d45db1f2aed04d16b87e95b27cec0b3c692a97e874",
    );
    expect(await webauthnChallenge(s)).toBe("HfsQMzFNvJUUeeDUXbHyrtBNFrh-lbJ87As8aSqX6HQ");
  });

  it("binds params canonically, whatever their order", () => {
    const a = commandStatement({ commandId: "c", deviceId: "d", method: "reboot", params: { reason: "x", delay_s: 60 }, notAfter: 1 });
    const b = commandStatement({ commandId: "c", deviceId: "d", method: "reboot", params: { delay_s: 60, reason: "x" }, notAfter: 1 });
    expect(a).toEqual(b);
    expect(new TextDecoder().decode(a)).toContain('"params":{"delay_s":60,"reason":"x"}');
  });

  it("refuses params that are not an object", () => {
    expect(() =>
      commandStatement({ commandId: "c", deviceId: "d", method: "m", params: [] as unknown as Record<string, unknown>, notAfter: 1 }),
    ).toThrow(TypeError);
  });

  it("derives the kid and signs like the Rust side", async () => {
    const raw = b64urlDecode(PUB_B64)!;
    expect(await kidForEd25519(raw)).toBe("34750f98bd59fcfc");
    const sig = await signEd25519(await testKey(), raw, vector());
    expect(sig).toEqual({
      kind: "ed25519",
      kid: "34750f98bd59fcfc",
      sig: "scYFGLLKuFGKp3rHPApQUsxUpgx6NJ1TPVq6PP5-aAzPpdg-hX537rMUHZbQZkogTcd6qSMUYcAp9yLUqZgYBA",
    });
  });
});

describe("base64url", () => {
  it("round-trips every length and refuses what the server refuses", () => {
    for (let n = 0; n < 40; n++) {
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
      expect(b64urlDecode(b64urlEncode(b))).toEqual(b);
    }
    expect(hex(b64urlDecode(PUB_B64)!)).toBe("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c");
    expect(b64urlDecode("AA==")).toBeNull(); // padding
    expect(b64urlDecode("A+")).toBeNull(); // standard alphabet
    expect(b64urlDecode("AB")).toBeNull(); // non-zero trailing bits
    expect(b64urlDecode("A")).toBeNull();
  });
});
