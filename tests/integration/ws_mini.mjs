// A minimal WebSocket (RFC 6455) client and server side for the gateway's live relay tests: Node 20 has no
// WebSocket client that sets headers, and the tests need the raw socket (pause it, destroy it mid-stream).
// Messages only (fragments are joined), no extensions.
import crypto from 'node:crypto';
import net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const acceptFor = (key) => crypto.createHash('sha1').update(key + GUID).digest('base64');

function frame(opcode, payload, mask) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = data.length;
  const head = [0x80 | opcode];
  const maskBit = mask ? 0x80 : 0;
  let ext;
  if (len < 126) {
    head.push(maskBit | len);
  } else if (len < 65536) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(len);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(len));
  }
  const parts = [Buffer.from(head)];
  if (ext) parts.push(ext);
  if (mask) {
    const key = crypto.randomBytes(4);
    const masked = Buffer.alloc(len);
    for (let i = 0; i < len; i++) masked[i] = data[i] ^ key[i & 3];
    parts.push(key, masked);
  } else {
    parts.push(data);
  }
  return Buffer.concat(parts);
}

/**
 * The frames of one connection, from `socket` after its handshake (`rest`: bytes already read past it).
 * Calls onMessage({ binary, data: Buffer }) per message and onClose({ code, reason }) at a close frame; answers
 * pings; `mask`: this side is the client.
 */
function attach(socket, rest, mask, { onMessage, onClose }) {
  let buf = rest ?? Buffer.alloc(0);
  let parts = [];
  let partsOpcode = 0;
  const feed = () => {
    for (;;) {
      if (buf.length < 2) return;
      const b0 = buf[0];
      const b1 = buf[1];
      let len = b1 & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      const keyAt = at;
      if (masked) at += 4;
      if (buf.length < at + len) return;
      let payload = buf.subarray(at, at + len);
      if (masked) {
        const key = buf.subarray(keyAt, keyAt + 4);
        payload = Buffer.from(payload);
        for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
      } else {
        payload = Buffer.from(payload);
      }
      buf = buf.subarray(at + len);
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      if (opcode === 0x8) {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        const reason = payload.length > 2 ? payload.subarray(2).toString('utf8') : '';
        onClose({ code, reason });
      } else if (opcode === 0x9) {
        if (!socket.destroyed) socket.write(frame(0xA, payload, mask));
      } else if (opcode === 0xA) {
        // pong
      } else {
        if (opcode !== 0) partsOpcode = opcode;
        parts.push(payload);
        if (fin) {
          const data = Buffer.concat(parts);
          parts = [];
          onMessage({ binary: partsOpcode === 0x2, data });
        }
      }
    }
  };
  socket.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    feed();
  });
  feed();
}

/** The sending side of a connection: send(data) (Buffer: binary, string: text), close(code, reason). */
function sender(socket, mask) {
  return {
    socket,
    closeSent: false,
    send(data) {
      const binary = Buffer.isBuffer(data);
      return socket.write(frame(binary ? 0x2 : 0x1, data, mask));
    },
    close(code = 1000, reason = '') {
      if (this.closeSent) return;
      this.closeSent = true;
      const body = Buffer.alloc(2 + Buffer.byteLength(reason));
      body.writeUInt16BE(code, 0);
      body.write(reason, 2);
      if (!socket.destroyed) socket.write(frame(0x8, body, mask));
    },
  };
}

/**
 * Opens a WebSocket to `url` (ws://host:port/path?query) with extra `headers` and `protocols`. Resolves
 * { status, headers, body } when the server answered without upgrading, else a connection:
 * { status: 101, headers, messages: [], closed: Promise<{code, reason}|{error}>, next(): Promise<message>,
 *   send(data), close(code, reason), socket }. The client answers a server's close with the same close.
 */
export function connectWs(url, { headers = {}, protocols = [] } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(u.port), u.hostname);
    const key = crypto.randomBytes(16).toString('base64');
    let head = Buffer.alloc(0);
    const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, 'Upgrade: websocket',
      'Connection: Upgrade', `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13'];
    if (protocols.length) lines.push(`Sec-WebSocket-Protocol: ${protocols.join(', ')}`);
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    socket.once('error', reject);
    socket.write(lines.join('\r\n') + '\r\n\r\n');
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...headerLines] = head.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(statusLine.split(' ')[1]);
      const got = {};
      for (const l of headerLines) {
        const i = l.indexOf(':');
        got[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const rest = head.subarray(end + 4);
      if (status !== 101) {
        const length = Number(got['content-length'] ?? 0);
        let body = rest;
        const finish = () => {
          socket.off('data', more);
          socket.destroy();
          resolve({ status, headers: got, body: body.toString('utf8') });
        };
        const more = (c) => {
          body = Buffer.concat([body, c]);
          if (body.length >= length) finish();
        };
        socket.off('data', onData);
        if (body.length >= length) finish();
        else socket.on('data', more);
        return;
      }
      socket.off('data', onData);
      if (got['sec-websocket-accept'] !== acceptFor(key)) {
        reject(new Error(`bad Sec-WebSocket-Accept: ${JSON.stringify(got)}`));
        return;
      }
      resolve(wsConnection(socket, rest, true, { status, headers: got }));
    };
    socket.on('data', onData);
  });
}

function wsConnection(socket, rest, mask, extra = {}) {
  const conn = Object.assign(sender(socket, mask), extra, { messages: [], closeFrame: null });
  const waiters = [];
  let settle;
  conn.closed = new Promise((resolve) => { settle = resolve; });
  let closeSeen = null;
  attach(socket, rest, mask, {
    onMessage: (m) => {
      conn.messages.push(m);
      const w = waiters.shift();
      if (w) w();
    },
    onClose: (c) => {
      closeSeen = c;
      conn.closeFrame = c;
      conn.close(c.code, '');  // the closing handshake's answer (none when we sent ours first)
      if (!mask) socket.end();
    },
  });
  socket.on('close', () => {
    settle(closeSeen ?? { error: 'connection closed without a close frame' });
    for (const w of waiters.splice(0)) w();
  });
  socket.on('error', () => {});
  let read = 0;
  conn.next = async () => {
    while (read >= conn.messages.length) {
      if (socket.destroyed) return null;
      await new Promise((r) => waiters.push(r));
    }
    return conn.messages[read++];
  };
  return conn;
}

/**
 * Serves the upgrade of an http.Server's 'upgrade' event as a WebSocket server side; resolves nothing, returns
 * the connection (as connectWs's, without masking).
 */
export function acceptWs(req, socket, head, { protocol } = {}) {
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${acceptFor(req.headers['sec-websocket-key'])}`];
  if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  return wsConnection(socket, head, false);
}

/** 16-bit mono PCM of `seconds` at 16 kHz (a quiet tone). */
export function pcm(seconds) {
  const n = Math.round(seconds * 16000);
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(1000 * Math.sin(i / 10)), i * 2);
  return b;
}
