// A command's live state and result, as the result dialog and the command history show
// it; a screenshot inline and a log bundle to download, decrypted in the browser.

import { useEffect, useState } from "preact/hooks";
import type { CommandView } from "./api";
import { artifactOf, fetchArtifact, fileName, type ArtifactRef } from "./artifacts";
import { ApiError } from "./errors";
import { formatBytes, formatState, isTerminal } from "./format";
import { ErrorBox } from "./ui";

interface ResultBody {
  status?: string;
  notes?: string;
  duration_ms?: number;
  error?: number;
}

export function CommandState({ cmd, online }: { cmd: CommandView; online: boolean }) {
  const done = isTerminal(cmd.state);
  const result = cmd.result as ResultBody | undefined;
  const art = done && cmd.state === "completed" ? artifactOf(cmd.result) : null;
  return (
    <div aria-live="polite" data-command-id={cmd.command_id} data-state={cmd.state}>
      <p class={"state " + cmd.state}>
        <strong>{formatState(cmd.state)}</strong>
        {!done && <span class="spinner" aria-hidden="true" />}
      </p>
      {!done && !online && cmd.state === "queued" && (
        <p class="muted">The PC is offline; it runs this when it reconnects, until the command expires.</p>
      )}
      {cmd.state === "awaiting_approval" && (
        <p class="muted">Policy wants another authorised person to approve it first.</p>
      )}
      {done && result && (
        <p>
          {result.status ?? ""} {result.notes ? `— ${result.notes}` : ""}
          {result.duration_ms !== undefined ? ` [${result.duration_ms} ms]` : ""}
        </p>
      )}
      {art && <ArtifactPreview art={art} />}
      {done && cmd.error !== undefined && cmd.error !== null && (
        <ErrorBox error={new ApiError(0, cmd.error, "Command failed", `The command ended with error ${cmd.error}.`)} />
      )}
      <p class="small muted ids">
        command {cmd.command_id} · trace {cmd.trace_id}
      </p>
    </div>
  );
}

/** Downloads, checks and decrypts an artifact, then shows it (image) or offers it (file). */
export function ArtifactPreview({ art }: { art: ArtifactRef }) {
  const [url, setUrl] = useState<string | null>(null);
  const [size, setSize] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let cancelled = false;
    let made: string | null = null;
    setError(null);
    setUrl(null);
    fetchArtifact(art.artifact_id).then(
      ({ meta, bytes }) => {
        if (cancelled) return;
        made = URL.createObjectURL(new Blob([bytes], { type: meta.content_type }));
        setSize(bytes.length);
        setUrl(made);
      },
      (e) => !cancelled && setError(e),
    );
    return () => {
      cancelled = true;
      if (made) URL.revokeObjectURL(made);
    };
  }, [art.artifact_id, attempt]);

  const image = art.content_type.startsWith("image/");
  if (error) {
    return (
      <div>
        <ErrorBox error={error} />
        <button onClick={() => setAttempt((n) => n + 1)}>Try again</button>
      </div>
    );
  }
  if (!url) return <p class="muted">Downloading and decrypting the {image ? "screenshot" : "file"}…</p>;
  const name = fileName(art.artifact_id, art.content_type);
  return (
    <div class="artifact">
      {image && <img class="shot" src={url} alt="Screenshot of the PC's screen" />}
      <a class="button" href={url} download={name}>
        {image ? "Save screenshot" : "Download log bundle"} ({formatBytes(size)})
      </a>
    </div>
  );
}
