// The dashboard's static files: index.html at `/`, hashed assets under /assets/ with their
// types and cache headers, and a 404 naming the build command when there is no build.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { webAppRoutes } from '../../src/control-plane/http/web-app.js';

const dir = mkdtempSync(join(tmpdir(), 'temper-web-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('webAppRoutes', () => {
  it('serves a build: index without caching, assets as immutable', async () => {
    const built = join(dir, 'built');
    mkdirSync(join(built, 'assets'), { recursive: true });
    writeFileSync(join(built, 'index.html'), '<!doctype html><title>t</title>');
    writeFileSync(join(built, 'assets', 'index-abc.js'), 'console.log(1)');
    writeFileSync(join(built, 'assets', 'index-abc.css'), 'body{}');
    const app = Fastify();
    webAppRoutes(app, built);
    const index = await app.inject({ url: '/' });
    expect(index.statusCode).toBe(200);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['cache-control']).toBe('no-cache');
    expect(index.body).toContain('<title>t</title>');
    const js = await app.inject({ url: '/assets/index-abc.js' });
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toContain('immutable');
    expect(js.body).toBe('console.log(1)');
    expect((await app.inject({ url: '/assets/index-abc.css' })).headers['content-type']).toBe(
      'text/css; charset=utf-8',
    );
    expect((await app.inject({ url: '/assets/missing.js' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/assets/..%2Findex.html' })).statusCode).toBe(404);
    await app.close();
  });

  it('answers 404 naming npm run build:web when there is no build', async () => {
    const app = Fastify();
    webAppRoutes(app, join(dir, 'absent'));
    const res = await app.inject({ url: '/' });
    expect(res.statusCode).toBe(404);
    expect(res.body).toContain('npm run build:web');
    await app.close();
  });
});
