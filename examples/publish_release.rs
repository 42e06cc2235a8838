//! Publishes a signed release the way Pubky publishes everything: the release key is an
//! ordinary Pubky user, and the official SDK PUTs the manifest and the binary under its own
//! storage, where boxes look (`update::check::manifest_path`, `update::download::binary_path`).
//!
//! The manifest (from `pubky-edge release sign`) and the binary are checked against the
//! release key first, exactly as a box will check them, so a mistake is caught here and not
//! on every box of the channel.
//!
//! cargo run --example publish_release -- --key release.key [--bootstrap HOST:PORT]...
//!     [--signup HOMESERVER_KEY [--token SIGNUP_TOKEN]] CHANNEL MANIFEST BINARY
//!
//! `--signup` is for the release key's first release: it signs up on that homeserver, which
//! publishes the key's `_pubky` record. Later releases sign in wherever the record points.
//! `--bootstrap` uses those DHT nodes instead of the public Mainline DHT (a local testnet,
//! as in `images/boot-test`).

use std::path::Path;
use std::time::Duration;

use pubky::{ClientId, Keypair, Pubky, PubkyHttpClient, PublicKey};
use pubky_edge::identity::Identity;
use pubky_edge::update::check::manifest_path;
use pubky_edge::update::download::binary_path;
use pubky_edge::update::manifest;

const USAGE: &str = "usage: publish_release --key FILE [--bootstrap HOST:PORT]... \
[--signup HOMESERVER_KEY [--token SIGNUP_TOKEN]] CHANNEL MANIFEST BINARY";

#[derive(Default)]
struct Opts {
    key: Option<String>,
    bootstrap: Vec<String>,
    signup: Option<String>,
    token: Option<String>,
    positional: Vec<String>,
}

fn parse(args: Vec<String>) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--key" => o.key = Some(value()?),
            "--bootstrap" => o.bootstrap.push(value()?),
            "--signup" => o.signup = Some(value()?),
            "--token" => o.token = Some(value()?),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => o.positional.push(a),
        }
    }
    Ok(o)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(std::env::args().skip(1).collect()).await {
        eprintln!("publish_release: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let o = parse(args)?;
    let [channel, manifest_file, binary_file] = o.positional.as_slice() else {
        return Err(USAGE.into());
    };
    let key_file = o.key.as_deref().ok_or(USAGE)?;
    let key = Identity::load_file(Path::new(key_file)).map_err(|e| format!("{e:#}"))?;

    // Judge the release as a box will: the release key's signature, then the binary.
    let signed = std::fs::read(manifest_file).map_err(|e| format!("{manifest_file}: {e}"))?;
    let binary = std::fs::read(binary_file).map_err(|e| format!("{binary_file}: {e}"))?;
    let release =
        manifest::open(&signed, &key.public_key()).map_err(|e| format!("{manifest_file}: {e}"))?;
    release
        .check_binary(&binary)
        .map_err(|e| format!("{binary_file}: {e}"))?;

    let client = if o.bootstrap.is_empty() {
        PubkyHttpClient::builder().build()
    } else {
        let nodes = o.bootstrap.clone();
        PubkyHttpClient::builder()
            .pkarr(move |p| {
                p.no_default_network()
                    .bootstrap(&nodes)
                    .dht(|c| {
                        c.port = Some(0);
                        c
                    })
                    .dht_report_policy(pubky::pkarr::dht::ReportPolicy::testnet())
            })
            .request_timeout(Duration::from_secs(60))
            .build()
    }
    .map_err(|e| format!("the Pubky client: {e}"))?;
    let signer =
        Pubky::with_client(client).signer(Keypair::from_secret(&key.signing_key().to_bytes()));
    if let Some(hs) = &o.signup {
        let hs = PublicKey::try_from(hs.as_str()).map_err(|e| format!("--signup: {e}"))?;
        signer
            .signup(&hs, o.token.as_deref())
            .await
            .map_err(|e| format!("signing up on {hs}: {e}"))?;
    }
    let session = signer
        .signin_blocking(ClientId::new("pubky-edge.release").expect("a valid client id"))
        .await
        .map_err(|e| format!("signing in as the release key: {e}"))?;
    let storage = session.storage();

    // The binary first: a box that reads the new manifest must find its binary there.
    let binary_at = binary_path(channel, &release.target, &release.version);
    storage
        .put(binary_at.as_str(), binary)
        .await
        .map_err(|e| format!("PUT {binary_at}: {e}"))?;
    let manifest_at = manifest_path(channel, &release.target);
    storage
        .put(manifest_at.as_str(), signed)
        .await
        .map_err(|e| format!("PUT {manifest_at}: {e}"))?;
    println!(
        "published {} for {} in {channel}: pubky://{}{manifest_at}",
        release.version,
        release.target,
        key.public_key()
    );
    Ok(())
}
