// Secrets never leave the plugin in a message: credentials in URLs, bearer
// tokens, token/password values of a YAML or JSON line, and private keys are
// replaced before an error is printed or logged. Messages built from such
// inputs (a kubeconfig's server, a YAML parser's excerpt of a token line) use
// these at the source; errorJson() and the failure log apply redact() once
// more to everything they emit, for causes no one thought of.

const R = '<redacted>';

/** `scheme://user:pass@host/…` -> `scheme://<redacted>@host/…`. */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@'"]*@/gi;
/** `Authorization: Bearer abc` / `bearer abc`. */
const BEARER = /\b(bearer|basic)\s+[^\s'",;]+/gi;
/**
 * A secret-named key and its value in YAML or JSON (`token: abc`,
 * `"password":"x"`, `client-key-data: LS0t…`). The key must start a word
 * after a space, quote, brace or comma, so that a field path in our own
 * messages ("users[0].user.token: must be a string") is left alone.
 */
const SECRET_VALUE = /(^|[\s{,"'])((?:id-|refresh-|access-|bearer-)?token|password|passwd|secret|client-key-data|client-certificate-data)(["']?\s*[:=]\s*)("[^"\n]*"?|'[^'\n]*'?|[^\s,;}'"]+)/gim;
const PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;

/** A URL (or any text holding URLs) with the userinfo part replaced. */
export function redactUrl(text: string): string {
  return text.replace(URL_CREDENTIALS, `$1${R}@`);
}

/** Text with every kind of secret above replaced. */
export function redact(text: string): string {
  return redactUrl(text)
    .replace(PRIVATE_KEY, `${R} private key`)
    .replace(BEARER, `$1 ${R}`)
    .replace(SECRET_VALUE, (_m, pre: string, key: string, sep: string, value: string) => {
      const q = value[0] === '"' || value[0] === "'" ? value[0] : '';
      return `${pre}${key}${sep}${q}${R}${q}`;
    });
}
