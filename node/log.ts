/**
 * The edge node's one structured logger: every entry is one JSON line on stderr
 * (`{"t":"2026-…Z","level":"info","name":"inbox","msg":"…",…fields}`), so an operator can pipe the daemon's output
 * through `jq` and a collector can parse it without guessing. The level comes from the caller or from the
 * `SEND_LOG_LEVEL` environment variable (debug, info, warn, error, silent); the default is `warn`, which keeps tests
 * and a healthy node quiet.
 */

/** Levels in increasing severity; `silent` turns a logger off. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/** Extra structured fields of an entry; values are serialised with JSON (bigint and Uint8Array as strings). */
export type LogFields = Readonly<Record<string, unknown>>;

/** A named logger: one method per level, each writing at most one JSON line. */
export interface Logger {
  readonly name: string;
  readonly level: LogLevel;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger named `<name>:<suffix>` at the same level and sink. */
  child(suffix: string): Logger;
}

/** Environment variable holding the default level. */
export const LOG_LEVEL_ENV = "SEND_LOG_LEVEL";
/** Quiet by default: warnings and errors are what an operator must see; tests stay readable. */
export const DEFAULT_LOG_LEVEL: LogLevel = "warn";

const RANK: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** Where entries go: one complete line per call. Tests may capture lines with `setLogSink`. */
export type LogSink = (line: string) => void;

let sink: LogSink = (line) => {
  process.stderr.write(line + "\n");
};

/** Replaces the sink of every logger (returns the previous one, so a test can restore it). */
export function setLogSink(next: LogSink): LogSink {
  const previous = sink;
  sink = next;
  return previous;
}

/** Parses a level name; undefined for anything else. */
export function parseLogLevel(value: string | undefined): LogLevel | undefined {
  const v = value?.trim().toLowerCase();
  return v !== undefined && v in RANK ? (v as LogLevel) : undefined;
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString("hex");
  if (value instanceof Error)
    return { name: value.name, message: value.message, code: (value as { code?: unknown }).code };
  return value;
}

/**
 * A logger named `name` at `level` (or `SEND_LOG_LEVEL`, or `warn`). Field names `t`, `level`, `name` and `msg` are
 * reserved; a field with one of those names is written as `field_<name>`.
 */
export function createLogger(name: string, level?: LogLevel): Logger {
  const effective = level ?? parseLogLevel(process.env[LOG_LEVEL_ENV]) ?? DEFAULT_LOG_LEVEL;
  const threshold = RANK[effective];
  const write = (entryLevel: Exclude<LogLevel, "silent">, msg: string, fields?: LogFields) => {
    if (RANK[entryLevel] < threshold) return;
    const entry: Record<string, unknown> = { t: new Date().toISOString(), level: entryLevel, name, msg };
    if (fields !== undefined) {
      for (const [key, value] of Object.entries(fields)) entry[key in entry ? `field_${key}` : key] = value;
    }
    let line: string;
    try {
      line = JSON.stringify(entry, replacer);
    } catch {
      line = JSON.stringify({ t: entry.t, level: entryLevel, name, msg, fields: "unserialisable" });
    }
    sink(line);
  };
  return {
    name,
    level: effective,
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
    child: (suffix) => createLogger(`${name}:${suffix}`, effective),
  };
}
