/** The pod's logger: pino JSON lines on stdout (the launcher captures them into a log file). */
import { type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'temper-trainer',
      level: options.level ?? process.env.TEMPER_LOG_LEVEL ?? 'info',
    },
    pino.destination({ dest: 1, sync: true }),
  );
}

/** A logger that drops everything (in-process tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
