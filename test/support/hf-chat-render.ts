// Runs test/support/hf_chat_render.py in the reference venv (real transformers, offline): the
// request names a model directory and conversations; the answer is what HF renders for them.
// Shared by the tests that compare temper's renderers with apply_chat_template.
import { spawn } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ToolSpec } from '../../src/tokenizers/messages.js';

const PYTHON = join(
  process.env.TEMPER_PYREF_VENV ?? join(homedir(), '.cache', 'temper', 'pyref'),
  'bin',
  'python',
);
const SCRIPT = join(import.meta.dirname, 'hf_chat_render.py');

/** A tool with nested JSON-schema parameters and quotes in its description. */
export const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather "now" in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' } },
      required: ['city'],
    },
  },
} as unknown as ToolSpec;

export function hfChatRender<T>(request: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [SCRIPT], {
      env: { ...process.env, HF_HUB_OFFLINE: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', (err) =>
      reject(
        new Error(`${PYTHON}: ${err.message} (the reference venv is built by scripts/setup.sh)`),
      ),
    );
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${SCRIPT} exited with ${code}: ${stderr}`));
      else resolve(JSON.parse(stdout) as T);
    });
    child.stdin.end(JSON.stringify(request));
  });
}
