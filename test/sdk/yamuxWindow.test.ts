import { expect } from "chai";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { createEdgeHost, type EdgeHost } from "../../node/host";
import { ClientHost } from "../../sdk/net/host";
import { drained } from "../../sdk/net/drain";
import { halfWindowUpdatesActive } from "../../sdk/net/yamuxWindow";

const SINK_PROTOCOL = "/sending/test/sink/1.0.0";
/** yamux's WINDOW_UPDATE frame type (the spec's 0x1). */
const WINDOW_UPDATE = 1;
const CHUNK = 4096;
const CHUNKS = 1024; // 4 MiB: 16 initial windows of 256 KiB, so a sender that never got an update would stall

/** The yamux stream fields the test reads: the frame sender, replaced on the one stream to count its updates. */
interface YamuxStreamView {
  sendFrame(header: { type: number }, body?: unknown): boolean;
}

describe("sdk/net/yamuxWindow: one yamux window update per half window, not per frame", function () {
  this.timeout(60_000);
  let dataDir: string;
  let server: EdgeHost;
  let client: ClientHost;
  let received = 0;
  let updates = 0;
  let finished: Promise<void>;

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "yamux-window-"));
    server = await createEdgeHost({ dataDir, listen: ["/ip4/127.0.0.1/tcp/0"] });
    finished = new Promise((resolve, reject) => {
      void server.libp2p.handle(SINK_PROTOCOL, async (stream: Stream) => {
        const view = stream as unknown as YamuxStreamView;
        const send = view.sendFrame.bind(view);
        view.sendFrame = (header, body) => {
          if (header.type === WINDOW_UPDATE) updates++;
          return send(header, body);
        };
        try {
          for await (const chunk of stream) received += chunk.byteLength;
          resolve();
        } catch (error) {
          reject(error as Error);
        }
      });
    });
    client = await ClientHost.create();
  });

  after(async () => {
    await client?.stop();
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("is installed by the hosts, carries 4 MiB of 4 KiB frames without a stall, and answers with few updates", async () => {
    expect(await halfWindowUpdatesActive()).to.equal(true);
    const stream = await client.libp2p.dialProtocol(server.libp2p.getMultiaddrs()[0], SINK_PROTOCOL);
    const chunk = new Uint8Array(CHUNK).fill(7);
    for (let i = 0; i < CHUNKS; i++) {
      if (!stream.send(chunk)) await drained(stream, AbortSignal.timeout(10_000));
    }
    await stream.close();
    await finished;
    expect(received).to.equal(CHUNK * CHUNKS);
    // The library's own policy sends one update per data frame read (about 1,024 here); half a 256 KiB window is 32
    // frames, and the window grows on a fast link, so at most 1,024 / 32 = 32 updates (the stream's ACK counts too).
    expect(updates).to.be.greaterThan(0);
    expect(updates).to.be.at.most(CHUNKS / 32 + 1);
  });
});
