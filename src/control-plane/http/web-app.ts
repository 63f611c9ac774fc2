/**
 * Serves the dashboard (web/, built by `npm run build:web` into dist/web) at `/`: index.html
 * and its hashed assets under /assets/. The app routes with the URL hash, so no other path
 * needs a fallback, and it signs in with an API key it sends on every API call itself: these
 * files are public, the data behind them is not.
 *
 * Choices:
 * - A small handler, not a static-file plugin: two routes, files read once and kept (the
 *   build is immutable while the process runs; a rebuild needs a restart).
 * - Without a build, `/` answers 404 naming the command that makes one.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ApiError } from './errors.js';

/** The checkout's root: the nearest folder above this module with a package.json (src/ or dist/src/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** Where `npm run build:web` writes the dashboard. */
export const WEB_APP_DIR = join(packageRoot(), 'dist', 'web');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

interface File {
  type: string;
  body: Buffer;
}

function load(dir: string): Map<string, File> | undefined {
  let names: string[];
  try {
    names = readdirSync(join(dir, 'assets'));
  } catch {
    return undefined;
  }
  const files = new Map<string, File>();
  const index = readFileSync(join(dir, 'index.html'));
  files.set('/', { type: TYPES['.html']!, body: index });
  for (const name of names)
    files.set(`/assets/${name}`, {
      type: TYPES[extname(name)] ?? 'application/octet-stream',
      body: readFileSync(join(dir, 'assets', name)),
    });
  return files;
}

export function webAppRoutes(app: FastifyInstance, dir = WEB_APP_DIR): void {
  let files: Map<string, File> | undefined;
  /** The file at `path`, or the API's NOT_FOUND error body (sent here, whatever the app's error handler). */
  const serve = (path: string, reply: FastifyReply): File | undefined => {
    files ??= load(dir);
    const file = files?.get(path);
    if (file) return file;
    const err = new ApiError(
      'NOT_FOUND',
      files
        ? `no route GET ${path}`
        : `the dashboard is not built (no ${dir}): run \`npm run build:web\` and restart`,
    );
    void reply.status(err.httpStatus).send(err.toJSON());
    return undefined;
  };
  app.get('/', async (_req, reply) => {
    const f = serve('/', reply);
    if (!f) return reply;
    return reply.type(f.type).header('cache-control', 'no-cache').send(f.body);
  });
  app.get<{ Params: { name: string } }>('/assets/:name', async (req, reply) => {
    const f = serve(`/assets/${req.params.name}`, reply);
    if (!f) return reply;
    // Asset names carry a content hash: they never change under the same name.
    return reply
      .type(f.type)
      .header('cache-control', 'public, max-age=31536000, immutable')
      .send(f.body);
  });
}
