// A JWT's RS256 or ES256 signature checked with the runtime's WebCrypto
// (the Worker has no native crypto of its own to link): the key is one
// entry of the identity provider's JWKS, as JSON.
const KEYS = new Map();

async function importKey(alg, jwkJson) {
  const cached = KEYS.get(jwkJson);
  if (cached) return cached;
  const jwk = JSON.parse(jwkJson);
  // Only the key's material: `alg`, `use` or `key_ops` spelled differently
  // by a provider would make importKey refuse a good key.
  const material =
    jwk.kty === 'RSA' ? { kty: 'RSA', n: jwk.n, e: jwk.e } : { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
  const params =
    alg === 'RS256' ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } : { name: 'ECDSA', namedCurve: 'P-256' };
  const key = await crypto.subtle.importKey('jwk', material, params, false, ['verify']);
  if (KEYS.size > 64) KEYS.clear();
  KEYS.set(jwkJson, key);
  return key;
}

export async function verifySignature(alg, jwkJson, signingInput, signature) {
  const key = await importKey(alg, jwkJson);
  const params = alg === 'RS256' ? { name: 'RSASSA-PKCS1-v1_5' } : { name: 'ECDSA', hash: 'SHA-256' };
  return crypto.subtle.verify(params, key, signature, new TextEncoder().encode(signingInput));
}
