// A service of somebody else's, in Node: it knows the JWKS URL and nothing else of the auth service.
// Reads one access token per line on stdin and writes one JSON line per token: {ok, sub, sid, kid} or {ok: false, error}.
// Usage: node verify.mjs JWKS_URL ISSUER AUDIENCE JWKS_MAX_AGE_SECONDS
import { createInterface } from "node:readline";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";

const [jwksUrl, issuer, audience, maxAge] = process.argv.slice(2);
// jose caches the set and fetches it again for a kid it does not know (at most every 30 s by default);
// the cache time here follows the service's Cache-Control, as a careful verifier's would.
const jwks = createRemoteJWKSet(new URL(jwksUrl), {
  cooldownDuration: 1000,
  cacheMaxAge: Number(maxAge) * 1000,
});

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const token = line.trim();
  if (!token) continue;
  try {
    const { payload } = await jwtVerify(token, jwks, {
      issuer,
      audience,
      algorithms: ["ES256", "EdDSA", "RS256"],
      requiredClaims: ["sub", "sid", "iat", "exp", "jti"],
    });
    const { kid } = decodeProtectedHeader(token);
    console.log(JSON.stringify({ ok: true, sub: payload.sub, sid: payload.sid, kid }));
  } catch (error) {
    console.log(JSON.stringify({ ok: false, error: `${error.code || error.name}: ${error.message}` }));
  }
}
