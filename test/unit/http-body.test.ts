import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyTooLargeError, readBodyLimited } from '../../src/util/http-body.js';

const LIMIT = 64 * 1024;

/** Streams `total` bytes (chunked unless declared) and resolves with the answer's status. */
function send(url: string, total: number, declare: boolean) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: declare ? { 'content-length': String(total) } : {},
    });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
        req.destroy();
      });
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    const pump = () => {
      while (!answered && sent < total) {
        const part = chunk.subarray(0, Math.min(chunk.length, total - sent));
        sent += part.length;
        if (!req.write(part)) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    pump();
  });
}

describe('readBodyLimited', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      readBodyLimited(req, LIMIT).then(
        (b) => res.end(`got ${b.length}`),
        (err: unknown) => {
          res.statusCode = err instanceof BodyTooLargeError ? 413 : 500;
          res.end((err as Error).message);
        },
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('returns a body within the limit whole', async () => {
    expect(await send(url, LIMIT - 1024, false)).toEqual({
      status: 200,
      body: `got ${LIMIT - 1024}`,
    });
  });

  it('answers 413 to a declared length over the limit', async () => {
    const r = await send(url, 64 * LIMIT, true);
    expect(r.status).toBe(413);
    expect(r.body).toContain(`exceeds ${LIMIT} bytes`);
  });

  it('answers 413, never a reset, to a client still streaming a chunked body (20 tries)', async () => {
    for (let i = 0; i < 20; i++) {
      const r = await send(url, 1024 * LIMIT, false);
      expect(r.status).toBe(413);
    }
  });
});
