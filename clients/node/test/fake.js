// A fake gateway for the unit tests: a node:http server on 127.0.0.1 whose
// answers the test gives, recording each request.
import { createServer } from 'node:http';

/**
 * @param {(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, body: string) => void} handle
 */
export async function fakeGateway(handle) {
  /** @type {{method: string, url: string, headers: import('node:http').IncomingHttpHeaders, body: string}[]} */
  const seen = [];
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    seen.push({ method: String(req.method), url: String(req.url), headers: req.headers, body });
    handle(req, res, body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve(undefined)); }),
  };
}
