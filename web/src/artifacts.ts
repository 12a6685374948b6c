// A command's artifact (a screenshot, a log bundle), fetched and opened in the browser the
// way `tether artifact get` does it (crates/cli/src/commands/artifact.rs, docs/protocol.md
// section 6.10): `GET /api/artifacts/{id}` gives a presigned download URL, the AES-256-GCM
// key and both hashes; the download's SHA-256 must match before anything is decrypted
// (the stored bytes are a 12-byte nonce then the ciphertext and tag, the artifact id the
// associated data), and the content's must match what the PC reported.

import { api } from "./api";
import { b64urlDecode, hex } from "./b64";
import { ApiError, networkError } from "./errors";

export interface ArtifactMeta {
  artifact_id: string;
  command_id: string;
  device_id: string;
  content_type: string;
  size_bytes: number;
  sha256: string;
  download_url: string;
  expires_at: number;
  key?: string;
  plaintext_sha256?: string;
}

/** The artifact a command's result names, if any. */
export interface ArtifactRef {
  artifact_id: string;
  content_type: string;
  size_bytes: number;
  sha256: string;
}

/** Reads `result.artifact` of a command view (the agent's command_result). */
export function artifactOf(result: unknown): ArtifactRef | null {
  if (!result || typeof result !== "object") return null;
  const a = (result as Record<string, unknown>).artifact;
  if (!a || typeof a !== "object") return null;
  const o = a as Record<string, unknown>;
  return typeof o.artifact_id === "string"
    ? {
        artifact_id: o.artifact_id,
        content_type: typeof o.content_type === "string" ? o.content_type : "application/octet-stream",
        size_bytes: typeof o.size_bytes === "number" ? o.size_bytes : 0,
        sha256: typeof o.sha256 === "string" ? o.sha256 : "",
      }
    : null;
}

const NONCE = 12;
const TAG = 16;

export class ArtifactIntegrityError extends Error {
  override name = "ArtifactIntegrityError";
  readonly title = "The file failed its check";
  readonly hint =
    "Nothing was shown or saved. Open the result again; if it keeps failing, run the command again for a new file.";
}

export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

/** Opens `nonce || ciphertext+tag` with the artifact's key, the artifact id as associated data. */
export async function openSealed(
  keyB64: string,
  artifactId: string,
  sealed: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const raw = b64urlDecode(keyB64);
  if (!raw || raw.length !== 32) throw new ArtifactIntegrityError("The artifact's key is not a 256-bit key.");
  if (sealed.length < NONCE + TAG) throw new ArtifactIntegrityError("The artifact is too short to be encrypted data.");
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: sealed.slice(0, NONCE), additionalData: new TextEncoder().encode(artifactId) },
      key,
      sealed.slice(NONCE),
    );
    return new Uint8Array(plain);
  } catch {
    throw new ArtifactIntegrityError("The artifact does not decrypt with its key (wrong key, or altered bytes).");
  }
}

/**
 * The URL to fetch. The local object store's URLs are the server's own
 * (`<public_url>/api/objects/…?sig…`, checked by path and signature, not host): fetched
 * through this page's origin so a phone that reaches the server under another name (a
 * LAN address) is not stopped by the page's `connect-src 'self'`. Other URLs (S3) as given.
 */
export function downloadUrl(url: string, origin: string): string {
  try {
    const u = new URL(url, origin);
    if (u.origin !== origin && u.pathname.startsWith("/api/objects/")) return u.pathname + u.search;
    return u.href;
  } catch {
    return url;
  }
}

/** Downloads, checks and decrypts an artifact: the content and its type. */
export async function fetchArtifact(id: string): Promise<{ meta: ArtifactMeta; bytes: Uint8Array<ArrayBuffer> }> {
  const meta = await api.call<ArtifactMeta>("GET", `/api/artifacts/${encodeURIComponent(id)}`);
  if (meta.artifact_id !== id) throw new ArtifactIntegrityError("The server answered about another artifact.");
  let r: Response;
  try {
    r = await fetch(downloadUrl(meta.download_url, location.origin), { credentials: "omit", referrerPolicy: "no-referrer" });
  } catch (e) {
    throw networkError(e);
  }
  if (!r.ok) {
    throw new ApiError(
      r.status,
      0,
      "DOWNLOAD_FAILED",
      `The object store refused the download (HTTP ${r.status}). Open the result again for a fresh link.`,
    );
  }
  const sealed = new Uint8Array(await r.arrayBuffer());
  if (sealed.length !== meta.size_bytes || (await sha256Hex(sealed)) !== meta.sha256) {
    throw new ArtifactIntegrityError("The downloaded bytes do not match the server's record (size or SHA-256).");
  }
  const bytes = meta.key ? await openSealed(meta.key, meta.artifact_id, sealed) : sealed;
  if (meta.plaintext_sha256 && (await sha256Hex(bytes)) !== meta.plaintext_sha256) {
    throw new ArtifactIntegrityError("The content does not match the hash the PC reported.");
  }
  return { meta, bytes };
}

/** A file name for a download: `<artifact id>.<extension of its type>`. */
export function fileName(artifactId: string, contentType: string): string {
  const ext: Record<string, string> = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "application/gzip": "tar.gz",
    "application/x-gzip": "tar.gz",
    "application/x-tar": "tar",
    "application/zip": "zip",
    "application/json": "json",
    "text/plain": "txt",
  };
  const base = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  const safe = artifactId.replace(/[^A-Za-z0-9._-]/g, "_");
  return `${safe}.${ext[base] ?? "bin"}`;
}
