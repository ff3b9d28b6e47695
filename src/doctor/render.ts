/**
 * Text output of both doctors. The spec fixes the prefixes (`PASS  | ` …) and headers; we add
 * one rule of our own: a WARN or FAIL line never stands alone — the type below makes the fix
 * (an exact command, or the exact step when no command exists) mandatory, and it is printed on
 * the very next line as `INFO  | fix: …` so every line still carries one of the four prefixes.
 */
export type DoctorLine =
  | { level: "PASS" | "INFO"; text: string }
  | { level: "WARN" | "FAIL"; text: string; fix: string };

export const PREFIX = {
  PASS: "PASS  | ",
  WARN: "WARN  | ",
  FAIL: "FAIL  | ",
  INFO: "INFO  | ",
} as const;
export const FIX_PREFIX = `${PREFIX.INFO}fix: `;

export const HOST_HEADER = "== substrate host doctor ==";
export const WORLD_HEADER = "== substrate world doctor ==";
export const HOST_SECTION = "== Host ==";
export const WORLD_SECTION = "== World ==";

export const pass = (text: string): DoctorLine => ({ level: "PASS", text });
export const info = (text: string): DoctorLine => ({ level: "INFO", text });
export const warn = (text: string, fix: string): DoctorLine => ({ level: "WARN", text, fix });
export const fail = (text: string, fix: string): DoctorLine => ({ level: "FAIL", text, fix });

export function renderLines(lines: DoctorLine[]): string[] {
  const out: string[] = [];
  for (const l of lines) {
    out.push(`${PREFIX[l.level]}${l.text}`);
    if (l.level === "WARN" || l.level === "FAIL") out.push(`${FIX_PREFIX}${l.fix}`);
  }
  return out;
}

export const renderHostText = (lines: DoctorLine[]): string => [HOST_HEADER, ...renderLines(lines)].join("\n") + "\n";

export const renderWorldText = (host: DoctorLine[], world: DoctorLine[]): string =>
  [WORLD_HEADER, HOST_SECTION, ...renderLines(host), WORLD_SECTION, ...renderLines(world)].join("\n") + "\n";
