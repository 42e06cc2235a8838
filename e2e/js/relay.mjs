// A minimal pkarr relay for loopback tests: PUT /<z32> stores a signed packet as sent,
// GET /<z32> returns it. It also publishes the homeserver's own packet: one HTTPS record at
// the apex pointing at `localhost`, with the plain-HTTP port in SvcParam 65280 (the key the
// SDK reads for testnet hosts). Usage: node relay.mjs <port> <homeserver secret hex> <http port>
import http from "node:http";
import crypto from "node:crypto";

const [port, secretHex, httpPort] = process.argv.slice(2);
const store = new Map();

const Z32 = "ybndrfg8ejkmcpqxot1uwisza345h769";
function z32(bytes) {
  let bits = 0, value = 0, out = "";
  for (const b of bytes) {
    value = (value << 8) | b; bits += 8;
    while (bits >= 5) { out += Z32[(value >>> (bits - 5)) & 31]; bits -= 5; }
  }
  if (bits > 0) out += Z32[(value << (5 - bits)) & 31];
  return out;
}

function keyFromSeed(seed) {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const priv = crypto.createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  const pub = crypto.createPublicKey(priv).export({ format: "der", type: "spki" }).subarray(-32);
  return { priv, pub };
}

function name(labels) {
  const parts = labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

function u16(n) { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; }
function u32(n) { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; }

function homeserverPacket(seed, port) {
  const { priv, pub } = keyFromSeed(seed);
  const origin = z32(pub);
  const rdata = Buffer.concat([u16(1), name(["localhost"]), u16(65280), u16(2), u16(port)]);
  const answer = Buffer.concat([name([origin]), u16(65), u16(1), u32(300), u16(rdata.length), rdata]);
  const header = Buffer.concat([u16(0), u16(0x8400), u16(0), u16(1), u16(0), u16(0)]);
  const dns = Buffer.concat([header, answer]);
  const ts = BigInt(Date.now()) * 1000n;
  const tsBuf = Buffer.alloc(8); tsBuf.writeBigUInt64BE(ts);
  const signable = Buffer.concat([Buffer.from(`3:seqi${ts}e1:v${dns.length}:`), dns]);
  const sig = crypto.sign(null, signable, priv);
  return { origin, body: Buffer.concat([sig, tsBuf, dns]) };
}

const hs = homeserverPacket(Buffer.from(secretHex, "hex"), Number(httpPort));
store.set(hs.origin, hs.body);

http.createServer((req, res) => {
  const key = decodeURIComponent(req.url.slice(1).split("?")[0]);
  res.setHeader("access-control-allow-origin", "*");
  if (req.method === "PUT") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => { store.set(key, Buffer.concat(chunks)); res.writeHead(204).end(); });
  } else if (req.method === "GET" && store.has(key)) {
    res.writeHead(200, { "content-type": "application/pkarr.org/relays#payload" }).end(store.get(key));
  } else {
    res.writeHead(404).end();
  }
}).listen(Number(port), "127.0.0.1", () => console.log(`relay on ${port}, homeserver ${hs.origin}`));
