//! Loading the config as a user would: the sample, layers, unknown keys, and each invalid
//! value's one-line reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::DEFAULT_TOML;
use super::{Config, Durability, Loaded, SignupMode};

fn load(text: &str) -> Result<Loaded, String> {
    Config::from_layers(&[("test.toml", text)])
}

#[test]
fn sample_is_valid() {
    let l = Config::from_layers(&[("sample", DEFAULT_TOML)]).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let c = l.config;
    assert_eq!(c.drive.icann_listen_socket.port(), 6286);
    assert_eq!(c.drive.pubky_listen_socket.port(), 6287);
    assert!(c.drive.icann_listen_socket.ip().is_loopback());
    assert_eq!(c.general.signup_mode, SignupMode::TokenRequired);
    assert_eq!(c.storage.durability, Durability::Strict);
    assert_eq!(c.storage.default_quota_bytes(), None);
}

#[test]
fn layers_override_and_unknown_keys_warn() {
    let l = load(
        "[general]\nsignup_mode = \"open\"\nbogus = 1\n[storage]\ndefault_quota_mb = 1\n[nope]\nx = 2\n",
    )
    .unwrap();
    assert_eq!(l.config.general.signup_mode, SignupMode::Open);
    assert_eq!(l.config.storage.default_quota_bytes(), Some(1 << 20));
    assert_eq!(l.config.storage.inline_max_bytes, 16384);
    assert_eq!(
        l.warnings,
        vec![
            "test.toml: unknown key `general.bogus` ignored".to_string(),
            "test.toml: unknown key `nope` ignored".to_string()
        ]
    );
}

#[test]
fn invalid_values_are_one_line_errors() {
    let e = load("[drive]\nicann_listen_socket = \"not an address\"\n").unwrap_err();
    assert!(e.contains("socket address"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = load("[limits]\nmax_connections = 0\n").unwrap_err();
    assert_eq!(e, "limits.max_connections must be greater than 0");
    let e = load("[general]\nsignup_mode = \"maybe\"\n").unwrap_err();
    assert!(e.contains("maybe") || e.contains("variant"), "{e}");
    let e = load("[limits\n").unwrap_err();
    assert!(e.starts_with("test.toml: line 1"), "{e}");
    let e = load("[logging]\nlevel = \"loud\"\n").unwrap_err();
    assert!(e.contains("logging.level"), "{e}");
    let e = load("[limits]\nmax_connections = -3\n").unwrap_err();
    assert!(!e.is_empty());
}

#[test]
fn discovery_settings_are_checked() {
    let ok = load(
        "[pkdns]\npublic_ip = \"192.0.2.4\"\nicann_domain = \"hs.example.org\"\ndht_bootstrap_nodes = [\"127.0.0.1:6881\", \"router.example:6881\"]\n[pkarr_relay]\nlisten_socket = \"127.0.0.1:15411\"\n",
    )
    .unwrap()
    .config;
    assert_eq!(ok.pkdns.public_ip, Some("192.0.2.4".parse().unwrap()));
    assert_eq!(ok.pkdns.icann_domain.as_deref(), Some("hs.example.org"));
    assert_eq!(
        ok.pkarr_relay.listen_socket,
        Some("127.0.0.1:15411".parse().unwrap())
    );
    let d = Config::defaults();
    assert!(d.pkdns.dht);
    assert_eq!(d.pkdns.public_ip, None);
    assert_eq!(d.pkdns.icann_domain.as_deref(), None);
    assert_eq!(d.pkarr_relay.listen_socket, None);
    for (text, key) in [
        ("[pkdns]\npublic_ip = \"1.2.3\"", "pkdns.public_ip"),
        ("[pkdns]\nicann_domain = \"a b\"", "pkdns.icann_domain"),
        (
            "[pkdns]\ndht_bootstrap_nodes = [\"nohost\"]",
            "pkdns.dht_bootstrap_nodes",
        ),
        (
            "[pkdns]\nrepublish_interval_ms = 0",
            "pkdns.republish_interval_ms",
        ),
        (
            "[pkarr_relay]\ncache_entries = 0",
            "pkarr_relay.cache_entries",
        ),
        (
            "[pkarr_relay]\nlisten_socket = \"x\"",
            "pkarr_relay.listen_socket",
        ),
    ] {
        let e = load(text).unwrap_err();
        assert!(e.starts_with(key), "{text}: {e}");
    }
}

#[test]
fn household_settings_are_checked() {
    let d = Config::defaults();
    assert!(d.upnp.enabled && d.mdns.enabled);
    assert!(!d.upnp.map_http_port);
    assert_eq!(d.upnp.lease, Duration::from_millis(3_600_000));
    use crate::config::MappingProtocol as P;
    assert_eq!(d.upnp.protocols, vec![P::Upnp, P::NatPmp, P::Pcp]);
    let pcp_first = load("[upnp]\nprotocols = [\"pcp\", \"upnp\"]\n").unwrap();
    assert_eq!(pcp_first.config.upnp.protocols, vec![P::Pcp, P::Upnp]);
    assert_eq!(d.upnp.ipv6, crate::config::Ipv6Mode::Pinhole);
    let open = load("[upnp]\nipv6 = \"open\"\n").unwrap();
    assert_eq!(open.config.upnp.ipv6, crate::config::Ipv6Mode::Open);
    assert!(d.mdns.skip_interfaces.iter().any(|s| s == "docker"));
    let off = load("[upnp]\nenabled = false\n[mdns]\nenabled = false\ninterfaces = [\"wlan0\"]\n")
        .unwrap()
        .config;
    assert!(!off.upnp.enabled && !off.mdns.enabled);
    assert_eq!(off.mdns.interfaces, vec!["wlan0".to_string()]);
    for (text, key) in [
        ("[upnp]\nlease_ms = 0", "upnp.lease_ms"),
        (
            "[upnp]\nretry_min_ms = 10\nretry_max_ms = 5",
            "upnp.retry_max_ms",
        ),
        ("[upnp]\ndescription = \"\"", "upnp.description"),
        ("[upnp]\nprotocols = []", "upnp.protocols is empty"),
        (
            "[upnp]\nprotocols = [\"natpmp\"]",
            "upnp.protocols: \"natpmp\" is not",
        ),
        (
            "[upnp]\nprotocols = [\"pcp\", \"pcp\"]",
            "upnp.protocols: \"pcp\" is listed twice",
        ),
        ("[mdns]\nskip_interfaces = [\"\"]", "mdns"),
        ("[upnp]\nipv6 = \"yes\"", "upnp.ipv6: \"yes\" is not"),
    ] {
        let e = load(text).unwrap_err();
        assert!(e.starts_with(key), "{text}: {e}");
    }
}

#[test]
fn data_dir_precedence() {
    let c = Config::defaults();
    assert_eq!(
        c.data_dir(Some(Path::new("/x"))).unwrap(),
        PathBuf::from("/x")
    );
    let c = load("[general]\ndata_dir = \"/var/lib/pubky-edge\"\n")
        .unwrap()
        .config;
    assert_eq!(
        c.data_dir(None).unwrap(),
        PathBuf::from("/var/lib/pubky-edge")
    );
}

#[test]
fn shares_and_stream_caps_fit_inside_the_connection_cap() {
    let c = load("").unwrap().config;
    assert_eq!(c.events.max_streams, 256);
    assert_eq!(c.events.max_streams_per_ip, 64);
    assert_eq!(c.limits.max_connections_per_ip, 128);
    assert!(c.drive.trusted_proxies.is_empty());
    // a smaller connection cap brings the stream cap down with it
    let c = load("[limits]\nmax_connections = 64\n").unwrap().config;
    assert_eq!((c.events.max_streams, c.events.max_streams_per_ip), (32, 8));
    assert_eq!(c.limits.max_connections_per_ip, 16);
    let e = load("[limits]\nmax_connections = 64\n[events]\nmax_streams = 40\n").unwrap_err();
    assert!(
        e.starts_with("events.max_streams must be between 1 and 32"),
        "{e}"
    );
    let e = load("[limits]\nmax_connections_per_ip = 600\n").unwrap_err();
    assert_eq!(
        e,
        "limits.max_connections_per_ip must be between 1 and 512, not 600"
    );
    let e = load("[drive]\ntrusted_proxies = [\"10.0.0.0/40\"]\n").unwrap_err();
    assert!(e.starts_with("drive.trusted_proxies:"), "{e}");
    let c = load("[limits]\nbody_read_timeout_ms = 2000\nmin_body_bytes_per_sec = 0\n")
        .unwrap()
        .config;
    assert_eq!(c.limits.body_pace.idle, Duration::from_secs(2));
    assert_eq!(c.limits.body_pace.min_rate, 0);
}

#[test]
fn memory_budget_is_a_ceiling_with_room_for_the_cache() {
    let c = load("").unwrap().config;
    assert_eq!(c.limits.memory_budget_bytes, Some(256 << 20));
    let c = load("[limits]\nmemory_budget_mb = 0\n").unwrap().config;
    assert_eq!(c.limits.memory_budget_bytes, None);
    let e = load("[limits]\nmemory_budget_mb = 16\n").unwrap_err();
    assert_eq!(
        e,
        "limits.memory_budget_mb must be 0 (no ceiling) or at least 32"
    );
    let e =
        load("[limits]\nmemory_budget_mb = 48\n[storage]\ncache_capacity_mb = 16\n").unwrap_err();
    assert!(
        e.starts_with("storage.cache_capacity_mb (16) must be at most a quarter of limits.memory_budget_mb (48)"),
        "{e}"
    );
    // A budget of 0 asks nothing of the cache.
    let c = load("[limits]\nmemory_budget_mb = 0\n[storage]\ncache_capacity_mb = 512\n")
        .unwrap()
        .config;
    assert_eq!(c.limits.memory_budget_bytes, None);
}

#[test]
fn every_board_keeps_streams_inside_its_connection_cap() {
    let boards = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards");
    for entry in std::fs::read_dir(boards).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::from_layers(&[("sample", DEFAULT_TOML), ("board", &text)])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .config;
        assert!(
            c.events.max_streams * 2 <= c.limits.max_connections,
            "{}",
            path.display()
        );
        assert!(c.limits.max_connections_per_ip <= c.limits.max_connections);
        // Every board has a memory ceiling (its own or the default's).
        assert!(c.limits.memory_budget_bytes.is_some(), "{}", path.display());
    }
}

/// A config.toml as the reference homeserver (0.17.1) writes it by default, with an
/// operator's password, a quota, a proxy-free identity and its logging.
const REFERENCE_TOML: &str = r#"
[general]
signup_mode = "token_required"
user_storage_quota_mb = 500
database_url = "postgres://localhost:5432/pubky_homeserver"

[drive]
pubky_listen_socket = "127.0.0.1:6287"
icann_listen_socket = "127.0.0.1:6286"
websites = false
icann_client_identity = { mode = "direct" }
pubky_client_identity = { mode = "direct" }

[[drive.rate_limits]]
path = "/signup_tokens/*"
method = "GET"
quota = "10r/m"
key = "ip"

[default_quotas]

[storage]
type = "file_system"

[admin]
enabled = true
listen_socket = "127.0.0.1:6288"
admin_password = "correct horse battery staple"

[metrics]
enabled = false
listen_socket = "127.0.0.1:6289"

[pkdns]
public_ip = "127.0.0.1"
icann_domain = "localhost"
user_keys_republisher_interval = 14400
dht_relay_nodes = ["https://pkarr.pubky.app", "https://pkarr.pubky.org"]

[logging]
level = "info"
module_levels = ["pubky_homeserver=debug", "tower_http=debug"]
"#;

#[test]
fn the_reference_config_file_is_understood() {
    let l = load(REFERENCE_TOML).unwrap();
    let c = &l.config;
    assert_eq!(c.admin.password, "correct horse battery staple");
    assert_eq!(c.storage.default_quota_bytes(), Some(500 << 20));
    assert!(!c.drive.websites);
    assert!(!c.metrics.enabled);
    assert_eq!(c.drive.rate_limits.len(), 1);
    assert_eq!(c.pkdns.icann_domain.as_deref(), Some("localhost"));
    assert_eq!(
        c.pkdns.user_keys_republish_interval,
        Duration::from_secs(14400)
    );
    assert_eq!(
        c.logging.filter(),
        "info,sled=warn,pubky_edge=debug,tower_http=debug"
    );
    // What cannot be kept and weakens nothing: dropped, each said once, nothing unknown.
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    assert!(
        l.warnings[0].contains("general.database_url ignored"),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings[1].contains("pkdns.dht_relay_nodes ignored"),
        "{:?}",
        l.warnings
    );
    // 0 is "unlimited" in the reference, which is our unset.
    let l = load("[general]\nuser_storage_quota_mb = 0\n").unwrap();
    assert_eq!(l.config.storage.default_quota_bytes(), None);
    // Our own key wins over the deprecated one, as in the reference.
    let both = "[general]\nuser_storage_quota_mb = 5\n[storage]\ndefault_quota_mb = 7\n";
    assert_eq!(
        load(both).unwrap().config.storage.default_quota_bytes(),
        Some(7 << 20)
    );
}

#[test]
fn reference_keys_we_cannot_honour_stop_start_up() {
    // PROXY protocol is honoured: the reference's setting is ours too.
    let l = load(
        "[drive]\nicann_client_identity = { mode = \"proxy_protocol\", trusted_proxies = [\"10.0.0.0/8\"] }\n",
    )
    .unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let super::ClientIdentity::ProxyProtocol(p) = &l.config.drive.icann_client_identity else {
        panic!("{:?}", l.config.drive.icann_client_identity);
    };
    assert!(p.trusts("10.1.2.3".parse().unwrap()) && !p.trusts("192.0.2.1".parse().unwrap()));
    assert_eq!(
        l.config.drive.pubky_client_identity,
        super::ClientIdentity::Direct
    );
    for (bad, why) in [
        ("{ mode = \"proxy_protocol\" }", "needs trusted_proxies"),
        (
            "{ mode = \"proxy_protocol\", trusted_proxies = [\"nope\"] }",
            "not an IP",
        ),
        (
            "{ mode = \"direct\", trusted_proxies = [\"10.0.0.1\"] }",
            "belongs to",
        ),
        ("{ mode = \"haproxy\" }", "must be"),
    ] {
        let e = load(&format!("[drive]\npubky_client_identity = {bad}\n")).unwrap_err();
        assert!(
            e.contains("drive.pubky_client_identity") && e.contains(why),
            "{e}"
        );
    }
    let e = load("[storage]\ntype = \"google_bucket\"\n").unwrap_err();
    assert!(e.contains("storage.type \"google_bucket\""), "{e}");
    let e = load("[admin]\nadmin_password = \"a\"\npassword = \"b\"\n").unwrap_err();
    assert!(e.contains("differ"), "{e}");
    // The reference's default password becomes ours, so the start-up rule that refuses
    // it off loopback sees it.
    let c = load("[admin]\nlisten_socket = \"0.0.0.0:6288\"\nadmin_password = \"admin\"\n")
        .unwrap()
        .config;
    let dir = tempfile::tempdir().unwrap();
    let e = crate::account::operator::server_password(&c.admin, dir.path()).unwrap_err();
    assert!(e.contains("is refused"), "{e}");
    let e = load("[logging]\nmodule_levels = [\"pubky_edge=loud\"]\n").unwrap_err();
    assert!(e.contains("logging.module_levels"), "{e}");
}

#[test]
fn tunnel_settings_are_checked() {
    let d = Config::defaults();
    assert_eq!(d.tunnel.via, None);
    assert_eq!(d.tunnel.listen_socket, None);
    assert_eq!(d.tunnel.max_bytes_per_second_per_box, 8192 * 1024);
    let relay = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
    let boxed = "6hw744f4c15roj5cqoakydk9k9piyzwyrk4gazp6qhwheh9piquy";
    let ok = load(&format!(
        "[tunnel]\nvia = \"{relay}@203.0.113.5:6289\"\nlisten_socket = \"0.0.0.0:6289\"\n\
         boxes = [{{ key = \"{boxed}\", port = 6290 }}]\nmax_kib_per_second_per_box = 0\n"
    ))
    .unwrap()
    .config;
    let via = ok.tunnel.via.unwrap();
    assert_eq!(via.to_string(), format!("{relay}@203.0.113.5:6289"));
    assert_eq!(ok.tunnel.boxes[0].port, 6290);
    assert_eq!(ok.tunnel.boxes[0].key.to_z32(), boxed);
    assert_eq!(ok.tunnel.max_bytes_per_second_per_box, 0);
    for (toml, says) in [
        (
            "via = \"203.0.113.5:6289\"",
            "is not \"<relay's public key>@",
        ),
        ("via = \"nokey@203.0.113.5:6289\"", "the relay's key"),
        (
            &format!("via = \"{relay}@relay.example:6289\""),
            "tunnel.via",
        ),
        (&format!("via = \"{relay}@0.0.0.0:6289\""), "tunnel.via"),
        ("listen_socket = \"everywhere\"", "tunnel.listen_socket"),
        (
            &format!("boxes = [{{ key = \"{boxed}\", port = 6290 }}]"),
            "tunnel.listen_socket is empty",
        ),
        (
            &format!(
                "listen_socket = \"0.0.0.0:6289\"\nboxes = [{{ key = \"{boxed}\", port = 6290 }}, \
                 {{ key = \"{relay}\", port = 6290 }}]"
            ),
            "clashes",
        ),
        (
            &format!(
                "listen_socket = \"0.0.0.0:6289\"\nboxes = [{{ key = \"{boxed}\", port = 0 }}]"
            ),
            "port other than 0",
        ),
        ("max_connections_per_box = 0", "at least 1"),
    ] {
        let e = load(&format!("[tunnel]\n{toml}\n")).unwrap_err();
        assert!(e.contains(says), "{toml}: {e}");
    }
}

#[test]
fn update_window_is_minutes_of_the_utc_day_and_may_wrap() {
    let u = load("").unwrap().config.update;
    assert!(u.automatic);
    assert_eq!(u.window, Some((180, 300)));
    assert_eq!(u.window_text().as_deref(), Some("03:00-05:00 UTC"));
    assert_eq!(u.health_deadline, Duration::from_secs(90));
    let day = 20_000 * 86_400;
    assert!(u.in_window(day + 3 * 3600));
    assert!(u.in_window(day + 5 * 3600 - 1));
    assert!(!u.in_window(day + 5 * 3600));
    assert_eq!(
        u.until_window(day + 5 * 3600),
        Duration::from_secs(22 * 3600)
    );
    assert_eq!(u.until_window(day + 4 * 3600), Duration::ZERO);
    let night = load("[update]\nwindow = \"23:30-01:00\"\n")
        .unwrap()
        .config
        .update;
    assert!(night.in_window(day + 23 * 3600 + 45 * 60));
    assert!(night.in_window(day + 1800));
    assert!(!night.in_window(day + 3600));
    assert_eq!(
        night.until_window(day + 3600),
        Duration::from_secs(22 * 3600 + 1800)
    );
    let any = load("[update]\nwindow = \"\"\n").unwrap().config.update;
    assert_eq!(any.window, None);
    assert!(any.in_window(day + 12 * 3600));
    for (bad, why) in [
        ("3-5", "\"HH:MM-HH:MM\" (UTC)"),
        ("24:00-01:00", "\"HH:MM-HH:MM\" (UTC)"),
        ("03:00-03:00", "an empty window"),
    ] {
        let e = load(&format!("[update]\nwindow = \"{bad}\"\n")).unwrap_err();
        assert!(e.contains(why) && e.contains("update.window"), "{bad}: {e}");
    }
    let e = load("[update]\nhealth_deadline_ms = 0\n").unwrap_err();
    assert!(e.contains("update.health_deadline_ms"), "{e}");
}
