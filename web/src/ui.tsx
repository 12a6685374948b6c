// Small shared pieces: the error box, a modal dialog, a top bar.

import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { describeError } from "./errors";

export function ErrorBox({ error, hints }: { error: unknown; hints?: Record<number, string> }) {
  if (!error) return null;
  const d = describeError(error, hints);
  return (
    <div class="error" role="alert">
      <strong>{d.title}</strong>
      <p>{d.message}</p>
      <p class="hint">{d.hint}</p>
      {d.detail && <p class="detail">{d.detail}</p>}
    </div>
  );
}

export function Dialog(props: { open: boolean; title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog ref={ref} onClose={props.onClose} aria-labelledby="dialog-title">
      <h2 id="dialog-title">{props.title}</h2>
      {props.children}
      <form method="dialog">
        <button type="submit">Close</button>
      </form>
    </dialog>
  );
}

export function TopBar(props: { title: string; back?: string; children?: ComponentChildren }) {
  return (
    <header class="bar">
      {props.back && (
        <a class="back" href={props.back} aria-label="Back">
          ‹
        </a>
      )}
      <h1>{props.title}</h1>
      <div class="bar-end">{props.children}</div>
    </header>
  );
}
