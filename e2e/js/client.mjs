// The official JS SDK, unmodified, against pubky-edge: sign up, write, read, list, delete.
// Usage: node client.mjs <homeserver z32>   (run by run.sh, which starts the server and its relay)
import { Pubky, Keypair, PublicKey } from "@synonymdev/pubky";

const hs = PublicKey.from(process.argv[2]);
const pubky = Pubky.testnet("localhost");
const signer = pubky.signer(Keypair.random());
const session = await signer.signup(hs, null);
const user = signer.publicKey.z32();
console.log("signed up", user);

await session.storage.putText("/pub/example.com/hello.txt", "hello from js");
await session.storage.putJson("/pub/example.com/data.json", { n: 1 });
const text = await pubky.publicStorage.getText(`pubky://${user}/pub/example.com/hello.txt`);
if (text !== "hello from js") throw new Error(`read back ${text}`);
const list = await pubky.publicStorage.list(`pubky://${user}/pub/example.com/`);
console.log("list", list);
if (list.length !== 2) throw new Error("listing");
await session.storage.delete("/pub/example.com/data.json");
if (await pubky.publicStorage.exists(`pubky://${user}/pub/example.com/data.json`)) throw new Error("delete");
await session.signout();
const again = await signer.signin();
await again.storage.putText("/priv/note.txt", "private");
console.log("read private:", await again.storage.getText("/priv/note.txt"));
console.log("OK");
