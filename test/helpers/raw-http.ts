// HTTP/1.1 spoken by hand over a TCP socket, for requests no well-behaved client sends: malformed
// request lines and headers, lying content lengths, bodies trickled byte by byte, connections
// reset mid-request. The answer is read until it is complete (its content-length) or the server
// closes the connection.
import net from 'node:net';

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** When the answer (or the close) came, from the connection's start. */
  ms: number;
  /** The server closed without answering. */
  closedWithoutAnswer: boolean;
}

export interface RawRequestOptions {
  /** Written in pieces with a pause between them (a slow client). */
  chunks?: { data: string | Buffer; delayMs: number }[];
  /** Give up after this long (the server never answered nor closed). */
  timeoutMs?: number;
}

export function parseAnswer(raw: Buffer): Omit<RawAnswer, 'ms' | 'closedWithoutAnswer'> {
  const text = raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const [statusLine, ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const body = end === -1 ? '' : raw.subarray(Buffer.byteLength(head, 'latin1') + 4).toString();
  return {
    status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0),
    headers,
    body,
  };
}

/** Whether `raw` holds a whole answer: its head and as many body bytes as it announced. */
function complete(raw: Buffer): boolean {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const length = /\r\ncontent-length: *(\d+)/i.exec(raw.subarray(0, end).toString('latin1'));
  return !!length && raw.length - (end + 4) >= Number(length[1]);
}

/** Sends `head` (and the chunks) on a new connection and reads the first answer. */
export function rawRequest(
  url: string,
  head: string | Buffer,
  opts: RawRequestOptions = {},
): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect(Number(port), hostname);
    const received: Buffer[] = [];
    let timers: NodeJS.Timeout[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      timers.forEach(clearTimeout);
      timers = [];
      const raw = Buffer.concat(received);
      resolve({
        ...parseAnswer(raw),
        ms: performance.now() - started,
        closedWithoutAnswer: raw.length === 0,
      });
    };
    // A complete answer ends the exchange: a server refusing a large body answers before it has
    // read it, and a reset that follows (of the rest we were still sending) must not lose it.
    socket.on('data', (d: Buffer) => {
      received.push(d);
      if (complete(Buffer.concat(received))) {
        finish();
        socket.destroy();
      }
    });
    socket.on('close', finish);
    socket.on('error', () => undefined); // a reset shows as a close without answer
    socket.on('connect', () => {
      socket.write(head);
      let at = 0;
      for (const chunk of opts.chunks ?? []) {
        at += chunk.delayMs;
        timers.push(
          setTimeout(() => {
            if (!socket.destroyed) socket.write(chunk.data);
          }, at),
        );
      }
    });
    if (opts.timeoutMs) {
      timers.push(
        setTimeout(() => {
          socket.destroy();
          reject(new Error(`no answer and no close within ${opts.timeoutMs} ms`));
        }, opts.timeoutMs),
      );
    }
  });
}
