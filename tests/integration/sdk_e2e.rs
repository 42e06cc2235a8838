//! End to end with the official `pubky` SDK (0.17.1 from crates.io, unmodified): the SDK finds
//! the device through a Mainline DHT running on loopback (no relays, nothing beyond
//! 127.0.0.1), verifies its PubkyTLS raw key against the published record and uses the
//! storage and grant APIs over it.

use crate::support as common;

use std::time::Duration;

use base64::Engine;
use common::{pk_of, GrantSpec, Server};
use pubky::{ClientId, Keypair, Pubky, PubkyHttpClient, PublicKey as SdkKey};
use pubky_edge::announce::dht::local_testnet;

/// A local DHT; dropping it stops the nodes.
pub(crate) struct Net {
    _nodes: Vec<mainline::async_dht::AsyncDht>,
    pub(crate) bootstrap: Vec<String>,
}

pub(crate) fn net() -> Net {
    let (nodes, bootstrap) = local_testnet(0, 4).unwrap();
    Net {
        _nodes: nodes,
        bootstrap,
    }
}

/// Server config on the testnet with fixed ports (so a restart keeps its address).
pub(crate) fn server_toml(net: &Net, extra: &str) -> String {
    let nodes: Vec<String> = net.bootstrap.iter().map(|b| format!("{b:?}")).collect();
    format!(
        "[drive]\nicann_listen_socket = \"127.0.0.1:{}\"\npubky_listen_socket = \"127.0.0.1:{}\"\n\
         [pkdns]\ndht = true\npublic_ip = \"127.0.0.1\"\ndht_request_timeout_ms = 1000\n\
         publish_retry_min_ms = 100\ndht_bootstrap_nodes = [{}]\n{extra}",
        common::proc::free_port(),
        common::proc::free_port(),
        nodes.join(", ")
    )
}

pub(crate) fn sdk(net: &Net) -> Pubky {
    Pubky::with_client(sdk_client(net))
}

fn sdk_client(net: &Net) -> PubkyHttpClient {
    common::sdk_client(&net.bootstrap)
}

/// The SDK with its HTTP client kept, for requests of its own (a website page).
fn sdk_and_client(net: &Net) -> (Pubky, PubkyHttpClient) {
    let client = sdk_client(net);
    (Pubky::with_client(client.clone()), client)
}

pub(crate) fn hs_key(s: &Server) -> SdkKey {
    SdkKey::try_from(s.pk.to_string().as_str()).unwrap()
}

pub(crate) fn app() -> ClientId {
    ClientId::new("e2e.test").unwrap()
}

fn status_of(e: &pubky::Error) -> Option<u16> {
    match e {
        pubky::Error::Request(pubky::errors::RequestError::Server { status, .. }) => {
            Some(status.as_u16())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_signin_revalidate_signout_and_storage_over_pubky_tls() {
    let net = net();
    let server = Server::start(&server_toml(&net, ""));
    server.wait_published(20);
    let pubky = sdk(&net);
    let hs = hs_key(&server);

    // The SDK resolves the device's key to the device.
    let user = Keypair::random();
    let signer = pubky.signer(user.clone());
    signer.signup(&hs, None).await.expect("signup");
    let resolved = pubky.get_homeserver_of(&user.public_key()).await;
    assert_eq!(resolved.unwrap().map(|k| k.z32()), Some(hs.z32()));

    let session = signer.signin_blocking(app()).await.expect("signin");
    assert_eq!(session.info().public_key().z32(), user.public_key().z32());
    let again = session.revalidate().await.expect("revalidate");
    assert!(again.is_some(), "a live session revalidates");

    let st = session.storage();
    // Small body.
    st.put("/pub/e2e/hello.txt", "hello device")
        .await
        .expect("put small");
    let got = st.get("/pub/e2e/hello.txt").await.unwrap();
    assert_eq!(got.text().await.unwrap(), "hello device");
    assert!(st.exists("/pub/e2e/hello.txt").await.unwrap());
    let stats = st.stats("/pub/e2e/hello.txt").await.unwrap().unwrap();
    assert_eq!(stats.content_length, Some(12));

    // A multi-MiB body, byte for byte.
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    st.put("/pub/e2e/big.bin", big.clone())
        .await
        .expect("put big");
    let got = st.get("/pub/e2e/big.bin").await.unwrap();
    let bytes = got.bytes().await.unwrap();
    assert_eq!(bytes.len(), big.len());
    assert!(bytes[..] == big[..], "large body round trip");

    // JSON round trip.
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Post {
        title: String,
        n: u32,
    }
    let post = Post {
        title: "über".into(),
        n: 7,
    };
    st.put_json("/pub/e2e/post.json", &post).await.unwrap();
    let back: Post = st.get_json("/pub/e2e/post.json").await.unwrap();
    assert_eq!(back, post);

    // Delete.
    st.delete("/pub/e2e/hello.txt").await.unwrap();
    assert!(!st.exists("/pub/e2e/hello.txt").await.unwrap());
    let e = st.get("/pub/e2e/hello.txt").await.unwrap_err();
    assert_eq!(status_of(&e), Some(404), "{e}");

    // Sign out (the SDK uses the proof form, since /info advertises it): the session is
    // gone server-side.
    let info = session.info().clone();
    session
        .signout()
        .await
        .map_err(|(e, _)| e)
        .expect("signout");
    let restored = signer
        .signin(app())
        .await
        .expect("a new signin still works");
    assert_eq!(restored.info().public_key().z32(), info.public_key().z32());
    drop(server);
}

/// The SDK's WebDAV lock calls (which do not look at `/info`) and a website page fetched
/// over PubkyTLS with the user's key as `Host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_and_a_website_through_the_sdk() {
    let net = net();
    let server = Server::start(&server_toml(&net, ""));
    server.wait_published(20);
    let (pubky, client) = sdk_and_client(&net);
    let user = Keypair::random();
    let signer = pubky.signer(user.clone());
    signer.signup(&hs_key(&server), None).await.unwrap();
    let session = signer.signin_blocking(app()).await.unwrap();
    let st = session.storage();

    st.put("/pub/e2e/counter.txt", "1").await.unwrap();
    let mut lock = st
        .lock("/pub/e2e/counter.txt", Duration::from_secs(20))
        .await
        .expect("lock");
    assert_eq!(lock.timeout(), Duration::from_secs(20));
    // Another session of the same user cannot write past the lock, nor lock again.
    let other = signer.signin_blocking(app()).await.unwrap();
    let e = other
        .storage()
        .put("/pub/e2e/counter.txt", "x")
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(423), "{e}");
    let e = other
        .storage()
        .lock("/pub/e2e/counter.txt", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(423), "{e}");
    st.put_locked(&lock, "2").await.expect("put under the lock");
    st.refresh_lock(&mut lock, Duration::from_secs(600))
        .await
        .expect("refresh");
    assert_eq!(
        lock.timeout(),
        Duration::from_secs(60),
        "the server caps it"
    );
    st.unlock(&lock).await.expect("unlock");
    let e = st.put_locked(&lock, "3").await.unwrap_err();
    assert_eq!(status_of(&e), Some(412), "a released lock is stale: {e}");
    let e = st.unlock(&lock).await.unwrap_err();
    assert_eq!(status_of(&e), Some(409), "{e}");
    other
        .storage()
        .put("/pub/e2e/counter.txt", "4")
        .await
        .unwrap();
    let text = st
        .get("/pub/e2e/counter.txt")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "4");
    let lock = st
        .lock("/pub/e2e/gone.txt", Duration::from_secs(5))
        .await
        .unwrap();
    st.put_locked(&lock, "x").await.unwrap();
    st.delete_locked(&lock)
        .await
        .expect("delete under the lock");
    assert!(!st.exists("/pub/e2e/gone.txt").await.unwrap());

    // A website page, through the SDK's own PubkyTLS client.
    st.put("/pub/website/_/index.html", "<h1>our family</h1>")
        .await
        .unwrap();
    let url = format!("https://{}/", server.pk);
    let resp = client
        .request(pubky::Method::GET, &url)
        .header("host", user.public_key().z32())
        .send()
        .await
        .expect("page over PubkyTLS");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    assert_eq!(resp.text().await.unwrap(), "<h1>our family</h1>");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_with_limit_cursor_reverse_and_shallow() {
    let net = net();
    let server = Server::start(&server_toml(&net, ""));
    server.wait_published(20);
    let pubky = sdk(&net);
    let signer = pubky.signer(Keypair::random());
    signer.signup(&hs_key(&server), None).await.unwrap();
    let session = signer.signin_blocking(app()).await.unwrap();
    let st = session.storage();
    for p in ["a.txt", "b.txt", "c.txt", "sub/d.txt", "sub/e.txt"] {
        st.put(format!("/pub/list/{p}"), p).await.unwrap();
    }
    let paths = |v: Vec<pubky::PubkyResource>| -> Vec<String> {
        v.into_iter().map(|r| r.path.as_str().to_string()).collect()
    };
    let all = paths(st.list("/pub/list/").unwrap().send().await.unwrap());
    assert_eq!(
        all,
        vec![
            "/pub/list/a.txt",
            "/pub/list/b.txt",
            "/pub/list/c.txt",
            "/pub/list/sub/d.txt",
            "/pub/list/sub/e.txt"
        ]
    );
    let first = st
        .list("/pub/list/")
        .unwrap()
        .limit(2)
        .send()
        .await
        .unwrap();
    // The next page starts after the last entry returned (its pubky:// URL is the cursor).
    let cursor = first[1].to_pubky_url();
    assert_eq!(paths(first), vec!["/pub/list/a.txt", "/pub/list/b.txt"]);
    let next = paths(
        st.list("/pub/list/")
            .unwrap()
            .limit(2)
            .cursor(&cursor)
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(next, vec!["/pub/list/c.txt", "/pub/list/sub/d.txt"]);
    let rev = paths(
        st.list("/pub/list/")
            .unwrap()
            .reverse(true)
            .limit(2)
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(rev, vec!["/pub/list/sub/e.txt", "/pub/list/sub/d.txt"]);
    let shallow = paths(
        st.list("/pub/list/")
            .unwrap()
            .shallow(true)
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(
        shallow,
        vec![
            "/pub/list/a.txt",
            "/pub/list/b.txt",
            "/pub/list/c.txt",
            "/pub/list/sub/"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_other_users_and_a_narrow_third_party_grant() {
    let net = net();
    let server = Server::start(&server_toml(
        &net,
        "[general]\nsignup_mode = \"token_required\"\n",
    ));
    server.wait_published(20);
    let pubky = sdk(&net);
    let hs = hs_key(&server);

    // Token mode: no token → refused; a token from the store → accepted, once.
    let alice = Keypair::random();
    let a_signer = pubky.signer(alice.clone());
    let e = a_signer.signup(&hs, None).await.unwrap_err();
    assert_eq!(status_of(&e), Some(400), "{e}");
    let token = pubky_edge::auth::secrets::new_signup_token();
    let store = server.running().store().clone();
    smol::block_on(store.create_signup_token(&token, common::now())).unwrap();
    a_signer
        .signup(&hs, Some(&token))
        .await
        .expect("signup with token");
    let bob = Keypair::random();
    let e = pubky
        .signer(bob.clone())
        .signup(&hs, Some(&token))
        .await
        .unwrap_err();
    assert!(matches!(status_of(&e), Some(401) | Some(403)), "{e}");
    let token2 = pubky_edge::auth::secrets::new_signup_token();
    smol::block_on(store.create_signup_token(&token2, common::now())).unwrap();
    let b_signer = pubky.signer(bob.clone());
    b_signer.signup(&hs, Some(&token2)).await.unwrap();

    let alice_s = a_signer.signin_blocking(app()).await.unwrap();
    let bob_s = b_signer.signin_blocking(app()).await.unwrap();
    alice_s
        .storage()
        .put("/pub/shared/note.txt", "from alice")
        .await
        .unwrap();

    // Bob (and anyone) reads Alice's public data through public storage …
    let url = format!("pubky{}/pub/shared/note.txt", alice.public_key().z32());
    let got = pubky.public_storage().get(url.as_str()).await.unwrap();
    assert_eq!(got.text().await.unwrap(), "from alice");
    // … but Bob's session cannot write it.
    let e = bob_s
        .storage()
        .put(
            format!("pubky{}/pub/shared/note.txt", alice.public_key().z32()).as_str(),
            "x",
        )
        .await;
    assert!(e.is_err(), "bob must not write alice's data");
    let got = pubky.public_storage().get(url.as_str()).await.unwrap();
    assert_eq!(got.text().await.unwrap(), "from alice");

    // A third-party app holding a grant Alice signed for /pub/app.example/ only: the SDK
    // exchanges it (with the app's own proof of possession) for a session.
    let alice_dalek = ed25519_dalek::SigningKey::from_bytes(&alice.secret_key());
    let grant = GrantSpec::new(
        &alice_dalek,
        server.pk,
        "app.example",
        "/pub/app.example/:rw",
        3600,
    );
    assert_eq!(pk_of(&alice_dalek).to_string(), alice.public_key().z32());
    let secret = format!(
        "pubky-grant-credential-v1:{}:{}:{}",
        server.pk,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(grant.client.to_bytes()),
        grant.grant_jws()
    );
    let app_session = pubky
        .restore_session(&secret)
        .await
        .expect("grant exchange");
    let st = app_session.storage();
    st.put("/pub/app.example/state.json", "{}")
        .await
        .expect("in scope");
    let e = st.put("/pub/shared/note.txt", "hijack").await.unwrap_err();
    assert_eq!(status_of(&e), Some(403), "{e}");
    let e = st.delete("/pub/shared/note.txt").await.unwrap_err();
    assert_eq!(status_of(&e), Some(403), "{e}");
    let got = pubky.public_storage().get(url.as_str()).await.unwrap();
    assert_eq!(got.text().await.unwrap(), "from alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_and_data_survive_a_restart() {
    let net = net();
    let toml = server_toml(&net, "");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &toml);
    server.wait_published(20);
    let first_ts = server
        .running()
        .probes
        .publish_status
        .lock()
        .unwrap()
        .packet_timestamp_us;
    let pubky = sdk(&net);
    let hs = hs_key(&server);
    let user = Keypair::random();
    let signer = pubky.signer(user.clone());
    signer.signup(&hs, None).await.unwrap();
    let session = signer.signin_blocking(app()).await.unwrap();
    session
        .storage()
        .put("/pub/keep/me.txt", "still here")
        .await
        .unwrap();
    drop(session);
    let _ = server.stop();

    let server = Server::start_in(&dir, &toml);
    assert_eq!(
        server.pk.to_string(),
        hs.z32(),
        "same identity after restart"
    );
    server.wait_published(20);
    let st = server
        .running()
        .probes
        .publish_status
        .lock()
        .unwrap()
        .clone();
    assert!(
        st.packet_timestamp_us > first_ts,
        "a fresh record was published"
    );

    // A fresh client (no cache) resolves the restarted device and reads the data.
    let fresh = sdk(&net);
    assert_eq!(
        fresh
            .get_homeserver_of(&user.public_key())
            .await
            .unwrap()
            .map(|k| k.z32()),
        Some(hs.z32())
    );
    let url = format!("pubky{}/pub/keep/me.txt", user.public_key().z32());
    let got = fresh.public_storage().get(url.as_str()).await.unwrap();
    assert_eq!(got.text().await.unwrap(), "still here");
    // The first client, whose cached endpoint is the same address, keeps working too.
    let session = pubky.signer(user).signin_blocking(app()).await.unwrap();
    assert!(session.revalidate().await.unwrap().is_some());
}
