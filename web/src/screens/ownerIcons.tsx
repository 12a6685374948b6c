// Line icons for the owner's security screens (inline SVG in currentColor: no icon font,
// no emoji that a phone without the font would show as a box, nothing for the CSP).

import type { ComponentChildren } from "preact";

const svg = (size: number, children: ComponentChildren) => (
  <svg
    width={size}
    height={size}
    viewBox="0 0 24 24"
    fill="none"
    stroke="currentColor"
    stroke-width="2"
    stroke-linecap="round"
    stroke-linejoin="round"
    aria-hidden="true"
    focusable="false"
  >
    {children}
  </svg>
);

export const LockIcon = ({ size = 24 }: { size?: number }) =>
  svg(
    size,
    <>
      <rect x="4" y="11" width="16" height="10" rx="2" />
      <path d="M8 11V7a4 4 0 0 1 8 0v4" />
    </>,
  );

export const KeyIcon = ({ size = 24 }: { size?: number }) =>
  svg(
    size,
    <>
      <circle cx="8" cy="15" r="4" />
      <path d="M10.8 12.2 20 3M16 7l3 3M14 9l2 2" />
    </>,
  );

export const ShieldIcon = ({ size = 24 }: { size?: number }) =>
  svg(
    size,
    <>
      <path d="M12 3 4 6v6c0 4.5 3.4 8.3 8 9 4.6-.7 8-4.5 8-9V6z" />
      <path d="m9 12 2 2 4-4" />
    </>,
  );

export const InboxIcon = ({ size = 24 }: { size?: number }) =>
  svg(
    size,
    <>
      <path d="M4 13h4l1.5 3h5L16 13h4" />
      <path d="M5.5 5h13L21 13v6H3v-6z" />
    </>,
  );
