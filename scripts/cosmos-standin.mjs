#!/usr/bin/env node
// A local Cosmos DB for NoSQL for the tests: npm `@vercel/cosmosdb-server` (in
// memory, plain HTTP, no auth check, no TTL, no 429s), with two things where it
// differs from the service papered over (each seen against the unpatched server,
// see NOTES-dependencies.md):
//   1. reading a missing item throws inside the server (500): answer 404;
//   2. it closes every connection: keep connections alive, as the service does;
// and it cannot throttle, which the service does when a container's throughput
// runs out (429 with `x-ms-retry-after-ms`):
//   3. `PUT /_throttle/dbs/{db}/colls/{coll}?requests=N&retry_after_ms=M` makes
//      the next N requests for that container's items answer 429 (tests only).
//
// Usage: node scripts/cosmos-standin.mjs [--port N]   (127.0.0.1; 0 or none: a free port)
// Prints one line `cosmos stand-in listening on http://127.0.0.1:PORT/` once ready.

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const lib = "@vercel/cosmosdb-server/lib";

// The router copies each handler when it is first loaded: patch them before that.
function wrapHandler(name, wrap) {
  const handler = require(`${lib}/handler/${name}`);
  handler.default = wrap(handler.default);
}

const getPartitionFromHeader = require(`${lib}/utils/get-partition-from-header`);

// 1. A missing item is a 404, as Cosmos DB answers.
wrapHandler("read-document", (original) => (account, req, res, params) => {
  const { dbId, collId, docId } = params;
  const collection = account.database(dbId).collection(collId);
  if (collection.read()) {
    const key = getPartitionFromHeader.parsePartitionKey(
      getPartitionFromHeader.default(req),
      docId,
    );
    if (!collection.document(docId, key).read()) {
      res.statusCode = 404;
      return {
        code: "NotFound",
        message: "Entity with the specified id does not exist in the system.",
      };
    }
  }
  return original(account, req, res, params);
});

const { createHttpServer } = require(lib);

function portArgument(argv) {
  const at = argv.indexOf("--port");
  if (at === -1) return 0;
  const port = Number(argv[at + 1]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`cosmos stand-in: --port must be a port number (got ${argv[at + 1]})`);
    process.exit(2);
  }
  return port;
}

// 2. Keep-alive, as the service does.
const server = createHttpServer({ keepAlive: true });

// 3. Throttling on demand, by container.
const throttled = new Map(); // "/dbs/{db}/colls/{coll}" -> { requests, retryAfterMs }
const [serve] = server.listeners("request");
server.removeAllListeners("request");
server.on("request", (req, res) => {
  const url = new URL(req.url, "http://stand-in");
  const control = url.pathname.match(/^\/_throttle(\/dbs\/[^/]+\/colls\/[^/]+)$/);
  if (control && req.method === "PUT") {
    throttled.set(decodeURIComponent(control[1]), {
      requests: Number(url.searchParams.get("requests") ?? 1),
      retryAfterMs: Number(url.searchParams.get("retry_after_ms") ?? 10),
    });
    res.statusCode = 204;
    res.end();
    return;
  }
  const items = decodeURIComponent(url.pathname).match(/^(\/dbs\/[^/]+\/colls\/[^/]+)\/docs/);
  const budget = items && throttled.get(items[1]);
  if (budget && budget.requests > 0) {
    budget.requests -= 1;
    req.resume();
    res.writeHead(429, {
      "content-type": "application/json",
      "x-ms-retry-after-ms": String(budget.retryAfterMs),
    });
    res.end(JSON.stringify({ code: "TooManyRequests", message: "Request rate is large." }));
    return;
  }
  serve(req, res);
});
server.keepAliveTimeout = 60_000;
server.listen(portArgument(process.argv.slice(2)), "127.0.0.1", () => {
  console.log(`cosmos stand-in listening on http://127.0.0.1:${server.address().port}/`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
