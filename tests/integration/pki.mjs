// Certificates made at test time with the openssl command: a throw-away CA, a server certificate for
// 127.0.0.1 and localhost, and a client certificate (for serve's and the gateway's TLS tests).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs `openssl ...args` with an empty stdin; resolves { stdout, stderr }, rejects with both on failure. */
export async function openssl(args) {
  const pending = run('openssl', args, { timeout: 30000 });
  pending.child.stdin.end(); // s_client leaves at the end of its input
  try {
    return await pending;
  } catch (e) {
    throw new Error(`openssl ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

/**
 * A throw-away CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, in `dir`.
 * Returns { caFile, certFile, keyFile, clientCertFile, clientKeyFile, ca, clientCert, clientKey } (the last
 * three as Buffers).
 */
export async function makePki(dir) {
  const file = (name) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2',
    '-subj', '/CN=clawbot integration CA']);
  const issue = async (name, subject, extensions) => {
    fs.writeFileSync(file(`${name}.ext`), extensions);
    await openssl(['req', ...ec, '-keyout', file(`${name}.key`), '-out', file(`${name}.csr`), '-subj', subject]);
    await openssl(['x509', '-req', '-in', file(`${name}.csr`), '-CA', file('ca.pem'), '-CAkey', file('ca.key'),
      '-CAcreateserial', '-days', '2', '-out', file(`${name}.pem`), '-extfile', file(`${name}.ext`)]);
  };
  await issue('server', '/CN=localhost',
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await issue('client', '/CN=laptop1', 'extendedKeyUsage=clientAuth\n');
  const read = (name) => fs.readFileSync(file(name));
  return {
    caFile: file('ca.pem'),
    certFile: file('server.pem'),
    keyFile: file('server.key'),
    clientCertFile: file('client.pem'),
    clientKeyFile: file('client.key'),
    ca: read('ca.pem'),
    clientCert: read('client.pem'),
    clientKey: read('client.key'),
  };
}
