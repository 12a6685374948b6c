import { describe, expect, it } from "vitest";
import { ApiError, describeError, errorFromResponse, hintFor, networkError } from "./errors";

describe("error mapping", () => {
  it("reads the server's error body", () => {
    const e = errorFromResponse(
      410,
      JSON.stringify({
        code: 5006,
        error: "PAIR_TOKEN_EXPIRED",
        message: "The pairing code has expired; ask the PC for a new one.",
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
      }),
    );
    expect(e).toBeInstanceOf(ApiError);
    expect([e.status, e.code, e.error, e.traceId]).toEqual([410, 5006, "PAIR_TOKEN_EXPIRED", "4bf92f3577b34da6a3ce929d0e0e4736"]);
    const d = describeError(e);
    expect(d.title).toBe("PAIR_TOKEN_EXPIRED (5006)");
    expect(d.message).toBe("The pairing code has expired; ask the PC for a new one.");
    expect(d.hint).toMatch(/new QR code/);
    expect(d.detail).toBe("trace 4bf92f3577b34da6a3ce929d0e0e4736");
  });

  it("names the policy rule that refused", () => {
    const e = errorFromResponse(403, '{"code":4001,"error":"POLICY_DENIED","message":"night","rule":"no-night-reboots"}');
    expect(e.rule).toBe("no-night-reboots");
    expect(describeError(e).detail).toBe("rule no-night-reboots");
    expect(describeError(e).hint).toMatch(/admin/);
  });

  it("gives an actionable hint for the codes a user meets", () => {
    expect(hintFor(3005)).toMatch(/6-digit code/);
    expect(hintFor(3008)).toMatch(/email and password/);
    expect(hintFor(2011)).toMatch(/key/);
    expect(hintFor(5002)).toMatch(/Try again/);
    // Unknown codes fall back to their category.
    expect(hintFor(7999)).toMatch(/file transfer/);
    expect(hintFor(12)).toBe("Try again.");
  });

  it("knows which codes end the session", () => {
    const mk = (status: number, code: number) => new ApiError(status, code, "X", "m");
    expect(mk(401, 3007).needsLogin).toBe(true);
    expect(mk(401, 3001).needsLogin).toBe(true);
    expect(mk(401, 3008).needsLogin).toBe(false);
    expect(mk(403, 3004).needsLogin).toBe(false);
    expect(mk(401, 3005).needsLogin).toBe(false);
  });

  it("copes with answers that are not our error body", () => {
    const e = errorFromResponse(502, "<html>Bad gateway</html>");
    expect([e.status, e.code]).toEqual([502, 0]);
    expect(describeError(e).message).toMatch(/502/);
    const n = describeError(networkError(new TypeError("Failed to fetch")));
    expect(n.title).toBe("Offline?");
    expect(n.message).toBe("Could not reach the server (Failed to fetch).");
    expect(n.hint).toMatch(/connection/);
  });

  it("describes plain errors too", () => {
    expect(describeError(new Error("boom")).message).toBe("boom");
  });
});
