// Documents for the knowledge base upload tests, written here rather than shipped: a small shop's policies as
// Markdown, text and HTML, a one-page PDF (hand-written objects, its xref table computed) and a DOCX (a zip
// of word/document.xml, stored uncompressed), and the multipart bodies that carry them.
import http from 'node:http';

/** A one-page PDF with `lines` of text (Helvetica; ASCII without parentheses or backslashes). */
export function pdfBytes(lines) {
  const content = `BT /F1 12 Tf 72 720 Td ${lines.map((l, i) => `${i ? '0 -16 Td ' : ''}(${l}) Tj`).join(' ')} ET`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offsets = [];
  objects.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  out += offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('');
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    let c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; ++k) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A zip archive of `files` ([{ name, data }]), stored without compression. */
export function zipStored(files) {
  const parts = [];
  const central = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name);
    const data = Buffer.from(f.data);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(name.length, 26);
    parts.push(local, name, data);
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE(20, 4);
    entry.writeUInt16LE(20, 6);
    entry.writeUInt32LE(crc, 16);
    entry.writeUInt32LE(data.length, 20);
    entry.writeUInt32LE(data.length, 24);
    entry.writeUInt16LE(name.length, 28);
    entry.writeUInt32LE(offset, 42);
    central.push(entry, name);
    offset += 30 + name.length + data.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, directory, end]);
}

/** A DOCX of [style, text] paragraphs ('Heading1', '' for body text). */
export function docxBytes(paragraphs) {
  const body = paragraphs.map(([style, text]) =>
    `<w:p>${style ? `<w:pPr><w:pStyle w:val="${style}"/></w:pPr>` : ''}<w:r><w:t>${text}</w:t></w:r></w:p>`).join('');
  const xml = '<?xml version="1.0" encoding="UTF-8"?><w:document ' +
    `xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>${body}</w:body></w:document>`;
  return zipStored([{ name: 'word/document.xml', data: xml }]);
}

/** The shop's documents, one of each type: [filename, bytes]. */
export function shopDocuments() {
  return [
    ['returns.md', Buffer.from('# Returns\n\nParcels may be returned within thirty days of delivery for a full refund.\n\n' +
      '## Gift cards\n\nGift cards are refunded as store credit, never as cash.\n')],
    ['shipping.txt', Buffer.from('Shipping\n\nWe ship to every country of the European Union. Each parcel has a tracking number.\n')],
    ['warranty.html', Buffer.from('<html><head><title>Warranty</title></head><body><h1>Warranty</h1>' +
      '<p>Every kettle carries a two year warranty against defects of manufacture.</p></body></html>')],
    ['opening.pdf', pdfBytes(['Opening hours', 'The shop in Lyon opens at nine and closes at seven, Monday to Saturday.'])],
    ['loyalty.docx', docxBytes([['Heading1', 'Loyalty programme'], ['', 'Members collect one point per euro and redeem hundred points for a voucher.']])],
  ];
}

/** A multipart/form-data body by hand (for bodies fetch's FormData would not send): { body, contentType }. */
export function formBody(parts, boundary = `----clawbot-test-${Math.random().toString(16).slice(2)}`) {
  const chunks = [];
  for (const { name, filename, data, type = 'application/octet-stream' } of parts) {
    const disposition = `form-data; name="${name}"${filename !== undefined ? `; filename="${filename}"` : ''}`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\nContent-Type: ${type}\r\n\r\n`), Buffer.from(data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** POST `body` with `headers` over node:http (chunked when no content-length is given): { status, json, text }. */
export function rawPost(baseUrl, route, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${baseUrl}${route}`, { method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c) => { text += c; }).on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.on('error', reject);
    if (Array.isArray(body)) {
      for (const piece of body) req.write(piece);
      req.end();
    } else {
      req.end(body);
    }
  });
}

/** Uploads [filename, bytes] documents in one multipart request (fetch's FormData). */
export async function upload(baseUrl, kb, files) {
  const form = new FormData();
  for (const [name, bytes] of files) form.append('file', new Blob([bytes]), name);
  const res = await fetch(`${baseUrl}/v1/kb/${kb}/documents`, { method: 'POST', body: form, signal: AbortSignal.timeout(120000) });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}
