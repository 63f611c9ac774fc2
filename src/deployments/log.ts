/** Deployment logs: pino JSON lines on stderr (replica stdout carries the ready line). */
import { type Logger, pino } from 'pino';

export type { Logger };

export function deploymentLogger(
  name: string,
  level = process.env.TEMPER_LOG_LEVEL ?? 'info',
): Logger {
  return pino({ name, level }, pino.destination({ dest: 2, sync: true }));
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
