// RFC 8785 (JCS) canonical JSON, with the protocol's extra limits (docs/protocol.md
// section 2.4): integers within ±(2^53 − 1), no double in [2^53, 1e21), depth ≤ 32, and
// no lone surrogate in a string. Mirrors crates/proto/src/canonical.rs byte for byte.

/** Why a value cannot be canonicalized (the server answers 1008 for the same input). */
export class CanonicalError extends Error {
  override name = "CanonicalError";
}

export const MAX_DEPTH = 32;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** The canonical text of `value`. */
export function canonicalize(value: unknown): string {
  return write(value, 0);
}

/** The canonical bytes (UTF-8) of `value`: what is signed. */
export function canonicalBytes(value: unknown): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(canonicalize(value));
}

function write(v: unknown, depth: number): string {
  if (v === null) return "null";
  switch (typeof v) {
    case "boolean":
      return v ? "true" : "false";
    case "number":
      return number(v);
    case "string":
      return string(v);
    case "object": {
      if (depth + 1 > MAX_DEPTH) throw new CanonicalError(`nested deeper than ${MAX_DEPTH}`);
      if (Array.isArray(v)) return "[" + v.map((x) => write(x, depth + 1)).join(",") + "]";
      // Default string order compares UTF-16 code units, which is what RFC 8785 asks.
      const keys = Object.keys(v as object).sort();
      const rec = v as Record<string, unknown>;
      const parts: string[] = [];
      for (const k of keys) {
        const x = rec[k];
        if (x === undefined) continue; // as JSON.stringify: absent, never null
        parts.push(string(k) + ":" + write(x, depth + 1));
      }
      return "{" + parts.join(",") + "}";
    }
    default:
      throw new CanonicalError(`${typeof v} has no JSON form`);
  }
}

function number(n: number): string {
  if (!Number.isFinite(n)) throw new CanonicalError("NaN and infinities have no JSON form");
  const a = Math.abs(n);
  if (Number.isInteger(n) && a > MAX_SAFE && a < 1e21) {
    throw new CanonicalError(`${n} is outside ±(2^53 − 1)`);
  }
  // ECMAScript Number::toString is RFC 8785's number format; -0 becomes "0".
  return JSON.stringify(n);
}

function string(s: string): string {
  if (!s.isWellFormed()) throw new CanonicalError("string with a lone surrogate");
  // ES2019 JSON.stringify escapes exactly RFC 8785's set, with lowercase \u00xx.
  return JSON.stringify(s);
}
