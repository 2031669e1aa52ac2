// A copy of a GGUF model with token ids changed or added in its metadata: fill-in-the-middle tokens
// (tokenizer.ggml.fim_{pre,suf,mid}_token_id), so that /infill can be tested on a tiny model (none of the test
// models has FIM tokens of its own), or another end-of-generation token (tokenizer.ggml.eos_token_id), so that
// a story model that never ends by itself ends at a token it does write. The tensors are copied unchanged.
import fs from 'node:fs';

const GGUF_TYPE = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 };
const FIXED_SIZE = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

class Reader {
  constructor(buf) { this.buf = buf; this.pos = 0; }
  u32() { const v = this.buf.readUInt32LE(this.pos); this.pos += 4; return v; }
  u64() { const v = this.buf.readBigUInt64LE(this.pos); this.pos += 8; return v; }
  string() { const n = Number(this.u64()); const s = this.buf.toString('utf8', this.pos, this.pos + n); this.pos += n; return s; }
  skipValue(type) {
    if (type in FIXED_SIZE) { this.pos += FIXED_SIZE[type]; return; }
    if (type === GGUF_TYPE.string) { this.string(); return; }
    if (type === GGUF_TYPE.array) {
      const itemType = this.u32();
      const n = Number(this.u64());
      if (itemType in FIXED_SIZE) this.pos += FIXED_SIZE[itemType] * n;
      else for (let i = 0; i < n; i++) this.skipValue(itemType);
      return;
    }
    throw new Error(`unknown GGUF value type ${type} at byte ${this.pos}`);
  }
}

function u32Entry(key, value) {
  const name = Buffer.from(key, 'utf8');
  const b = Buffer.alloc(8 + name.length + 4 + 4);
  b.writeBigUInt64LE(BigInt(name.length), 0);
  name.copy(b, 8);
  b.writeUInt32LE(GGUF_TYPE.u32, 8 + name.length);
  b.writeUInt32LE(value, 12 + name.length);
  return b;
}

/**
 * Writes `output`: `input` with the given u32 metadata (`values`, key -> number): a key that `input` has as a
 * u32 is overwritten in place, others are added. The tensors are copied unchanged. Returns `output`.
 */
export function writeWithTokenIds(input, output, values) {
  const buf = fs.readFileSync(input);
  const r = new Reader(buf);
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${input} is not a GGUF file`);
  r.pos = 4;
  const version = r.u32();
  if (version < 2) throw new Error(`${input}: GGUF version ${version} is too old`);
  const nTensors = r.u64();
  const nKvPos = r.pos;
  const nKv = r.u64();
  let alignment = 32;
  const overwrite = [];
  const toAdd = new Map(Object.entries(values));
  for (let i = 0n; i < nKv; i++) {
    const key = r.string();
    const type = r.u32();
    if (key === 'general.alignment' && type === GGUF_TYPE.u32) alignment = buf.readUInt32LE(r.pos);
    if (toAdd.has(key)) {
      if (type !== GGUF_TYPE.u32) throw new Error(`${input}: ${key} is not a u32 (type ${type})`);
      overwrite.push([r.pos, toAdd.get(key)]);
      toAdd.delete(key);
    }
    r.skipValue(type);
  }
  const kvEnd = r.pos;
  for (let i = 0n; i < nTensors; i++) {
    r.string();
    const dims = r.u32();
    r.pos += 8 * dims + 4 + 8;  // dims, type, offset (relative to the data section: unchanged)
  }
  const infoEnd = r.pos;
  const dataStart = Math.ceil(infoEnd / alignment) * alignment;

  const added = Buffer.concat([...toAdd].map(([key, value]) => u32Entry(key, value)));
  const head = Buffer.from(buf.subarray(0, kvEnd));
  for (const [pos, value] of overwrite) head.writeUInt32LE(value, pos);
  head.writeBigUInt64LE(nKv + BigInt(toAdd.size), nKvPos);
  const header = Buffer.concat([head, added, buf.subarray(kvEnd, infoEnd)]);
  const padding = Buffer.alloc(Math.ceil(header.length / alignment) * alignment - header.length);
  fs.writeFileSync(output, Buffer.concat([header, padding, buf.subarray(dataStart)]));
  return output;
}

/** Writes `output`: `input` plus the given FIM token ids ({pre, suf, mid}). Returns `output`. */
export function writeWithFimTokens(input, output, { pre, suf, mid }) {
  return writeWithTokenIds(input, output, {
    'tokenizer.ggml.fim_pre_token_id': pre,
    'tokenizer.ggml.fim_suf_token_id': suf,
    'tokenizer.ggml.fim_mid_token_id': mid,
  });
}
