// Builds the browser pages that clawbot serves and writes them as C++ for the binary (src/web, target
// clawbot_web): each page's entry module bundled and minified by esbuild (with uPlot and the CSS it imports),
// its HTML and static files, and the licence texts of every npm package the bundle contains. Run by CMake
// (src/web/CMakeLists.txt) after `npm ci` from web/package-lock.json; nothing is fetched here.
//
//   node web/build.mjs --npm DIR --out DIR --cpp FILE
//     --npm  the folder where `npm ci` installed web/package.json (DIR/node_modules)
//     --out  where the built files go (for a look; the binary gets them from --cpp)
//     --cpp  the generated C++ (written only when it changes, so an unchanged bundle compiles nothing)
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const WEB = path.dirname(fileURLToPath(import.meta.url));

// A page: its HTML answers at `paths`; the bundle, static files and licences are under `dir`.
const PAGES = [
  {
    name: 'dashboard',
    paths: ['/dashboard', '/dashboard/'],
    dir: '/dashboard/',
    html: 'dashboard/index.html',
    entry: 'dashboard/main.js',
    files: ['dashboard/favicon.svg'],
  },
  {
    name: 'chat',
    paths: ['/'],
    dir: '/chat/',
    html: 'chat/index.html',
    entry: 'chat/main.js',
    files: ['dashboard/favicon.svg'],
  },
];

// What a page may weigh, gzipped (its HTML, script and style; issue 21): the build fails above it.
const GZIP_LIMIT = 300 * 1024;

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

function options(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!['npm', 'out', 'cpp'].includes(name) || argv[i + 1] === undefined) {
      throw new Error(`usage: node web/build.mjs --npm DIR --out DIR --cpp FILE (bad argument ${argv[i]})`);
    }
    out[name] = path.resolve(argv[i + 1]);
  }
  for (const name of ['npm', 'out', 'cpp']) if (!out[name]) throw new Error(`web/build.mjs: --${name} is missing`);
  return out;
}

// The npm packages whose files are in the bundle, each with its licence text.
function licences(metafile, nodeModules) {
  const packages = new Map();
  for (const input of Object.keys(metafile.inputs)) {
    const at = path.resolve(input).split(`${path.sep}node_modules${path.sep}`)[1];
    if (!at) continue;
    const parts = at.split(path.sep);
    const name = parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
    if (packages.has(name)) continue;
    const dir = path.join(nodeModules, name);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const file = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
    if (!file) throw new Error(`web/build.mjs: ${name} has no licence file, and its code is in the bundle`);
    packages.set(name, { version: manifest.version, licence: manifest.license, text: fs.readFileSync(path.join(dir, file), 'utf8') });
  }
  let text = 'This page contains code from these npm packages (versions pinned in web/package-lock.json):\n';
  for (const [name, p] of [...packages].sort()) {
    text += `\n==== ${name} ${p.version} (${p.licence})\n\n${p.text.trim()}\n`;
  }
  return text;
}

// A page's HTML with each `<!-- include FILE -->` (a path under web/) replaced by that file: markup the pages
// share (shared/key_box.html) is written once.
function pageHtml(file) {
  return fs.readFileSync(path.join(WEB, file), 'utf8')
    .replace(/<!-- include (\S+) -->/g, (_, shared) => fs.readFileSync(path.join(WEB, shared), 'utf8').trimEnd());
}

async function buildPage(page, esbuild, nodeModules) {
  const result = await esbuild.build({
    entryPoints: [path.join(WEB, page.entry)],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    outdir: '/virtual',
    entryNames: 'app',
    nodePaths: [nodeModules],
    legalComments: 'none',  // the licences are served whole, at <dir>licenses
    metafile: true,
    write: false,
    logLevel: 'warning',
  });
  const assets = [];
  // `file`: where the asset goes under --out
  const add = (paths, file, bytes) => {
    const type = CONTENT_TYPES[path.extname(file)];
    if (!type) throw new Error(`web/build.mjs: no content type for ${file}`);
    for (const p of paths) assets.push({ path: p, type, bytes, file: path.join(page.name, path.basename(file)) });
  };
  add(page.paths, page.html, Buffer.from(pageHtml(page.html)));
  for (const out of result.outputFiles) add([page.dir + path.basename(out.path)], out.path, Buffer.from(out.contents));
  for (const file of page.files) add([page.dir + path.basename(file)], file, fs.readFileSync(path.join(WEB, file)));
  add([`${page.dir}licenses`], 'licenses.txt', Buffer.from(licences(result.metafile, nodeModules)));
  const weighed = new Map(assets.filter((a) => /\.(html|js|css)$/.test(a.file)).map((a) => [a.file, a.bytes]));
  const gzipped = [...weighed.values()].reduce((n, bytes) => n + zlib.gzipSync(bytes, { level: 9 }).length, 0);
  console.log(`web: ${page.name}: ${gzipped} bytes gzipped (HTML, script, style; limit ${GZIP_LIMIT})`);
  if (gzipped > GZIP_LIMIT) throw new Error(`web/build.mjs: the ${page.name} page is ${gzipped} bytes gzipped, over the limit of ${GZIP_LIMIT}`);
  return assets;
}

// Bytes as a C++ string literal, split into source lines: printable ASCII as itself, the rest as three-digit
// octal escapes (which no following digit can extend).
function literal(bytes) {
  const lines = [];
  let line = '';
  for (const b of bytes) {
    if (b === 0x22 || b === 0x5c) line += `\\${String.fromCharCode(b)}`;
    else if (b >= 0x20 && b < 0x7f && b !== 0x3f) line += String.fromCharCode(b);
    else if (b === 0x0a) line += '\\n';
    else line += `\\${b.toString(8).padStart(3, '0')}`;
    if (line.length >= 110 || b === 0x0a) {
      lines.push(line);
      line = '';
    }
  }
  if (line || lines.length === 0) lines.push(line);
  return lines.map((l) => `    "${l}"`).join('\n');
}

function cppSource(assets) {
  const blobs = new Map();  // one array per distinct content (an index page under two paths is stored once)
  const rows = [];
  let source = '';
  for (const a of assets) {
    const hash = crypto.createHash('sha256').update(a.bytes).digest('hex');
    if (!blobs.has(hash)) {
      const name = `data_${blobs.size}`;
      blobs.set(hash, name);
      source += `// ${a.path} (${a.bytes.length} bytes)\nconstexpr char ${name}[] =\n${literal(a.bytes)};\n`;
    }
    rows.push(`    {"${a.path}", "${a.type}", {${blobs.get(hash)}, ${a.bytes.length}}, "\\"${hash.slice(0, 32)}\\""},`);
  }
  return `// Generated by web/build.mjs from web/ and the npm packages of web/package-lock.json: do not edit.
#include <cstddef>

#include "web/assets.h"

namespace clawbot::web::detail {
namespace {

${source}
}  // namespace

extern const Asset asset_table[] = {
${rows.join('\n')}
};
extern const std::size_t asset_count = ${rows.length};

}  // namespace clawbot::web::detail
`;
}

async function main() {
  const args = options(process.argv.slice(2));
  const nodeModules = path.join(args.npm, 'node_modules');
  const esbuild = createRequire(path.join(args.npm, 'package.json'))('esbuild');
  const assets = [];
  for (const page of PAGES) assets.push(...(await buildPage(page, esbuild, nodeModules)));
  const distinct = new Map(assets.map((a) => [a.file, a.bytes]));
  for (const [file, bytes] of distinct) {
    fs.mkdirSync(path.dirname(path.join(args.out, file)), { recursive: true });
    fs.writeFileSync(path.join(args.out, file), bytes);
  }
  const source = cppSource(assets);
  const old = fs.existsSync(args.cpp) ? fs.readFileSync(args.cpp, 'utf8') : '';
  if (old !== source) fs.writeFileSync(args.cpp, source);
  const bytes = [...distinct.values()].reduce((n, b) => n + b.length, 0);
  console.log(`web: ${assets.length} assets, ${bytes} bytes embedded${old === source ? ' (unchanged)' : ''}`);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
