// A push service stand-in for the e2e tests, on 127.0.0.1:0: it plays both a browser vendor's
// push service and the browser's decryption. Each subscription it hands out has keys this
// process made (as a browser would: a P-256 key pair and a 16-byte auth secret). Every request
// to it is checked as a push service checks it (RFC 8030 headers; RFC 8292 VAPID: an ES256 JWT
// signed by the key in `k`, `aud` the endpoint's origin, `exp` within 24 h) and its body
// decrypted as a browser decrypts it (RFC 8291 aes128gcm). Answers 201, or what `respond` says.
import crypto from 'node:crypto';
import http from 'node:http';

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const fromB64url = (text) => Buffer.from(text, 'base64url');

/** A browser's subscription keys. */
export function browserKeys() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  return { ecdh, p256dh: b64url(ecdh.getPublicKey()), auth: b64url(crypto.randomBytes(16)) };
}

/** RFC 8291 + RFC 8188: decrypts an aes128gcm body with the subscription's keys. */
export function decrypt(body, keys) {
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  if (idlen !== 65) throw new Error(`keyid is ${idlen} bytes, not the sender's 65-byte public key`);
  const uaPublic = keys.ecdh.getPublicKey();
  const ecdhSecret = keys.ecdh.computeSecret(asPublic);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), uaPublic, asPublic]);
  const ikm = Buffer.from(crypto.hkdfSync('sha256', ecdhSecret, fromB64url(keys.auth), keyInfo, 32));
  const cek = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  if (ciphertext.length > rs) throw new Error('more than one record: a 3 KB payload fits in one');
  const decipher = crypto.createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const padded = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end -= 1;
  if (padded[end] !== 2) throw new Error('the last record does not end with the 0x02 delimiter');
  return padded.subarray(0, end);
}

/** RFC 8292: checks `Authorization: vapid t=..., k=...`; returns the JWT's claims. */
export function checkVapid(header, endpointOrigin, expectedKey) {
  const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(header || '');
  if (!m) throw new Error(`Authorization is not a VAPID header: ${header}`);
  const [, jwt, k] = m;
  if (expectedKey && k !== expectedKey) throw new Error('k is not the relay\'s public key');
  const [h, c, s] = jwt.split('.');
  const head = JSON.parse(fromB64url(h).toString());
  if (head.alg !== 'ES256') throw new Error(`alg ${head.alg}`);
  const point = fromB64url(k);
  const key = crypto.createPublicKey({ format: 'jwk', key: { kty: 'EC', crv: 'P-256', x: b64url(point.subarray(1, 33)), y: b64url(point.subarray(33, 65)) } });
  const ok = crypto.verify('sha256', Buffer.from(`${h}.${c}`), { key, dsaEncoding: 'ieee-p1363' }, fromB64url(s));
  if (!ok) throw new Error('the VAPID signature does not verify');
  const claims = JSON.parse(fromB64url(c).toString());
  if (claims.aud !== endpointOrigin) throw new Error(`aud ${claims.aud} is not ${endpointOrigin}`);
  const now = Math.floor(Date.now() / 1000);
  if (!(claims.exp > now && claims.exp <= now + 24 * 3600 + 60)) throw new Error(`exp ${claims.exp} is not within 24 h`);
  if (typeof claims.sub !== 'string' || !/^(mailto:|https?:)/.test(claims.sub)) throw new Error(`sub ${claims.sub}`);
  return claims;
}

export class PushService {
  constructor() {
    this.subscriptions = new Map(); // id -> keys
    this.messages = []; // {id, headers, payload, claims}
    this.errors = [];
    this.vapidKey = null; // the relay's public key, once known
    this.respond = null; // (id, req) => status, for tests of 404/410/429
    this.server = http.createServer((req, res) => this.#receive(req, res));
  }

  static async start() {
    const service = new PushService();
    await new Promise((resolve) => service.server.listen(0, '127.0.0.1', resolve));
    service.origin = `http://127.0.0.1:${service.server.address().port}`;
    return service;
  }

  /** A new subscription, as `PushSubscription.toJSON()` gives it. */
  subscribe() {
    const id = crypto.randomBytes(8).toString('hex');
    const keys = browserKeys();
    this.subscriptions.set(id, keys);
    return { id, json: { endpoint: `${this.origin}/push/${id}`, expirationTime: null, keys: { p256dh: keys.p256dh, auth: keys.auth } } };
  }

  /** The decrypted messages sent to one subscription. */
  messagesFor(id) {
    return this.messages.filter((m) => m.id === id);
  }

  close() {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(resolve));
  }

  #receive(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const id = (req.url.match(/^\/push\/([0-9a-f]+)$/) || [])[1];
      const keys = id && this.subscriptions.get(id);
      try {
        if (req.method !== 'POST' || !keys) throw new Error(`${req.method} ${req.url}: no such subscription`);
        const status = this.respond ? this.respond(id, req) : 0;
        if (status) {
          res.writeHead(status, status === 429 ? { 'retry-after': '1' } : {});
          return res.end();
        }
        if (req.headers['content-encoding'] !== 'aes128gcm') throw new Error(`Content-Encoding ${req.headers['content-encoding']}`);
        if (!/^\d+$/.test(req.headers.ttl || '')) throw new Error(`TTL ${req.headers.ttl}`);
        const claims = checkVapid(req.headers.authorization, this.origin, this.vapidKey);
        const payload = JSON.parse(decrypt(Buffer.concat(chunks), keys).toString('utf8'));
        this.messages.push({ id, headers: req.headers, payload, claims });
        res.writeHead(201, { location: `${this.origin}/message/${this.messages.length}` });
        res.end();
      } catch (e) {
        this.errors.push(e.message);
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(e.message);
      }
    });
  }
}
