// Pairing a PC from the phone. The agent's QR code (or its link) opens `/pair#token=…`;
// main.tsx keeps the token (pairing.ts) through a sign-in, and this screen confirms it
// (`POST /api/pair/confirm`), then shows the PC's name and the matching number the PC
// shows too. Without a token it explains how to pair, takes a pasted link, and scans the
// QR code with the camera where the browser has a BarcodeDetector.

import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { ApiError } from "../errors";
import { confirmPairing } from "../ownerApi";
import { pendingToken, setPendingToken, tokenFrom, type Paired } from "../pairing";
import { navigate } from "../router";
import { ErrorBox, TopBar } from "../ui";

/** What to do about a refused pair token, in this screen's words. */
export const PAIR_HINTS: Record<number, string> = {
  5006: "This pairing code has expired (codes last 5 minutes). On the PC, start pairing again to get a new QR code, then scan it.",
  5007: "This pairing code was used already. If you paired this PC a moment ago, it is in your list; otherwise start pairing again on the PC for a new QR code.",
  9003: "This server does not know this pairing code. Check that the PC's agent uses this server, or start pairing again on the PC for a new QR code.",
  1005: "This is not a pairing code. Scan the QR code the PC shows, or paste its whole link.",
  3004: "Your account may not pair PCs. Ask an admin.",
};

export function PairScreen() {
  const [token, setToken] = useState<string | null>(() => pendingToken());
  if (!token) return <PairHelp onToken={(t) => (setPendingToken(t), setToken(t))} />;
  return <PairConfirm token={token} onDiscard={() => (setPendingToken(null), setToken(null))} />;
}

function PairConfirm({ token, onDiscard }: { token: string; onDiscard: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [paired, setPaired] = useState<Paired | null>(null);

  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      const p = await confirmPairing(token);
      setPendingToken(null); // single use: done with it
      setPaired(p);
    } catch (e) {
      // A refused token will not work again: forget it (the user scans a new one).
      if (e instanceof ApiError && [5006, 5007, 9003, 1005].includes(e.code)) setPendingToken(null);
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  if (paired) {
    return (
      <>
        <TopBar title="PC paired" back="#/devices" />
        <main class="pair fill">
          <section class="card center" aria-live="polite">
            <p class="muted">Paired with your account</p>
            <h2 class="pc-name" id="paired-name">
              {paired.device_name}
            </h2>
            <p class="pair-code" id="pair-code" aria-label={`Matching number ${paired.pairing_code}`}>
              {paired.pairing_code}
            </p>
            <p>
              <strong>Check that your PC shows the same number.</strong>
            </p>
            <p class="small muted">
              If the PC shows another number, you paired a different PC: remove it from your list and tell an admin.
            </p>
            {paired.status === "awaiting_approval" && (
              <p class="notice">An admin must approve this PC before you can use it. It appears in your list meanwhile.</p>
            )}
          </section>
          <section class="actions">
            <button class="primary big" onClick={() => navigate("/device/" + encodeURIComponent(paired.device_id))}>
              Open {paired.device_name}
            </button>
          </section>
        </main>
      </>
    );
  }

  const failed = error instanceof ApiError && [5006, 5007, 9003, 1005].includes(error.code);
  return (
    <>
      <TopBar title="Pair a PC" back="#/devices" />
      <main class="pair fill">
        <section class="card">
          <h2>Pair this PC with your account?</h2>
          <p>
            You opened a pairing link from a PC running the Tether agent. Pairing lets you ({api.currentUser?.email}) see
            it and send it commands you sign on this phone.
          </p>
          <p class="small muted">Only pair a PC that is in front of you: you will compare a number shown on both.</p>
          <ErrorBox error={error} hints={PAIR_HINTS} />
        </section>
        <section class="actions">
          {failed ? (
            <button class="primary big" onClick={onDiscard}>
              Scan another code
            </button>
          ) : (
            <button class="primary big" onClick={() => void confirm()} disabled={busy}>
              {busy ? "Pairing…" : "Pair this PC"}
            </button>
          )}
          <button class="link full" onClick={() => (onDiscard(), navigate("/devices"))}>
            Cancel
          </button>
        </section>
      </main>
    </>
  );
}

interface Detector {
  detect(source: CanvasImageSource): Promise<{ rawValue: string }[]>;
}
type DetectorCtor = new (opts: { formats: string[] }) => Detector;

function barcodeDetector(): DetectorCtor | null {
  const C = (globalThis as { BarcodeDetector?: DetectorCtor }).BarcodeDetector;
  return typeof C === "function" && !!navigator.mediaDevices?.getUserMedia ? C : null;
}

/** How to pair, a pasted link, and a camera scan where the browser can read QR codes. */
function PairHelp({ onToken }: { onToken: (t: string) => void }) {
  const [link, setLink] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [scanning, setScanning] = useState(false);
  const canScan = barcodeDetector() !== null;

  const use = (text: string) => {
    const t = tokenFrom(text);
    if (!t) {
      setError("That is not a pairing link. It looks like https://…/pair#token=… — copy all of it from the PC.");
      return false;
    }
    onToken(t);
    return true;
  };

  return (
    <>
      <TopBar title="Pair a PC" back="#/devices" />
      <main class="pair fill">
        <section class="card">
          <h2>Pair a PC</h2>
          <ol class="pair-steps">
            <li>
              On the PC, install the Tether agent and run it against this server:
              <code class="cmdline">tether-agent run --server {location.origin} --state-dir DIR</code>
              <small class="muted">
                With this server's CA (<a href="/ca.pem">/ca.pem</a>) as <code>--ca-file</code>, or its{" "}
                <code>--ca-fingerprint</code>.
              </small>
            </li>
            <li>It shows a QR code and a pairing link (valid for 5 minutes).</li>
            <li>Scan the QR code with this phone's camera, or open the link here. Then compare the number.</li>
          </ol>
        </section>
        {canScan && (
          <section class="card">
            {scanning ? (
              <Scanner
                onCode={(text) => {
                  if (use(text)) setScanning(false);
                }}
                onStop={() => setScanning(false)}
                onError={(m) => (setError(m), setScanning(false))}
              />
            ) : (
              <button class="primary big" onClick={() => (setError(null), setScanning(true))}>
                Scan the QR code
              </button>
            )}
          </section>
        )}
        <form
          class="card"
          onSubmit={(e) => {
            e.preventDefault();
            setError(null);
            use(link);
          }}
        >
          <label>
            Pairing link
            <input
              type="url"
              inputMode="url"
              autocomplete="off"
              placeholder="https://…/pair#token=…"
              value={link}
              onInput={(e) => setLink(e.currentTarget.value)}
            />
            <small>Paste the link the PC shows.</small>
          </label>
          {error && (
            <div class="error" role="alert">
              <strong>Not a pairing link</strong>
              <p>{error}</p>
            </div>
          )}
          <button type="submit" class={canScan ? "" : "primary"} disabled={!link.trim()}>
            Continue
          </button>
        </form>
      </main>
    </>
  );
}

/** The camera, read by BarcodeDetector a few times a second until a QR code is found. */
function Scanner(props: { onCode: (text: string) => void; onStop: () => void; onError: (m: string) => void }) {
  const video = useRef<HTMLVideoElement>(null);
  const cb = useRef(props);
  cb.current = props;

  useEffect(() => {
    const Ctor = barcodeDetector();
    if (!Ctor) return;
    let stream: MediaStream | null = null;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let stopped = false;
    const detector = new Ctor({ formats: ["qr_code"] });
    (async () => {
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      } catch {
        cb.current.onError("The camera is not available (permission refused, or none). Paste the link instead.");
        return;
      }
      const v = video.current;
      if (stopped || !v) return;
      v.srcObject = stream;
      await v.play().catch(() => undefined);
      const tick = async () => {
        if (stopped) return;
        try {
          const codes = await detector.detect(v);
          const hit = codes.find((c) => /token=/.test(c.rawValue));
          if (hit) {
            cb.current.onCode(hit.rawValue);
            return;
          }
        } catch {
          // a frame that could not be read: try the next one
        }
        timer = setTimeout(() => void tick(), 250);
      };
      void tick();
    })();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      stream?.getTracks().forEach((t) => t.stop());
    };
  }, []);

  return (
    <div class="scanner">
      <video ref={video} muted playsInline aria-label="Camera view" />
      <p class="small muted">Point the camera at the QR code on the PC's screen.</p>
      <button onClick={props.onStop}>Stop the camera</button>
    </div>
  );
}
