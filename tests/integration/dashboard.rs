//! The household's dashboard in a real browser (headless Chromium over WebDriver) against a
//! real server on a loopback DHT: claim, sign in, invite by QR code (decoded from a
//! screenshot by zbarimg, then redeemed by the official SDK), revoke, disable and enable,
//! delete a person's data, and what is refused (a form without its CSRF token, another
//! Host, a stranger's address, too many wrong passwords). Screenshots of every page at
//! phone and desktop width go to `target/tmp/dashboard-screenshots` (or
//! `$PUBKY_EDGE_SCREENSHOTS`).

use std::path::PathBuf;
use std::process::Command;

use pubky::{Keypair, Pubky};

use crate::sdk_e2e::{app, hs_key, net, sdk, server_toml};
use crate::support::webdriver::{self, Browser};
use crate::support::{self, Server};

const PASSWORD: &str = "family-box-2026";
const PHONE: u32 = 360;
const DESKTOP: u32 = 1280;

fn shots() -> PathBuf {
    let dir = std::env::var_os("PUBKY_EDGE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Both widths of the current page, as `<name>-phone.png` and `<name>-desktop.png`.
fn snap(b: &Browser, name: &str) -> PathBuf {
    let dir = shots();
    b.screenshot(PHONE, &dir.join(format!("{name}-phone.png")));
    let desktop = dir.join(format!("{name}-desktop.png"));
    b.screenshot(DESKTOP, &desktop);
    desktop
}

/// Every page of a signed-in owner weighs less than 50 KiB with its stylesheet and script.
/// Claims the box over plain HTTP with the test config's admin password (which then stays
/// the password); returns the owner's session (the `pe_session` cookie's value).
pub(crate) fn claim_with_configured_password(s: &Server) -> String {
    let claim = s
        .dashboard("POST", "/claim")
        .header("cookie", "pe_pre=t")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("pre=t&configured=test-admin")
        .send();
    assert_eq!(claim.status, 303, "{}", claim.text());
    claim
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .trim_start_matches("pe_session=")
        .to_string()
}

fn page_weight(s: &Server, cookie: &str, path: &str) -> usize {
    let get = |p: &str| {
        s.dashboard("GET", p)
            .header("cookie", &format!("pe_session={cookie}"))
            .send()
    };
    let r = get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.body.len() + get("/style.css").body.len() + get("/copy.js").body.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_household_claims_invites_and_manages_the_box_in_a_browser() {
    if !webdriver::available() || !support::installed("zbarimg", "--version") {
        return;
    }
    let net = net();
    let s = Server::start(&server_toml(
        &net,
        "[general]\nsignup_mode = \"token_required\"\n[admin]\npassword = \"\"\n\
         [update]\nrelease_key = \"uaq313ktk6zmdes73frjybt6ht58pixkg8ys98o8fsikymk1qjmy\"\n\
         check_interval_ms = 0\n",
    ));
    s.wait_published(20);
    let dash = s.running().addrs.dashboard.expect("dashboard listener");
    let base = format!("http://localhost:{}", dash.port());
    let b = Browser::start(DESKTOP, 900);

    // First visit: only the claim page, wherever one goes.
    b.goto(&format!("{base}/people"));
    assert!(
        b.url().ends_with(&format!(":{}/", dash.port())),
        "{}",
        b.url()
    );
    assert!(b.body().contains("Claim this box"), "{}", b.body());
    snap(&b, "claim");
    b.type_into("#new", PASSWORD);
    b.type_into("#again", "a-different-one");
    b.click("button[type=submit]");
    assert!(b.body().contains("two passwords differ"), "{}", b.body());
    b.type_into("#new", PASSWORD);
    b.type_into("#again", PASSWORD);
    b.click("button[type=submit]");
    let home = b.body();
    assert!(home.contains("This box is yours now"), "{home}");
    assert_eq!(b.text("#pk"), s.pk.to_string());
    assert!(b.count(".verdict h2") == 1 && home.contains("Health") && home.contains("Storage"));
    assert!(std::fs::read_to_string(s.data_dir.join("owner-password"))
        .unwrap()
        .starts_with("$argon2id$"));
    assert!(
        !s.data_dir.join("admin-password").exists(),
        "one secret, kept hashed"
    );
    snap(&b, "home");
    // Updates: held and let go from the card, and "look now" reaches the box's update
    // worker, which only looks when asked here (the release key has no homeserver).
    assert!(
        home.contains("Automatic, within 03:00-05:00 UTC."),
        "{home}"
    );
    b.click("form[action='/updates/hold'] button");
    let held = b.body();
    assert!(held.contains("Automatic updates are held"), "{held}");
    assert!(held.contains("(held from the dashboard)."), "{held}");
    assert!(s.data_dir.join("slots/hold.json").is_file());
    snap(&b, "home-updates-held");
    b.click("form[action='/updates/hold'] button");
    assert!(
        b.body().contains("The box updates itself again"),
        "{}",
        b.body()
    );
    assert!(!s.data_dir.join("slots/hold.json").exists());
    assert!(!s.data_dir.join("update.json").exists());
    b.click("form[action='/updates/now'] button");
    assert!(
        b.body().contains("The box is looking for an update"),
        "{}",
        b.body()
    );
    let looked = s.data_dir.join("update.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !looked.is_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never looked"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    b.goto(&format!("{base}/"));
    let home = b.body();
    assert!(
        home.contains("The channel could not be read: finding the release key"),
        "{home}"
    );
    // The admin API takes the same password now.
    let info = s
        .admin_raw("GET", "/info")
        .header("x-admin-password", PASSWORD)
        .send();
    assert_eq!(info.status, 200, "{}", info.text());
    let cookie = b.cookie("pe_session").expect("a session cookie");

    // A new browser (no cookie) must sign in.
    b.delete_cookies();
    b.goto(&format!("{base}/invites"));
    assert!(b.url().ends_with("/login"), "{}", b.url());
    snap(&b, "login");
    b.type_into("#password", PASSWORD);
    b.click("button[type=submit]");
    assert!(b.body().contains("This box"), "{}", b.body());

    // Invite someone with 50 MB: the QR code in a screenshot is the Ring link for this box.
    b.goto(&format!("{base}/invites"));
    b.type_into("#quota", "50");
    b.click("form.card button[type=submit]");
    let token = b.text("#token");
    let link = b.text("#link");
    assert_eq!(
        link,
        format!("pubkyauth://direct_signup?hs={}&st={token}", s.pk)
    );
    let shot = snap(&b, "invite");
    let decoded = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&shot)
        .output()
        .unwrap();
    let decoded = String::from_utf8_lossy(&decoded.stdout).trim().to_string();
    assert_eq!(decoded, link, "the QR code in {}", shot.display());

    // The token in it signs a new person up through the official SDK.
    let pubky: Pubky = sdk(&net);
    let person = Keypair::random();
    let signer = pubky.signer(person.clone());
    signer
        .signup(&hs_key(&s), Some(&token))
        .await
        .expect("signup with the invitation");
    let session = signer.signin_blocking(app()).await.expect("signin");
    session
        .storage()
        .put("/pub/family/hello.txt", "hi grandma")
        .await
        .unwrap();
    let short = &person.public_key().z32()[..8];
    b.goto(&format!("{base}/invites"));
    assert!(
        b.body().contains(&format!("used by {short}")),
        "{}",
        b.body()
    );
    let user = s
        .admin_raw("GET", &format!("/users/{}", person.public_key().z32()))
        .header("x-admin-password", PASSWORD)
        .send();
    assert!(
        user.text().contains("\"storage_quota_mb\":50"),
        "{}",
        user.text()
    );

    // A second invitation, revoked: its token no longer signs anyone up.
    b.click("form.card button[type=submit]");
    let revoked = b.text("#token");
    b.click(&format!(
        "form[action='/invites/revoke'] input[value='{revoked}'] ~ button"
    ));
    assert!(
        b.body().contains("The invitation was revoked"),
        "{}",
        b.body()
    );
    assert!(!b.body().contains(&revoked));
    let stranger = pubky.signer(Keypair::random());
    assert!(stranger.signup(&hs_key(&s), Some(&revoked)).await.is_err());

    // People: disable (writes refused), enable (writes work), delete data with a confirmation.
    b.goto(&format!("{base}/people"));
    assert!(b.body().contains(short), "{}", b.body());
    snap(&b, "people");
    b.click("form[action='/people/state'] button");
    assert!(b.body().contains("The account is disabled"), "{}", b.body());
    assert!(session
        .storage()
        .put("/pub/family/x.txt", "x")
        .await
        .is_err());
    b.click("form[action='/people/state'] button");
    assert!(b.body().contains("enabled again"), "{}", b.body());
    session
        .storage()
        .put("/pub/family/x.txt", "x")
        .await
        .unwrap();

    b.goto(&format!("{base}/activity"));
    let activity = b.body();
    assert!(activity.contains("/pub/family/hello.txt"), "{activity}");
    snap(&b, "activity");

    b.goto(&format!(
        "{base}/people/delete?user={}",
        person.public_key().z32()
    ));
    snap(&b, "delete");
    b.type_into("#confirm", "wrong");
    b.click("button.danger");
    assert!(b.body().contains("Nothing was deleted"), "{}", b.body());
    let url = format!("pubky{}/pub/family/hello.txt", person.public_key().z32());
    assert!(pubky.public_storage().get(&url).await.is_ok());
    b.goto(&format!(
        "{base}/people/delete?user={}",
        person.public_key().z32()
    ));
    b.type_into("#confirm", short);
    b.click("button.danger");
    assert!(
        b.body().contains("The person's data was deleted"),
        "{}",
        b.body()
    );
    let gone = pubky.public_storage().get(&url).await;
    assert!(gone.is_err() || gone.unwrap().status() == 404);

    b.goto(&format!("{base}/settings"));
    assert!(b.body().contains("this one"), "{}", b.body());
    snap(&b, "settings");

    // Page weights (HTML + stylesheet + script), from the first session's cookie.
    for path in ["/", "/invites", "/people", "/activity", "/settings"] {
        let w = page_weight(&s, &cookie, path);
        eprintln!("dashboard page {path}: {w} bytes");
        assert!(w < 50 * 1024, "{path}: {w} bytes");
    }

    // Refused: a form without its CSRF token, a foreign Host, a cross-site Origin.
    let csrf_less = s
        .dashboard("POST", "/invites")
        .header("cookie", &format!("pe_session={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("quota_mb=")
        .send();
    assert_eq!(csrf_less.status, 403, "{}", csrf_less.text());
    let foreign = s
        .dashboard("GET", "/")
        .header("host", "attacker.example")
        .send();
    assert_eq!(foreign.status, 421);
    let cross = s
        .dashboard("POST", "/invites")
        .header("cookie", &format!("pe_session={cookie}"))
        .header("origin", "http://attacker.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("quota_mb=")
        .send();
    assert_eq!(cross.status, 403);
    // The listener is LAN-only; loopback counts as this home network.
    let lan = support::send_from(
        [127, 0, 0, 9],
        dash,
        b"GET /style.css HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(lan.status, 200);

    // Sign out, then five wrong passwords: even the right one waits now.
    b.goto(&format!("{base}/settings"));
    b.click("form[action='/settings/end'] input[value=all] ~ button");
    assert!(b.url().ends_with("/login"));
    for _ in 0..5 {
        b.type_into("#password", "guess-guess");
        b.click("button[type=submit]");
        assert!(
            b.body().contains("That is not the password"),
            "{}",
            b.body()
        );
    }
    b.type_into("#password", PASSWORD);
    b.click("button[type=submit]");
    assert!(
        b.body().contains("Too many wrong passwords"),
        "{}",
        b.body()
    );
    // The throttle is per address: another one signs in.
    let form = format!("pre=p1&password={PASSWORD}");
    let other = support::send_from(
        [127, 0, 0, 7],
        dash,
        format!(
            "POST /login HTTP/1.1\r\nhost: localhost\r\ncookie: pe_pre=p1\r\ncontent-type: \
             application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    );
    assert_eq!(other.status, 303, "{}", other.text());
    assert!(other
        .header("set-cookie")
        .is_some_and(|c| c.contains("HttpOnly") && c.contains("SameSite=Strict")));
}

/// Under systemd the dashboard serves the socket passed as `dashboard` (port 80 on the
/// image), not its configured one: `systemd-socket-activate` passes it the same way.
#[test]
fn the_dashboard_serves_the_socket_systemd_passes() {
    if !support::installed("systemd-socket-activate", "--version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::proc::free_port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[drive]\nicann_listen_socket = \"127.0.0.1:0\"\npubky_listen_socket = \"127.0.0.1:0\"\n\
         [pkdns]\ndht = false\n[admin]\nenabled = false\n[metrics]\nenabled = false\n\
         [upnp]\nenabled = false\n[mdns]\nenabled = false\n\
         [dashboard]\nlisten_socket = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=dashboard"])
        .arg(support::proc::BIN)
        .args(["-c", config.to_str().unwrap(), "-d"])
        .arg(dir.path().join("data"))
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| {
                support::send_raw(
                    ([127, 0, 0, 1], port).into(),
                    b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
                    false,
                )
            });
        match got {
            Some(r) if r.status == 200 => break r.text(),
            _ if std::time::Instant::now() > deadline => {
                panic!("no dashboard on the passed socket")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(page.contains("Claim this box"), "{page}");
}

/// With many people and invitations the lists come a page at a time, and every page stays
/// under 50 KiB with its stylesheet and script.
#[test]
fn pages_stay_small_with_many_people_and_invitations() {
    let s = Server::start("[drive]\nrate_limits = []\n");
    for _ in 0..60 {
        support::new_user(&s);
    }
    for _ in 0..120 {
        assert_eq!(s.admin("POST", "/generate_signup_token").send().status, 200);
    }
    let cookie = claim_with_configured_password(&s);
    for (path, rows, next) in [
        ("/people", "class=\"card person\"", Some("/people?page=1")),
        ("/people?page=2", "class=\"card person\"", None),
        ("/invites", "<td><code>", Some("/invites?page=1")),
        ("/activity", "<li", None),
    ] {
        let r = s
            .dashboard("GET", path)
            .header("cookie", &format!("pe_session={cookie}"))
            .send();
        let html = r.text();
        assert_eq!(r.status, 200, "{path}");
        let w = page_weight(&s, &cookie, path);
        assert!(w < 50 * 1024, "{path}: {w} bytes");
        let n = html.matches(rows).count();
        assert!(n > 0, "{path}: {html}");
        if let Some(next) = next {
            assert!(html.contains(&format!("href=\"{next}\"")), "{path}");
        }
        eprintln!("{path}: {n} rows, {w} bytes");
    }
}

/// The activity page of the real binary shows its own recent log lines (the in-process
/// servers of this test binary log nowhere), filtered by level.
#[test]
fn the_activity_page_shows_the_boxs_log_lines() {
    use support::proc::{free_port, Node};
    let dir = tempfile::tempdir().unwrap();
    let (http, dash) = (free_port(), free_port());
    let config = format!(
        "[general]\nsignup_mode = \"open\"\n[drive]\nicann_listen_socket = \"127.0.0.1:{http}\"\n\
         pubky_listen_socket = \"127.0.0.1:0\"\n[pkdns]\ndht = false\n[admin]\nenabled = false\n\
         [metrics]\nenabled = false\n[upnp]\nenabled = false\n[mdns]\nenabled = false\n\
         [dashboard]\nlisten_socket = \"127.0.0.1:{dash}\"\n[logging]\nlevel = \"info\"\n"
    );
    let mut node = Node::with_config(dir.path(), &dir.path().join("data"), &config, http);
    node.start();
    let user = support::random_key();
    node.signup(&user);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], dash).into();
    let send = |method: &str, path: &str, cookie: &str, form: &str| {
        support::send_raw(
            addr,
            format!(
                "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncookie: {cookie}\r\ncontent-type: \
                 application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{form}",
                form.len()
            )
            .as_bytes(),
            false,
        )
    };
    let claimed = send(
        "POST",
        "/claim",
        "pe_pre=t",
        &format!("pre=t&new={PASSWORD}&again={PASSWORD}"),
    );
    assert_eq!(claimed.status, 303, "{}", claimed.text());
    let session = claimed
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let page = send("GET", "/invites", &session, "").text();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(
        send(
            "POST",
            "/invites",
            &session,
            &format!("csrf={csrf}&quota_mb=")
        )
        .status,
        303
    );
    let pk = support::pk_of(&user).to_string();
    let disable = format!("csrf={csrf}&user={pk}&do=disable");
    assert_eq!(
        send("POST", "/people/state", &session, &disable).status,
        303
    );

    let activity = send("GET", "/activity", &session, "").text();
    assert!(
        activity.contains("the owner created an invitation"),
        "{activity}"
    );
    assert!(
        activity.contains("the owner changed an account user="),
        "{activity}"
    );
    assert!(activity.contains("disabled=true"), "{activity}");
    // Only warnings and errors: the info lines go.
    let warnings = send("GET", "/activity?level=warn", &session, "").text();
    assert!(
        !warnings.contains("the owner created an invitation"),
        "{}",
        warnings
    );
    node.kill();
}

/// A box that trusts a release key but has the DHT off cannot reach its channel: the
/// Updates card says so and offers no button, and a hand-made POST is answered with why.
#[test]
fn the_updates_card_says_when_the_box_cannot_look() {
    let s = Server::start(
        "[update]\nrelease_key = \"uaq313ktk6zmdes73frjybt6ht58pixkg8ys98o8fsikymk1qjmy\"\n",
    );
    let cookie = format!("pe_session={}", claim_with_configured_password(&s));
    let get = |path: &str| {
        let r = s.dashboard("GET", path).header("cookie", &cookie).send();
        assert_eq!(r.status, 200, "{path}");
        r.text()
    };
    let home = get("/");
    assert!(
        home.contains("Off: releases are found through the DHT, and pkdns.dht = false."),
        "{home}"
    );
    assert!(!home.contains("action=\"/updates/now\""), "{home}");
    let invites = get("/invites");
    let csrf = invites
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token on the invitations page");
    let r = s
        .dashboard("POST", "/updates/now")
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send();
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/?n=update-off"));
    assert!(get("/?n=update-off").contains("This box cannot look for updates"));
}
