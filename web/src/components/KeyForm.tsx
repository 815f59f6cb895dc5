import { type FormEvent, useEffect, useId, useRef, useState } from "react";

import { Api, ApiError } from "../api";

interface Props {
  initialRemember: boolean;
  onSave: (key: string, remember: boolean) => void;
  onCancel?: () => void;
  /** An error to show on arrival (the saved key was refused). */
  problem?: string | null;
}

/** API-key entry. The key is checked against the server before it is kept. */
export function KeyForm({ initialRemember, onSave, onCancel, problem }: Props) {
  const [key, setKey] = useState("");
  const [remember, setRemember] = useState(initialRemember);
  const [reveal, setReveal] = useState(false);
  const [checking, setChecking] = useState(false);
  const [error, setError] = useState<string | null>(problem ?? null);
  const inputRef = useRef<HTMLInputElement>(null);
  const id = useId();

  useEffect(() => inputRef.current?.focus(), []);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const value = key.trim();
    if (!value) {
      setError("Enter an API key (facilitair keys create --name NAME prints one).");
      inputRef.current?.focus();
      return;
    }
    setChecking(true);
    setError(null);
    try {
      await new Api({ apiKey: value }).tasks(1, 0);
      onSave(value, remember);
    } catch (caught) {
      const message = caught instanceof ApiError ? caught.message : "The key could not be checked.";
      setError(message);
      inputRef.current?.focus();
    } finally {
      setChecking(false);
    }
  }

  return (
    <form className="card key-form" onSubmit={submit} aria-labelledby={`${id}-title`} noValidate>
      <h2 id={`${id}-title`}>Your API key</h2>
      <p className="hint">
        Create one on the server with <code>facilitair keys create --name you</code>. It is kept in
        this browser only and sent in a request header, never in a URL.
      </p>
      <label htmlFor={`${id}-key`}>API key</label>
      <div className="row">
        <input
          ref={inputRef}
          id={`${id}-key`}
          name="api-key"
          type={reveal ? "text" : "password"}
          autoComplete="off"
          spellCheck={false}
          value={key}
          onChange={(e) => setKey(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `${id}-error` : undefined}
          placeholder="fac_…"
        />
        <button type="button" className="secondary" onClick={() => setReveal(!reveal)} aria-pressed={reveal}>
          {reveal ? "Hide" : "Show"}
        </button>
      </div>
      <label className="check">
        <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.target.checked)} />
        Remember on this device
      </label>
      {error && (
        <p id={`${id}-error`} className="error" role="alert" data-testid="key-error">
          {error}
        </p>
      )}
      <div className="row">
        <button type="submit" disabled={checking}>
          {checking ? "Checking…" : "Save key"}
        </button>
        {onCancel && (
          <button type="button" className="secondary" onClick={onCancel}>
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}
