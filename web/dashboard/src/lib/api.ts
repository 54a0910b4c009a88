// Calls to the platform's public API (CONTRACT.md). The dashboard lives at dashboard.<base>;
// the API and the terminal at api.<base> and terminal.<base> on the same port.
import { accessToken, forget, refresh } from "./session.svelte";

const rest = location.host.replace(/^dashboard\./, "");
export const apiBase = `${location.protocol}//api.${rest}`;
export const terminalBase = `${location.protocol === "https:" ? "wss" : "ws"}://terminal.${rest}`;

/** A problem+json answer (RFC 9457): `detail` is what the person reads. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(detail);
  }
}

export async function problemOf(resp: Response): Promise<ApiError> {
  try {
    const body = await resp.json();
    return new ApiError(resp.status, body.code ?? "error", body.detail ?? resp.statusText);
  } catch {
    return new ApiError(resp.status, "error", `${resp.status} ${resp.statusText}`);
  }
}

export async function authHeaders(): Promise<Record<string, string>> {
  const token = await accessToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export async function api<T>(method: string, path: string, body?: unknown, retried = false): Promise<T> {
  let resp: Response;
  try {
    resp = await fetch(apiBase + path, {
      method,
      headers: {
        ...(await authHeaders()),
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The platform cannot be reached. Check your connection.");
  }
  if (resp.status === 401 && !retried) {
    // the access token was refused (e.g. a signing key revoked): renew once, else sign out
    if (await refresh()) return api<T>(method, path, body, true);
    forget();
  }
  if (!resp.ok) throw await problemOf(resp);
  if (resp.status === 204 || resp.status === 202) return undefined as T;
  return (await resp.json()) as T;
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatMoney(minor: number, currency: string): string {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 100);
}

export function formatDate(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "—";
}
