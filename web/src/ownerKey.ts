// The owner's Ed25519 key, made in this browser at registration: non-extractable (the
// private half never leaves WebCrypto), kept in IndexedDB under its public key, so the
// account's `mobile_pub` finds it again after a reload.

import { b64urlEncode } from "./b64";

export interface OwnerKey {
  publicKey: string; // unpadded base64url of the 32 raw bytes (the account's mobile_pub)
  raw: Uint8Array<ArrayBuffer>;
  privateKey: CryptoKey;
}

const DB = "tether";
const STORE = "owner-keys";

function db(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB is not available"));
  });
}

function tx<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  return db().then(
    (d) =>
      new Promise<T>((resolve, reject) => {
        const t = d.transaction(STORE, mode);
        const req = f(t.objectStore(STORE));
        t.oncomplete = () => {
          d.close();
          resolve(req.result);
        };
        t.onerror = () => {
          d.close();
          reject(t.error ?? new Error("IndexedDB transaction failed"));
        };
      }),
  );
}

/** Whether this browser can make and use Ed25519 keys. */
export async function ed25519Supported(): Promise<boolean> {
  try {
    await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    return true;
  } catch {
    return false;
  }
}

/** Makes a new owner key and stores it. */
export async function createOwnerKey(): Promise<OwnerKey> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, false, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const publicKey = b64urlEncode(raw);
  await tx("readwrite", (s) => s.put({ privateKey: pair.privateKey, raw }, publicKey));
  return { publicKey, raw, privateKey: pair.privateKey };
}

/** The stored key whose public half is `publicKey`, if this browser holds it. */
export async function findOwnerKey(publicKey: string): Promise<OwnerKey | null> {
  const v = (await tx("readonly", (s) => s.get(publicKey))) as
    | { privateKey: CryptoKey; raw: Uint8Array<ArrayBuffer> }
    | undefined;
  return v ? { publicKey, raw: v.raw, privateKey: v.privateKey } : null;
}

/** Forgets a key (after a failed registration). */
export async function deleteOwnerKey(publicKey: string): Promise<void> {
  await tx("readwrite", (s) => s.delete(publicKey));
}
