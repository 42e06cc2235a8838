// The web app: the official SDK, unmodified, in a module worker (its embedded wasm is too
// large to compile synchronously on a page's main thread). Signs up with a cookie session,
// writes and reads a private file, and reports to the page.
import { Pubky, Keypair, PublicKey } from "/pubky.js";

onmessage = async ({ data: { hs } }) => {
  try {
    const pubky = Pubky.testnet("localhost");
    const signer = pubky.signer(Keypair.random());
    const session = await signer.signup(PublicKey.from(hs), null);
    const user = signer.publicKey.z32();
    await session.storage.putText("/priv/secret.txt", "only for the app that signed in");
    const back = await session.storage.getText("/priv/secret.txt");
    postMessage({ ok: true, user, back });
  } catch (e) {
    postMessage({ ok: false, error: String(e && e.stack || e) });
  }
};
