// The commands the device page offers (docs/protocol.md sections 7.1 and 8: the methods
// and their helper opcodes' parameters), and how each is presented.

export interface MethodDef {
  method: string;
  /** Button text and the result dialog's title. */
  label: string;
  params: Record<string, unknown>;
  /** Asked before signing: the PC loses its session or its power. */
  confirm?: { question: (pc: string) => string; detail: string; action: string };
  /** The result is a file: shown inline (an image) or offered for download. */
  artifact?: "image" | "file";
}

/** A log bundle's size cap (COLLECT_LOGS `max_bytes`, 1 KiB..64 MiB). */
export const LOG_BUNDLE_MAX_BYTES = 8 * 1024 * 1024;

export const METHODS: MethodDef[] = [
  { method: "lock_screen", label: "Lock screen", params: {} },
  { method: "screenshot", label: "Screenshot", params: {}, artifact: "image" },
  { method: "collect_logs", label: "Collect logs", params: { max_bytes: LOG_BUNDLE_MAX_BYTES }, artifact: "file" },
  {
    method: "reboot",
    label: "Reboot",
    params: {},
    confirm: {
      question: (pc) => `Reboot ${pc}?`,
      detail: "The PC restarts now. Work that is not saved on it may be lost.",
      action: "Reboot now",
    },
  },
  {
    method: "shutdown",
    label: "Shut down",
    params: {},
    confirm: {
      question: (pc) => `Shut down ${pc}?`,
      detail: "The PC turns off now, and stays off until someone turns it on: Tether cannot start it again.",
      action: "Shut down now",
    },
  },
];

const LABELS: Record<string, string> = {
  logoff: "Log off",
  run_attestation: "Attestation",
  run_tamper_check: "Tamper check",
  memory_dump: "Memory dump",
};

export function methodDef(method: string): MethodDef | undefined {
  return METHODS.find((m) => m.method === method);
}

/** A method as a person reads it. */
export function methodLabel(method: string): string {
  return methodDef(method)?.label ?? LABELS[method] ?? method;
}
