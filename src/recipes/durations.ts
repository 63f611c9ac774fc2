/**
 * Durations in job bodies (`inactivityTimeout`, `rolloutTimeout`): a protobuf JSON duration
 * or the CLI's spelling as a string ("1800s", "30m", "1h30m"), or a number of seconds. One
 * schema per setting, built here, parses the value to seconds and bounds it, so a value that
 * cannot run (1e308, Infinity, a year) is refused at create with the field's name instead of
 * being stored as "Infinitys".
 */
import { z } from 'zod';
import { parseDuration } from '../trainer/duration.js';

/** Seconds, spelled for messages: 3600 → "3600s (1h)". */
const spell = (seconds: number) =>
  seconds % 3600 === 0
    ? `${seconds}s (${seconds / 3600}h)`
    : seconds % 60 === 0
      ? `${seconds}s (${seconds / 60}m)`
      : `${seconds}s`;

/**
 * A duration setting: resolves to whole seconds in [min, max]; `undefined` stays undefined
 * (the caller's default applies). `allowZero`: 0 is accepted as is (it means "the default"
 * for some settings).
 */
export function durationSeconds(opts: { min: number; max: number; allowZero?: boolean }) {
  return z.union([z.string().max(64), z.number()]).transform((value, ctx) => {
    let ms: number;
    try {
      ms = typeof value === 'number' ? value * 1000 : parseDuration(value);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
    const seconds = Math.ceil(ms / 1000);
    if (seconds === 0 && opts.allowZero) return 0;
    if (!Number.isFinite(ms) || seconds < opts.min || seconds > opts.max) {
      ctx.addIssue({
        code: 'custom',
        message: `${String(value)} is not a duration from ${spell(opts.min)} to ${spell(opts.max)}`,
      });
      return z.NEVER;
    }
    return seconds;
  });
}
