/**
 * The API key lives in the browser's storage only: localStorage when the user asks to be
 * remembered on this device, sessionStorage (gone with the tab) otherwise. Never in a URL.
 */

const NAME = "facilitair.apiKey";

function storage(kind: "local" | "session"): Storage | null {
  try {
    return kind === "local" ? window.localStorage : window.sessionStorage;
  } catch {
    return null; // storage disabled (privacy mode): the key lasts as long as the page
  }
}

export function loadKey(): { key: string; remembered: boolean } | null {
  const session = storage("session")?.getItem(NAME);
  if (session) return { key: session, remembered: false };
  const local = storage("local")?.getItem(NAME);
  if (local) return { key: local, remembered: true };
  return null;
}

export function saveKey(key: string, remember: boolean): void {
  forgetKey();
  storage(remember ? "local" : "session")?.setItem(NAME, key);
}

export function forgetKey(): void {
  storage("local")?.removeItem(NAME);
  storage("session")?.removeItem(NAME);
}

/** "fac_AbCd…" — enough to recognise a key without showing it. */
export function maskKey(key: string): string {
  return key.length <= 8 ? "••••" : `${key.slice(0, 8)}…`;
}
