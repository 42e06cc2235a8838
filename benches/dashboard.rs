//! Dashboard benchmark: how long each page takes to answer and how much it weighs, on a
//! box with some people and history.
//!
//! Fills a data directory through the store's own API (`--users` people with `--files`
//! small public files each, so the people page, the storage card and the event list have
//! something to show), starts the release binary, claims the box and signs in over HTTP as
//! a browser would, then asks each page `--rounds` times over loopback and prints the
//! median and p99 answer time and the page's size. The QR codes are rendered on every ask
//! (home: the box's key; invitations: a fresh invitation's link).
//!
//! `cargo bench --bench dashboard -- [--users 20] [--files 50] [--rounds 300]`

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use pubky_edge::pubkey::PublicKey;
use pubky_edge::storage_path::StoragePath;
use pubky_edge::store::Store;

fn fill(data: &Path, users: usize, files: usize) {
    let cfg = common::fill_config();
    smol::block_on(async {
        let store = Store::open(data, cfg).expect("open store");
        for u in 0..users {
            let user: PublicKey = ed25519_dalek::SigningKey::from_bytes(&[u as u8 + 1; 32])
                .verifying_key()
                .into();
            store
                .create_user(&user, None, common::now_secs())
                .await
                .expect("user");
            for i in 0..files {
                let mut up = store.upload();
                up.write(&vec![b'x'; 700]).await.expect("write");
                let staged = up.finish().await.expect("finish");
                let path = StoragePath::strict(&format!("/pub/app/posts/{i}.json")).unwrap();
                let now = common::now_secs() * 1_000_000 + i as u64;
                store
                    .put(&user, &path, staged, "application/json", now)
                    .await
                    .expect("put");
            }
        }
        store.close().await.expect("close");
    });
}

/// One request; the status, the `Set-Cookie` values and the body.
fn send(addr: SocketAddr, req: &str) -> (u16, Vec<String>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    let cookies = head
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .map(|c| c.split(';').next().unwrap_or("").to_string())
        .collect();
    (status, cookies, buf[split..].to_vec())
}

fn get(addr: SocketAddr, path: &str, cookie: &str) -> (u16, Vec<String>, Vec<u8>) {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: localhost\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"),
    )
}

fn post(addr: SocketAddr, path: &str, cookie: &str, form: &str) -> (u16, Vec<String>, Vec<u8>) {
    send(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncookie: {cookie}\r\ncontent-type: \
             application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
}

fn field(html: &[u8], name: &str) -> String {
    let html = String::from_utf8_lossy(html);
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .expect("form field")
        + name.len()
        + 15;
    html[at..].split('"').next().unwrap().to_string()
}

fn main() {
    let opts = common::options();
    let opt = |k: &str, d: usize| {
        opts.iter()
            .find(|(o, _)| o == k)
            .map_or(d, |(_, v)| v.parse().expect("a number"))
    };
    let (users, files, rounds) = (opt("--users", 20), opt("--files", 50), opt("--rounds", 300));
    let binary = Path::new(env!("CARGO_BIN_EXE_pubky-edge"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data, users, files);
    let dport = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dash_toml = format!("[dashboard]\nlisten_socket = \"127.0.0.1:{dport}\"\n");
    let mut l = common::launch(binary, dir.path(), &data, &dash_toml, None);
    let addr: SocketAddr = ([127, 0, 0, 1], dport).into();

    // Claim as a browser would: the form's token comes with a cookie.
    let (_, cookies, html) = get(addr, "/", "");
    let pre = cookies
        .iter()
        .find(|c| c.starts_with("pe_pre="))
        .expect("pre cookie")
        .clone();
    let form = format!(
        "pre={}&new=bench-password&again=bench-password",
        field(&html, "pre")
    );
    let (status, cookies, _) = post(addr, "/claim", &pre, &form);
    assert_eq!(status, 303, "claim");
    let session = cookies
        .iter()
        .find(|c| c.starts_with("pe_session="))
        .expect("session")
        .clone();
    let (_, _, html) = get(addr, "/invites", &session);
    let csrf = field(&html, "csrf");
    let (status, _, _) = post(
        addr,
        "/invites",
        &session,
        &format!("csrf={csrf}&quota_mb=100"),
    );
    assert_eq!(status, 303, "invite");
    let token = {
        let (_, _, html) = get(addr, "/invites", &session);
        let html = String::from_utf8_lossy(&html).to_string();
        let at = html.find("<td><code>").expect("an invitation row") + 10;
        html[at..].split('<').next().unwrap().to_string()
    };
    let user_key =
        PublicKey::from(ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key()).to_z32();

    println!(
        "dashboard pages, {users} people with {files} files each, {rounds} requests per page over loopback \
         (one connection each), release build:"
    );
    println!(
        "{:<28} {:>9} {:>9} {:>10}",
        "page", "median", "p99", "bytes"
    );
    let pages = [
        "/".to_string(),
        format!("/invites?new={token}"),
        "/people".to_string(),
        format!("/people/delete?user={user_key}"),
        "/activity".to_string(),
        "/settings".to_string(),
        "/style.css".to_string(),
    ];
    for page in &pages {
        let mut times = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let (status, _, body) = get(addr, page, &session);
            times.push(t.elapsed());
            assert_eq!(status, 200, "{page}");
            bytes = body.len();
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        let name = page.split('?').next().unwrap();
        println!(
            "{name:<28} {:>9} {:>9} {bytes:>10}",
            ms(at(0.5)),
            ms(at(0.99))
        );
    }
    let rss = common::rss_kib(l.child.id(), "VmHWM:");
    println!(
        "server peak RSS over the run: {:.1} MiB",
        rss as f64 / 1024.0
    );
    let _ = l.child.kill();
    let _ = l.child.wait();
}
