import { expect } from "chai";
import { Wallet } from "ethers";
import {
  ContentKind,
  EnvelopeError,
  MAX_CONTENT_BYTES,
  MAX_MESSAGE_BYTES,
  encodeContent,
  parseContent,
} from "../../sdk/client/envelope";

describe("sdk: sent-copy content (a message copied to the sender's other clients)", () => {
  const to = Wallet.createRandom().address;

  it("round-trips a copy of a text and of the largest binary message, which still fits one content", () => {
    const text = { kind: ContentKind.SENT, to, content: { kind: ContentKind.TEXT, text: "héllo" } } as const;
    expect(parseContent(encodeContent(text))).to.deep.equal(text);
    const largest = new Uint8Array(MAX_MESSAGE_BYTES).fill(7);
    const copy = encodeContent({ kind: ContentKind.SENT, to, content: { kind: ContentKind.BINARY, data: largest } });
    expect(copy.length).to.equal(MAX_CONTENT_BYTES);
    expect(parseContent(copy)).to.deep.equal({
      kind: ContentKind.SENT,
      to,
      content: { kind: ContentKind.BINARY, data: largest },
    });
  });

  it("refuses a copy of anything but a text or binary message, and a truncated one", () => {
    const groupMessage = encodeContent({
      kind: ContentKind.GROUP_MESSAGE,
      groupId: new Uint8Array(32),
      message: new Uint8Array(130),
    });
    const wrapped = new Uint8Array([ContentKind.SENT, ...new Uint8Array(20).fill(1), ...groupMessage]);
    expect(() => parseContent(wrapped)).to.throw(EnvelopeError, /text or binary/);
    expect(() => parseContent(new Uint8Array([ContentKind.SENT, ...new Uint8Array(20)]))).to.throw(EnvelopeError);
    const nested = { kind: ContentKind.SENT, to, content: { kind: ContentKind.TEXT, text: "x" } } as const;
    expect(() => encodeContent({ ...nested, content: nested } as never)).to.throw(EnvelopeError, /text or binary/);
  });
});
