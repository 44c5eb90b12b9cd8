/**
 * The edge node's one embedded database: a better-sqlite3 file in the data directory holding every service's state
 * (the inbox, prekeys, bills, …), opened in WAL mode with `synchronous = FULL` by default (a transaction that
 * returned is on disk: a SIGKILL or a power cut loses nothing the node acknowledged; `NORMAL` on request keeps the
 * SIGKILL guarantee only) and foreign keys enforced.
 *
 * Schema changes are migrations: each has a unique id (`"<service>/<n>-<what>"`) and runs once, in its own
 * transaction together with the row in `schema_migrations` that records it, so a crash halfway leaves either the old
 * or the new schema. The inbox's migrations are applied on open; every other service passes its own list, either to
 * `openNodeDatabase(path, { migrations })` or later with `db.migrate(list)` from its constructor. Applied ids are
 * never re-run, and ids are never reused.
 */
import BetterSqlite3 from "better-sqlite3";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { createLogger } from "./log";

/** The better-sqlite3 connection type, for services that prepare their own statements. */
export type SqliteDatabase = BetterSqlite3.Database;

/** One schema change. `up` runs inside a transaction: it must not open one itself. */
export interface Migration {
  /** Unique forever, e.g. "inbox/1-messages"; the order of application is the order of the list. */
  readonly id: string;
  /** SQL to execute, or a function given the connection. */
  readonly up: string | ((db: SqliteDatabase) => void);
}

/** Why the database could not be opened or migrated. */
export type NodeDatabaseErrorCode = "DB_OPEN_FAILED" | "DB_MIGRATION_FAILED" | "DB_BAD_MIGRATION" | "DB_CLOSED";

/** A database that could not be opened, migrated or used. */
export class NodeDatabaseError extends Error {
  readonly code: NodeDatabaseErrorCode;
  constructor(code: NodeDatabaseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NodeDatabaseError";
    this.code = code;
  }
}

/** The node's open database. */
export interface NodeDatabase {
  /** The file path (":memory:" for an in-memory database). */
  readonly path: string;
  /** The connection; services prepare their statements on it. */
  readonly sqlite: SqliteDatabase;
  /** Applies the migrations of `list` not applied yet, in order; returns the ids it applied. */
  migrate(list: readonly Migration[]): string[];
  /** Runs `fn` in one IMMEDIATE transaction (committed when it returns, rolled back when it throws). */
  transaction<T>(fn: () => T): T;
  /** Ids of the applied migrations, in the order they ran. */
  appliedMigrations(): string[];
  /** Whether `close()` was called. */
  readonly closed: boolean;
  /** Checkpoints the WAL and closes the file; later calls do nothing. */
  close(): void;
}

/** Waits this long for a lock another connection holds (a backup, an operator's sqlite3 shell) before failing. */
export const BUSY_TIMEOUT_MS = 5_000;
/** Migration ids: short, printable, no surprises in logs. */
const MIGRATION_ID = /^[a-z0-9][a-z0-9/_.-]{0,79}$/;

/** The inbox's tables (node/inbox.ts). */
export const INBOX_MIGRATIONS: readonly Migration[] = [
  {
    id: "inbox/1-messages",
    up: `
      CREATE TABLE inbox_messages (
        recipient   BLOB    NOT NULL,          -- recipient id as on the wire (the 20-byte address); see inbox/2
        message_id  BLOB    NOT NULL,          -- 16 bytes chosen by the sender
        stored_at   INTEGER NOT NULL,          -- ms since the epoch, node clock
        expires_at  INTEGER NOT NULL,          -- ms since the epoch: the StorePromise expiry (s) × 1000
        envelope    BLOB    NOT NULL,
        size        INTEGER NOT NULL,
        promise_sig BLOB    NOT NULL,          -- the StorePromise signature given for it (65 bytes)
        PRIMARY KEY (recipient, message_id)
      ) WITHOUT ROWID;
      CREATE INDEX inbox_messages_by_time ON inbox_messages (recipient, stored_at, message_id);
      CREATE INDEX inbox_messages_by_expiry ON inbox_messages (expires_at);
      CREATE TABLE inbox_nonces (
        recipient  BLOB    NOT NULL,
        nonce      BLOB    NOT NULL,           -- 16 bytes of a signed request, refused again until expires_at
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (recipient, nonce)
      ) WITHOUT ROWID;
      CREATE INDEX inbox_nonces_by_expiry ON inbox_nonces (expires_at);
    `,
  },
  {
    // A WITHOUT ROWID table keeps rows in its primary-key b-tree, whose pages hold at most about 1,000 bytes of a row
    // inline (for 4 KB pages): every envelope above that went to an overflow page of its own, 4.8 KB on disk for a
    // 1 KB message. A rowid table holds rows up to about 4,000 bytes inline; (recipient, message_id) stays unique.
    id: "inbox/2-messages-rowid",
    up: `
      CREATE TABLE inbox_messages_rowid (
        recipient   BLOB    NOT NULL,
        message_id  BLOB    NOT NULL,
        stored_at   INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        envelope    BLOB    NOT NULL,
        size        INTEGER NOT NULL,
        promise_sig BLOB    NOT NULL,
        UNIQUE (recipient, message_id)
      );
      INSERT INTO inbox_messages_rowid (recipient, message_id, stored_at, expires_at, envelope, size, promise_sig)
        SELECT recipient, message_id, stored_at, expires_at, envelope, size, promise_sig FROM inbox_messages
        ORDER BY recipient, stored_at, message_id;
      DROP TABLE inbox_messages;
      ALTER TABLE inbox_messages_rowid RENAME TO inbox_messages;
      CREATE INDEX inbox_messages_by_time ON inbox_messages (recipient, stored_at, message_id);
      CREATE INDEX inbox_messages_by_expiry ON inbox_messages (expires_at);
    `,
  },
];

/** Options of `openNodeDatabase`. */
export interface OpenNodeDatabaseOptions {
  /** Migrations of other services, applied after the inbox's. */
  readonly migrations?: readonly Migration[];
  /** Open without the inbox's migrations (a service testing its own schema alone). */
  readonly withoutInbox?: boolean;
  /**
   * "FULL" (default): every commit is fsynced, so neither a SIGKILL nor a power cut loses an acknowledged store (a
   * store promise is slashable). "NORMAL": WAL commits reach the OS before returning, so a SIGKILL still loses
   * nothing, but a power cut may lose the last commits; about 20× faster where fsync is slow (measured on the dev VM:
   * 5.6 ms vs 0.24 ms a commit).
   */
  readonly synchronous?: "FULL" | "NORMAL";
}

/**
 * Opens (creating it and its directory, mode 0700, if missing) the node database at `file`, sets WAL, full
 * synchronous commits, foreign keys and a busy timeout, and applies the inbox's and `options.migrations`.
 */
export function openNodeDatabase(file: string, options: OpenNodeDatabaseOptions = {}): NodeDatabase {
  const where = "openNodeDatabase";
  if (typeof file !== "string" || file.length === 0) {
    throw new NodeDatabaseError("DB_OPEN_FAILED", `${where}: expected a file path, got ${String(file)}`);
  }
  let sqlite: SqliteDatabase;
  try {
    if (file !== ":memory:") mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
    sqlite = new BetterSqlite3(file);
  } catch (error) {
    throw new NodeDatabaseError("DB_OPEN_FAILED", `${where}: cannot open ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (file !== ":memory:") {
      const mode = sqlite.pragma("journal_mode = WAL", { simple: true });
      if (String(mode).toLowerCase() !== "wal") {
        throw new NodeDatabaseError("DB_OPEN_FAILED", `${where}: expected journal_mode wal, got ${String(mode)}`);
      }
    }
    const synchronous = options.synchronous ?? "FULL";
    if (synchronous !== "FULL" && synchronous !== "NORMAL") {
      throw new NodeDatabaseError(
        "DB_OPEN_FAILED",
        `${where}: expected synchronous FULL or NORMAL, got ${synchronous}`,
      );
    }
    sqlite.pragma(`synchronous = ${synchronous}`);
    sqlite.pragma("foreign_keys = ON");
    sqlite.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         seq        INTEGER PRIMARY KEY AUTOINCREMENT,
         id         TEXT    NOT NULL UNIQUE,
         applied_at INTEGER NOT NULL
       )`,
    );
  } catch (error) {
    sqlite.close();
    if (error instanceof NodeDatabaseError) throw error;
    throw new NodeDatabaseError("DB_OPEN_FAILED", `${where}: cannot set up ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const db = new SqliteNodeDatabase(file, sqlite);
  try {
    if (options.withoutInbox !== true) db.migrate(INBOX_MIGRATIONS);
    if (options.migrations !== undefined) db.migrate(options.migrations);
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

class SqliteNodeDatabase implements NodeDatabase {
  private readonly log = createLogger("db");
  #closed = false;

  constructor(
    readonly path: string,
    readonly sqlite: SqliteDatabase,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  migrate(list: readonly Migration[]): string[] {
    const where = "NodeDatabase.migrate";
    this.check(where);
    const seen = new Set<string>();
    for (const m of list) {
      if (typeof m?.id !== "string" || !MIGRATION_ID.test(m.id)) {
        throw new NodeDatabaseError(
          "DB_BAD_MIGRATION",
          `${where}: expected an id matching ${MIGRATION_ID}, got ${String(m?.id)}`,
        );
      }
      if (seen.has(m.id)) throw new NodeDatabaseError("DB_BAD_MIGRATION", `${where}: migration ${m.id} listed twice`);
      if (typeof m.up !== "string" && typeof m.up !== "function") {
        throw new NodeDatabaseError("DB_BAD_MIGRATION", `${where}: migration ${m.id} has no SQL or function`);
      }
      seen.add(m.id);
    }
    const isApplied = this.sqlite.prepare<[string], number>("SELECT 1 FROM schema_migrations WHERE id = ?").pluck();
    const record = this.sqlite.prepare<[string, number]>(
      "INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)",
    );
    const applied: string[] = [];
    for (const m of list) {
      if (isApplied.get(m.id) !== undefined) continue;
      try {
        this.sqlite
          .transaction(() => {
            if (typeof m.up === "string") this.sqlite.exec(m.up);
            else m.up(this.sqlite);
            record.run(m.id, Date.now());
          })
          .immediate();
      } catch (error) {
        throw new NodeDatabaseError(
          "DB_MIGRATION_FAILED",
          `${where}: migration ${m.id} failed: ${(error as Error).message}`,
          { cause: error },
        );
      }
      this.log.info("migration applied", { id: m.id, file: this.path });
      applied.push(m.id);
    }
    return applied;
  }

  transaction<T>(fn: () => T): T {
    this.check("NodeDatabase.transaction");
    return this.sqlite.transaction(fn).immediate();
  }

  appliedMigrations(): string[] {
    this.check("NodeDatabase.appliedMigrations");
    return this.sqlite.prepare<[], string>("SELECT id FROM schema_migrations ORDER BY seq").pluck().all();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.path !== ":memory:") this.sqlite.pragma("wal_checkpoint(TRUNCATE)");
    } catch (error) {
      this.log.warn("checkpoint on close failed", { file: this.path, error });
    }
    this.sqlite.close();
  }

  private check(where: string): void {
    if (this.#closed) throw new NodeDatabaseError("DB_CLOSED", `${where}: the database ${this.path} is closed`);
  }
}
