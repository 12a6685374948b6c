import { describe, expect, it } from "vitest";
import { artifactOf, ArtifactIntegrityError, downloadUrl, fileName, openSealed, sha256Hex } from "./artifacts";
import { b64urlEncode } from "./b64";

/** Seals like the agent does: nonce || AES-256-GCM(ciphertext || tag), AAD = artifact id. */
async function seal(plain: Uint8Array<ArrayBuffer>, artifactId: string) {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: new TextEncoder().encode(artifactId) }, key, plain),
  );
  const sealed = new Uint8Array(12 + ct.length);
  sealed.set(nonce);
  sealed.set(ct, 12);
  return { sealed, key: b64urlEncode(raw) };
}

describe("artifacts", () => {
  const plain = new TextEncoder().encode("a screenshot, say");

  it("opens what the agent sealed", async () => {
    const { sealed, key } = await seal(plain, "art_1");
    expect(new TextDecoder().decode(await openSealed(key, "art_1", sealed))).toBe("a screenshot, say");
  });

  it("refuses another artifact's id, altered bytes, a bad key", async () => {
    const { sealed, key } = await seal(plain, "art_1");
    await expect(openSealed(key, "art_2", sealed)).rejects.toBeInstanceOf(ArtifactIntegrityError);
    const bent = sealed.slice();
    bent[20] = (bent[20] ?? 0) ^ 1;
    await expect(openSealed(key, "art_1", bent)).rejects.toThrow(/does not decrypt/);
    await expect(openSealed("c2hvcnQ", "art_1", sealed)).rejects.toThrow(/256-bit/);
    await expect(openSealed(key, "art_1", sealed.slice(0, 20))).rejects.toThrow(/too short/);
  });

  it("hashes in lowercase hex", async () => {
    expect(await sha256Hex(new TextEncoder().encode("abc"))).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("reads the artifact a result names", () => {
    expect(artifactOf({ status: "ok", artifact: { artifact_id: "art_1", content_type: "image/png", size_bytes: 9, sha256: "ab" } })).toEqual({
      artifact_id: "art_1",
      content_type: "image/png",
      size_bytes: 9,
      sha256: "ab",
    });
    expect(artifactOf({ status: "ok" })).toBeNull();
    expect(artifactOf(undefined)).toBeNull();
  });

  it("fetches the server's own object URLs through this origin", () => {
    expect(downloadUrl("https://10.0.0.5:8443/api/objects/artifacts/d/a?sig=1&exp=2", "https://tether.lab:8443")).toBe(
      "/api/objects/artifacts/d/a?sig=1&exp=2",
    );
    expect(downloadUrl("https://tether.lab:8443/api/objects/x?s=1", "https://tether.lab:8443")).toBe(
      "https://tether.lab:8443/api/objects/x?s=1",
    );
    expect(downloadUrl("https://bucket.s3.example/x?X-Amz=1", "https://tether.lab:8443")).toBe("https://bucket.s3.example/x?X-Amz=1");
  });

  it("names downloads by id and type", () => {
    expect(fileName("art_01", "image/png")).toBe("art_01.png");
    expect(fileName("art_01", "text/plain; charset=utf-8")).toBe("art_01.txt");
    expect(fileName("a/../b", "application/x-thing")).toBe("a_.._b.bin");
  });
});
