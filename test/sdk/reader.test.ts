import { expect } from "chai";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { createEdgeHost, type EdgeHost } from "../../node/host";
import { ClientHost } from "../../sdk/net/host";
import { readFromNow } from "../../sdk/net/reader";

const REFUSING_PROTOCOL = "/sending/test/refusing/1.0.0";
const ANSWER = new TextEncoder().encode("refused");

/** The error `promise` rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  return expect.fail("expected a rejection");
}

/** Everything `chunks` yields, joined; rejects if it does not end within `ms`. */
async function readAll(chunks: AsyncIterable<{ subarray(): Uint8Array }>, ms: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const reading = (async () => {
    for await (const chunk of chunks) parts.push(chunk.subarray());
  })();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the stream did not end within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([reading, late]);
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(parts);
}

describe("sdk/net/reader: a stream read after its remote closed still ends", function () {
  this.timeout(30_000);
  let dataDir: string;
  let server: EdgeHost;
  let client: ClientHost;

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "reader-"));
    server = await createEdgeHost({ dataDir, listen: ["/ip4/127.0.0.1/tcp/0"] });
    // A node that refuses the first request it reads: it answers and closes its side at once, without waiting for
    // the client's end (as the servers do on a framing error).
    await server.libp2p.handle(REFUSING_PROTOCOL, async (stream: Stream) => {
      for await (const _ of stream) break;
      stream.send(ANSWER);
      await stream.close();
    });
    client = await ClientHost.create();
  });

  after(async () => {
    await client?.stop();
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Opens a stream, sends a request and resolves once the server's answer and end have arrived (unread). */
  async function requestAndWaitForTheEnd(listen: (stream: Stream) => void): Promise<Stream> {
    const stream = await client.libp2p.dialProtocol(server.libp2p.getMultiaddrs()[0], REFUSING_PROTOCOL);
    listen(stream);
    const ended = new Promise((resolve) => stream.addEventListener("remoteCloseWrite", resolve, { once: true }));
    stream.send(new Uint8Array(16).fill(1));
    await ended;
    return stream;
  }

  it("readFromNow, made before writing, yields the answer and ends although the end came before the first read", async () => {
    let reader: AsyncIterableIterator<{ subarray(): Uint8Array }> | undefined;
    await requestAndWaitForTheEnd((stream) => (reader = readFromNow(stream)));
    expect(new TextDecoder().decode(await readAll(reader!, 5_000))).to.equal("refused");
  });

  it("(why it exists) a libp2p stream first iterated after its remote closed never ends", async () => {
    const stream = await requestAndWaitForTheEnd(() => undefined);
    expect((await rejection(readAll(stream, 500))).message).to.match(/did not end within 500 ms/);
    stream.abort(new Error("test: done"));
  });

  it("keeps an error the stream ends with before the first read for that read", async () => {
    const stream = await client.libp2p.dialProtocol(server.libp2p.getMultiaddrs()[0], REFUSING_PROTOCOL);
    const reader = readFromNow(stream);
    stream.abort(new Error("test: reset before reading"));
    await new Promise((resolve) => setImmediate(resolve)); // an unhandled rejection would surface by now
    expect((await rejection(reader.next())).message).to.match(/reset before reading/);
  });
});
