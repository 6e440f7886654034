// The mobile dashboard as a hand-written Node.js BFF would do it: verify the
// JWT against the JWKS, fan out to three services with undici and
// Promise.allSettled, keep what the phone shows. The benchmark compares its
// CPU per request with bff-mobile's, under the same load.
import Fastify from 'fastify';
import { Agent, request } from 'undici';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const env = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`missing ${k}`); process.exit(2); }
  return v;
};
const PORT = Number(env('PORT'));
const JWKS = createRemoteJWKSet(new URL(env('BFF_JWKS_URL')));
const ISSUER = env('BFF_ISSUER');
const USER = env('BFF_UPSTREAM_USER');
const ORDER = env('BFF_UPSTREAM_ORDER');
const RECS = env('BFF_UPSTREAM_RECOMMENDATION');
const dispatcher = new Agent({ connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });

async function getJson(url, timeoutMs) {
  const { statusCode, body } = await request(url, { dispatcher, signal: AbortSignal.timeout(timeoutMs) });
  if (statusCode !== 200) { await body.dump(); throw new Error(`status ${statusCode}`); }
  return body.json();
}

const problem = (reply, status, detail) =>
  reply.code(status).type('application/problem+json').send({ type: 'about:blank', status, detail });

const sized = (url, points) => `${url}?w=${points * 2}&q=75`;

const app = Fastify({ logger: false });
app.get('/healthz', async () => 'ok');
app.get('/v1/dashboard', async (req, reply) => {
  const auth = req.headers.authorization ?? '';
  if (!auth.startsWith('Bearer ')) return problem(reply, 401, 'missing token');
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(auth.slice(7), JWKS, { issuer: ISSUER, audience: 'bff-mobile', clockTolerance: 30 }));
  } catch {
    return problem(reply, 401, 'invalid token');
  }
  const id = encodeURIComponent(claims.sub);
  const [user, orders, recs] = await Promise.allSettled([
    getJson(`${USER}/users/${id}`, 500),
    getJson(`${ORDER}/orders?user_id=${id}&limit=5`, 2000),
    getJson(`${RECS}/recommendations?user_id=${id}&limit=3`, 2000),
  ]);
  if (user.status !== 'fulfilled') return problem(reply, 503, 'user data is unavailable');
  const degraded = [];
  const reasons = {};
  if (orders.status !== 'fulfilled') { degraded.push('orders'); reasons.orders = 'upstream_error'; }
  if (recs.status !== 'fulfilled') { degraded.push('recommendations'); reasons.recommendations = 'upstream_error'; }
  const u = user.value;
  return {
    user: {
      id: u.id,
      name: u.display_name,
      avatarUrl: sized(u.avatar_url, 48),
      preferences: {
        language: u.preferences.language,
        currency: u.preferences.currency,
        theme: u.preferences.theme,
        push: u.preferences.notifications.push,
      },
    },
    recentOrders: orders.status === 'fulfilled'
      ? orders.value.orders.slice(0, 5).map((o) => ({
          id: o.id,
          status: o.status,
          placedAt: o.created_at.slice(0, 10),
          totalMinor: o.total_minor,
          currency: o.currency,
          itemCount: o.items.reduce((n, i) => n + i.quantity, 0),
          thumbnailUrl: o.items[0] ? sized(o.items[0].image_url, 40) : null,
        }))
      : null,
    recommendations: recs.status === 'fulfilled'
      ? recs.value.recommendations.slice(0, 3).map((r) => ({
          productId: r.product_id,
          name: r.name,
          priceMinor: r.price_minor,
          currency: r.currency,
          imageUrl: sized(r.image_url, 120),
        }))
      : null,
    metadata: { timestamp: new Date().toISOString(), partialFailures: degraded.length, degraded, stale: [], reasons },
  };
});

await app.listen({ port: PORT, host: '127.0.0.1' });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => app.close().then(() => process.exit(0)));
