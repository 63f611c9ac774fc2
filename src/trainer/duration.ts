/**
 * Durations as the CLI and the control plane write them: `90s`, `30m`, `2h`, `1500ms`,
 * protobuf JSON `"1800s"`, compound `1h30m`, or a bare number of seconds.
 */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string): number {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let at = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    at = re.lastIndex;
  }
  if (s.length === 0 || at !== s.length) {
    throw new Error(`'${text}' is not a duration (examples: 90s, 30m, 2h, 1h30m, 0)`);
  }
  return Math.round(total);
}
