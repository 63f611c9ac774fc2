// The dataset preview reads only the lines it shows, numbers them as the file does (blank lines
// count), and shows a line that is not JSON as text with the parser's message.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { previewLimit, previewLines } from '../../src/control-plane/resources/dataset-preview.js';

describe('dataset preview', () => {
  it('numbers lines as the file does and keeps a bad line as text', async () => {
    const text = '{"a":1}\r\n\n{"a":2}\nnot json\n{"a":3}\n';
    expect(await previewLines(Readable.from([text]), 10)).toEqual([
      { line: 1, record: { a: 1 } },
      { line: 3, record: { a: 2 } },
      { line: 4, text: 'not json', error: expect.stringMatching(/JSON/) },
      { line: 5, record: { a: 3 } },
    ]);
  });

  it('stops after the limit and closes the stream', async () => {
    let pulled = 0;
    const stream = Readable.from(
      (function* () {
        for (let i = 1; i <= 1_000_000; i++) {
          pulled = i;
          yield `{"i":${i}}\n`;
        }
      })(),
    );
    const lines = await previewLines(stream, 3);
    expect(lines.map((l) => l.line)).toEqual([1, 2, 3]);
    expect(stream.destroyed).toBe(true);
    // Read ahead by the stream's buffers only, not the million lines.
    expect(pulled).toBeLessThan(10_000);
  });

  it('takes a limit of 1 to 200', () => {
    expect(previewLimit({})).toBe(20);
    expect(previewLimit({ limit: '200' })).toBe(200);
    expect(() => previewLimit({ limit: '0' })).toThrow(/limit/);
    expect(() => previewLimit({ limit: '201' })).toThrow(/limit/);
  });
});
