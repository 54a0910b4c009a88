// The signed-in session. The access token lives in this module's memory only; the refresh
// token is an HttpOnly, SameSite=Strict cookie that identity sets on dashboard.<base>/v1/auth
// in "cookie mode", so script (and an XSS) can never read it. A reload restores the session
// through that cookie; a timer refreshes a minute before the access token expires.
import { api, problemOf, ApiError } from "./api";
import type { User } from "./types";

interface TokenAnswer {
  access_token: string;
  expires_in: number;
  user?: User;
}

let token: string | null = null;
let expiresAt = 0;
let timer: ReturnType<typeof setTimeout> | undefined;
let inflight: Promise<boolean> | null = null;

export const session = $state<{ user: User | null; ready: boolean }>({ user: null, ready: false });

async function authCall(path: string, body?: unknown): Promise<Response> {
  try {
    return await fetch(`/v1/auth/${path}`, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "X-Shardz-Session": "cookie",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The platform cannot be reached. Check your connection.");
  }
}

async function accept(answer: TokenAnswer): Promise<void> {
  token = answer.access_token;
  expiresAt = Date.now() + answer.expires_in * 1000;
  clearTimeout(timer);
  // refresh a minute early (or halfway through a very short lifetime)
  const lead = Math.min(60, answer.expires_in / 2) * 1000;
  timer = setTimeout(() => void refresh(), Math.max(1000, expiresAt - Date.now() - lead));
  if (answer.user) session.user = answer.user;
  else if (!session.user) session.user = await me();
}

async function me(): Promise<User | null> {
  // no retry: this runs inside a refresh, which a retry would wait for
  return api<User>("GET", "/v1/users/me", undefined, true);
}

export function forget(): void {
  token = null;
  expiresAt = 0;
  clearTimeout(timer);
  session.user = null;
}

/** One refresh at a time, across tabs too (Web Locks): a spent refresh token presented twice
 * ends the whole session, and every tab shares the one cookie. */
export function refresh(): Promise<boolean> {
  inflight ??= (async () => {
    try {
      const resp = await (navigator.locks
        ? navigator.locks.request("shz-refresh", () => authCall("refresh"))
        : authCall("refresh"));
      if (!resp.ok) {
        forget();
        return false;
      }
      await accept(await resp.json());
      return true;
    } catch {
      return false;
    } finally {
      inflight = null;
    }
  })();
  return inflight;
}

export async function restore(): Promise<void> {
  await refresh();
  session.ready = true;
}

export async function accessToken(): Promise<string | null> {
  if (token && Date.now() < expiresAt - 10_000) return token;
  if (token || session.user) await refresh();
  return token;
}

export async function signIn(kind: "login" | "signup", email: string, password: string) {
  const resp = await authCall(kind, { email, password });
  if (!resp.ok) throw await problemOf(resp);
  await accept(await resp.json());
}

export async function signOut(): Promise<void> {
  try {
    await authCall("logout");
  } finally {
    forget();
  }
}
