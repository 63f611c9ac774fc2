// Progress for long work: a live bar on a terminal, plain periodic lines otherwise (CI logs).
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, fields: Record<string, string>): void;
  stop(): void;
}

export function createProgress(
  label: string,
  total: number,
  out: NodeJS.WriteStream = process.stdout,
): Progress {
  if (out.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {value}/{total} | {status}`, hideCursor: true, stream: out },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { status: '' });
    return {
      update: (done, fields) => bar.update(done, { status: formatFields(fields) }),
      stop: () => bar.stop(),
    };
  }
  const every = Math.max(1, Math.round(total / 10));
  return {
    update: (done, fields) => {
      if (done === 1 || done % every === 0 || done === total)
        out.write(`${label} ${done}/${total} | ${formatFields(fields)}\n`);
    },
    stop: () => {},
  };
}

function formatFields(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k} ${v}`)
    .join(' | ');
}
