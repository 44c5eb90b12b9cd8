/**
 * The edge node's counters and its operator endpoint: `GET /health` (JSON: status, peer id, operator, uptime,
 * discovered nodes, connections) and `GET /metrics` (Prometheus text format 0.0.4) on 127.0.0.1 only, served with
 * node:http. Counters: packets relayed (forwarded), delivered at the exit, messages stored, bills kept, and
 * refusals by protocol and wire error code; gauges come from callbacks at scrape time (bills held, nodes known,
 * open connections).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { WireErrorCode } from "../sdk/wire/frame";
import { createLogger, type Logger } from "./log";

/** Loopback only: the endpoint tells anyone who can reach it how busy the node is. */
export const METRICS_HOST = "127.0.0.1";
/** Counter names, without the `sending_` prefix. */
export type CounterName = "relayed" | "delivered" | "stored" | "bills_kept";

const COUNTER_HELP: Readonly<Record<CounterName, string>> = {
  relayed: "Layered packets peeled and forwarded to the next hop.",
  delivered: "Layered packets peeled at the exit and handed to the inbox.",
  stored: "Messages stored in this node's inbox.",
  bills_kept: "Bills kept from recipients' submissions (new or larger).",
};

const CODE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(WireErrorCode).map(([name, code]) => [code, name.toLowerCase()]),
);

/** A gauge read at scrape time. */
export interface Gauge {
  readonly name: string;
  readonly help: string;
  read(): number;
}

/** The node's counters. */
export class NodeMetrics {
  private readonly counters = new Map<CounterName, number>();
  private readonly errors = new Map<string, number>(); // "protocol\u0000code" → count
  private readonly gauges: Gauge[] = [];

  /** Adds `by` (default 1) to a counter. */
  increment(name: CounterName, by = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + by);
  }

  /** Counts one refusal answered with `code` on `protocol` ("relay", "inbox", "prekeys", "bills"). */
  error(protocol: string, code: number): void {
    const key = `${protocol}\u0000${CODE_NAMES.get(code) ?? String(code)}`;
    this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
  }

  /** The value of a counter. */
  value(name: CounterName): number {
    return this.counters.get(name) ?? 0;
  }

  /** Refusals counted for `protocol` and the code's name (lowercase, e.g. "malformed"), or all of `protocol`. */
  errorCount(protocol: string, codeName?: string): number {
    let total = 0;
    for (const [key, n] of this.errors) {
      const [p, c] = key.split("\u0000");
      if (p === protocol && (codeName === undefined || c === codeName)) total += n;
    }
    return total;
  }

  /** Registers a gauge read at every scrape. */
  gauge(gauge: Gauge): void {
    this.gauges.push(gauge);
  }

  /** The Prometheus text exposition of every counter and gauge. */
  render(): string {
    const lines: string[] = [];
    for (const name of Object.keys(COUNTER_HELP) as CounterName[]) {
      lines.push(`# HELP sending_${name}_total ${COUNTER_HELP[name]}`, `# TYPE sending_${name}_total counter`);
      lines.push(`sending_${name}_total ${this.value(name)}`);
    }
    lines.push("# HELP sending_errors_total Requests and frames refused, by protocol and wire error code.");
    lines.push("# TYPE sending_errors_total counter");
    for (const [key, n] of [...this.errors].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const [protocol, code] = key.split("\u0000");
      lines.push(`sending_errors_total{protocol="${protocol}",code="${code}"} ${n}`);
    }
    for (const g of this.gauges) {
      let value: number;
      try {
        value = g.read();
      } catch {
        value = Number.NaN;
      }
      lines.push(`# HELP sending_${g.name} ${g.help}`, `# TYPE sending_${g.name} gauge`, `sending_${g.name} ${value}`);
    }
    return lines.join("\n") + "\n";
  }
}

/** The JSON of `/health`. */
export type HealthReport = Readonly<Record<string, unknown>>;

/** The HTTP endpoint. */
export class MetricsServer {
  private readonly metrics: NodeMetrics;
  private readonly health: () => HealthReport;
  private readonly log: Logger;
  private server: Server | undefined;

  constructor(metrics: NodeMetrics, health: () => HealthReport, logger?: Logger) {
    this.metrics = metrics;
    this.health = health;
    this.log = logger ?? createLogger("metrics");
  }

  /** Listens on 127.0.0.1:`port` (0 for a free port); returns the port. */
  async start(port: number): Promise<number> {
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new RangeError(`MetricsServer.start: expected a port in [0, 65535], got ${String(port)}`);
    }
    const server = createServer((req, res) => this.serve(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, METRICS_HOST, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  /** The port listened on, or undefined before start. */
  get port(): number | undefined {
    const address = this.server?.address();
    return address !== null && typeof address === "object" ? address.port : undefined;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    try {
      if (req.method !== "GET") {
        res.writeHead(405, { allow: "GET" }).end();
      } else if (req.url === "/metrics") {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(this.metrics.render());
      } else if (req.url === "/health") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(this.health()));
      } else {
        res.writeHead(404).end();
      }
    } catch (error) {
      this.log.error("metrics request failed", { error });
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  }
}
