// The login session: the access token in sessionStorage, for the token's life (no refresh).

const KEY = "rtpm.session";
let expiryTimer = 0;
const listeners = new Set();

export function onExpired(fn) {
  listeners.add(fn);
}

export function current() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (!s) return null;
    if (s.expires_at && s.expires_at <= Date.now()) {
      sessionStorage.removeItem(KEY);
      return null;
    }
    return s;
  } catch {
    return null;
  }
}

export function token() {
  const s = current();
  return s && s.access_token ? s.access_token : null;
}

export function save(tokens, username) {
  const s = {
    access_token: tokens.access_token || null,
    expires_at: tokens.expires_in ? Date.now() + tokens.expires_in * 1000 : null,
    username,
    anonymous: !tokens.access_token,
  };
  sessionStorage.setItem(KEY, JSON.stringify(s));
  schedule();
  return s;
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
  clearTimeout(expiryTimer);
}

/** Log out when the access token expires. */
export function schedule() {
  clearTimeout(expiryTimer);
  const s = current();
  if (!s || !s.expires_at) return;
  expiryTimer = setTimeout(() => {
    clearSession();
    for (const fn of listeners) fn();
  }, Math.max(0, s.expires_at - Date.now()));
}
