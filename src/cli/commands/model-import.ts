/**
 * `temper model create <id> --from <dir|file://|s3://|gs://>`: the whole import of an HF model
 * directory or PEFT adapter — create, :getUploadEndpoint, one streamed PUT per file (read from
 * the directory or the object store as it is sent, never whole in memory) with a progress bar
 * over the bytes, then :validateUpload. The server removes a refused upload; anything that
 * fails before (a network error mid-file) deletes the model here, so nothing is left behind.
 * A directory with adapter_config.json is a LoRA adapter and needs --base-model.
 */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import type { Command } from 'commander';
import { z } from 'zod';
import { openObjectStore } from '../../checkpoints/object-store/index.js';
import type { TemperApi } from '../api/client.js';
import { type Resource, resourceSchema } from '../api/schemas.js';
import { printResource } from '../output.js';
import { createProgress } from '../progress.js';
import { type ApiFlags, apiAction, defined, withApiFlags } from './common.js';

interface SourceFile {
  name: string;
  size: number;
  open(): Promise<Readable>;
}

const ADAPTER_CONFIG = 'adapter_config.json';
const uploadUrlsSchema = z.object({ filenameToSignedUrls: z.record(z.string(), z.string()) });

/** The top-level files of a directory or an object-store prefix. */
async function listSource(from: string): Promise<SourceFile[]> {
  if (/^(s3|gs|file):\/\//.test(from)) {
    const store = await openObjectStore(from);
    const objects = await store.list('');
    return objects
      .filter((o) => !o.key.includes('/'))
      .map((o) => ({ name: o.key, size: o.size, open: () => store.getStream(o.key) }));
  }
  const info = await stat(from).catch(() => undefined);
  if (!info?.isDirectory())
    throw new Error(`${from} is not a directory (or a file://, s3://, gs:// URL)`);
  const out: SourceFile[] = [];
  for (const entry of await readdir(from, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(from, entry.name);
    out.push({
      name: entry.name,
      size: (await stat(path)).size,
      open: async () => createReadStream(path),
    });
  }
  return out;
}

export interface ImportOptions {
  baseModel?: string | undefined;
  displayName?: string | undefined;
  /** Called as bytes go out. */
  onProgress?: (sent: number, total: number, file: string) => void;
}

export async function importModel(
  api: TemperApi,
  id: string,
  from: string,
  opts: ImportOptions = {},
): Promise<Resource> {
  const files = (await listSource(from)).sort((a, b) => a.name.localeCompare(b.name));
  if (files.length === 0) throw new Error(`${from} has no files`);
  const adapter = files.some((f) => f.name === ADAPTER_CONFIG);
  if (adapter && !opts.baseModel)
    throw new Error(`${from} is a LoRA adapter (${ADAPTER_CONFIG}): give its --base-model`);
  if (!adapter && opts.baseModel)
    throw new Error(`--base-model is for LoRA adapters, and ${from} has no ${ADAPTER_CONFIG}`);
  const model = defined({
    kind: adapter ? 'HF_PEFT_ADDON' : 'HF_BASE_MODEL',
    displayName: opts.displayName,
    peftDetails: adapter ? { baseModel: opts.baseModel } : undefined,
  });
  const created = await api.request('POST', api.collectionPath('models'), resourceSchema, {
    body: { modelId: id, model },
  });
  try {
    const { filenameToSignedUrls: urls } = await api.request(
      'POST',
      `/v1/${created.name}:getUploadEndpoint`,
      uploadUrlsSchema,
      { body: { filenameToSize: Object.fromEntries(files.map((f) => [f.name, f.size])) } },
    );
    const total = files.reduce((s, f) => s + f.size, 0);
    let sent = 0;
    for (const f of files) {
      const counted = new Transform({
        transform(chunk: Buffer, _enc, done) {
          sent += chunk.length;
          opts.onProgress?.(sent, total, f.name);
          done(null, chunk);
        },
      });
      const body = (await f.open()).pipe(counted);
      const res = await fetch(urls[f.name]!, {
        method: 'PUT',
        headers: { 'content-length': String(f.size) },
        body: body as unknown as ReadableStream,
        duplex: 'half',
      } as RequestInit);
      if (!res.ok)
        throw new Error(`upload of ${f.name} failed (${res.status}): ${await res.text()}`);
    }
    // Refused uploads are removed by the server, which answers with every problem.
    return await api.request('GET', `/v1/${created.name}:validateUpload`, resourceSchema);
  } catch (err) {
    await api.request('DELETE', `/v1/${created.name}`, z.unknown()).catch(() => undefined);
    throw err;
  }
}

/** `temper model create`. */
export function addModelCreate(model: Command): void {
  withApiFlags(model.command('create').argument('<id>', 'model id'))
    .description(
      'import an HF model directory or PEFT LoRA adapter (validated; nothing is kept on failure)',
    )
    .requiredOption('--from <dir|url>', 'directory, or file://, s3://, gs:// prefix with the files')
    .option('--base-model <model>', "a LoRA adapter's base model")
    .option('--display-name <name>', 'display name')
    .action(
      apiAction<ApiFlags & { from: string; baseModel?: string; displayName?: string }>(
        async ({ api, output }, [id], flags) => {
          let progress: ReturnType<typeof createProgress> | undefined;
          const resource = await importModel(api, id!, flags.from, {
            baseModel: flags.baseModel,
            displayName: flags.displayName,
            onProgress: (sent, total, file) => {
              progress ??= createProgress('upload', total, process.stderr);
              progress.update(sent, { file });
            },
          });
          progress?.stop();
          printResource(resource, output);
        },
      ),
    );
}
