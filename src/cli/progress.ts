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
  // Progress may jump several steps between updates (a polled job): print a line whenever a
  // tenth of the way is crossed, not only when `done` lands exactly on one.
  let last = 0;
  return {
    update: (done, fields) => {
      const crossed = Math.floor(done / every) > Math.floor(last / every);
      if ((done === 1 && last === 0) || crossed || (done === total && last !== total))
        out.write(`${label} ${done}/${total} | ${formatFields(fields)}\n`);
      last = done;
    },
    stop: () => {},
  };
}

function formatFields(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k} ${v}`)
    .join(' | ');
}
