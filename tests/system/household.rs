//! Household networking against real peers in network namespaces these tests create:
//!
//! ```text
//!   WAN ns (11.0.0.2) ── router ns: wan 11.0.0.1 │ br0 192.168.77.1, miniupnpd, nftables NAT
//!                                                 ├── LAN ns  192.168.77.10: pubky-edge, DHT testnet
//!                                                 └── LAN2 ns 192.168.77.11: mDNS browser, "other host"
//! ```
//!
//! The IPv6 test adds a global prefix: the router is fe80::1 and 2001:db8:1::1 on the LAN
//! and 2001:db8:2::1 towards the WAN namespace (2001:db8:2::2); the device is 2001:db8:1::10.
//!
//! The real `pubky-edge` binary runs inside the LAN namespace (`ip netns exec`); test code
//! that must act from a namespace runs on a thread that entered it with `setns`.
//!
//! Needs root (namespaces), `ip`, and for the UPnP tests Debian's `miniupnpd` (nftables
//! backend) and `nft`. Where those are missing every test prints a loud SKIPPED line and
//! returns, unless `PUBKY_EDGE_REQUIRE_NETNS=1` (set by `.ci/household`), which turns the
//! skip into a failure. Run: `sudo cargo test --test household -- --nocapture`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pubky_edge::announce::dht::local_testnet;
use pubky_edge::announce::mapping::{NatKind, Protocol};
use pubky_edge::announce::packet::{announced_ipv6, direct_endpoint};
use pubky_edge::announce::pinhole::PinholeState;
use pubky_edge::announce::upnp::UpnpState;
use pubky_edge::announce::{DhtClient, DhtSettings};
use pubky_edge::pubkey::PublicKey;

/// Upper bound on every wait, so a bug fails the test instead of hanging it.
const SAFETY: Duration = Duration::from_secs(30);
const ROUTER_WAN: &str = "11.0.0.1";
const LAN_IP: &str = "192.168.77.10";
const LAN_IP6: &str = "2001:db8:1::10";

fn skip(why: &str) -> bool {
    if std::env::var("PUBKY_EDGE_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("household test cannot run: {why}");
    }
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests, and a
    // skip must be seen.
    let banner = "*".repeat(72);
    let _ = writeln!(
        std::io::stderr(),
        "\n{banner}\nSKIPPED household test: {why}\n{banner}\n"
    );
    true
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn which(bin: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(bin).exists())
}

/// The four namespaces; deleted (and the daemons in them stopped) on drop.
struct Net {
    prefix: String,
    /// The router's daemons (two when one protocol is refused and another allowed).
    miniupnpd: Vec<Child>,
    rules_loaded: bool,
    router_started: Instant,
    /// The device's `drive.pubky_listen_socket` ("[::]:6287" once the LAN has IPv6).
    pubky_listen: &'static str,
    tmp: tempfile::TempDir,
}

impl Net {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Builds the topology, or says why it cannot (the caller skips).
    fn create(tag: &str, with_router: bool) -> Result<Net, String> {
        if !which("ip") {
            return Err("`ip` (iproute2) is not installed".into());
        }
        if with_router && !(which("miniupnpd") && which("nft")) {
            return Err("miniupnpd or nft is missing (apt-get install miniupnpd miniupnpd-nftables nftables)".into());
        }
        let net = Net {
            prefix: format!("pe{}{tag}", std::process::id() % 100_000),
            miniupnpd: Vec::new(),
            rules_loaded: false,
            router_started: Instant::now(),
            pubky_listen: "0.0.0.0:6287",
            tmp: tempfile::tempdir().map_err(|e| e.to_string())?,
        };
        sh(&["ip", "netns", "add", &net.ns("rt")])
            .map_err(|e| format!("cannot create network namespaces ({e})"))?;
        net.build().map_err(|e| format!("topology: {e}"))?;
        Ok(net)
    }

    fn build(&self) -> Result<(), String> {
        let (rt, wan, lan, lan2) = (
            self.ns("rt"),
            self.ns("wan"),
            self.ns("lan"),
            self.ns("lan2"),
        );
        for n in [&wan, &lan, &lan2] {
            sh(&["ip", "netns", "add", n])?;
        }
        for n in [&rt, &wan, &lan, &lan2] {
            sh(&["ip", "-n", n, "link", "set", "lo", "up"])?;
        }
        sh(&[
            "ip", "link", "add", "w0", "netns", &wan, "type", "veth", "peer", "name", "wan",
            "netns", &rt,
        ])?;
        sh(&["ip", "-n", &rt, "link", "add", "br0", "type", "bridge"])?;
        for (n, port) in [(&lan, "p1"), (&lan2, "p2")] {
            sh(&[
                "ip", "link", "add", "eth0", "netns", n, "type", "veth", "peer", "name", port,
                "netns", &rt,
            ])?;
            sh(&["ip", "-n", &rt, "link", "set", port, "master", "br0"])?;
            sh(&["ip", "-n", &rt, "link", "set", port, "up"])?;
        }
        sh(&[
            "ip",
            "-n",
            &rt,
            "addr",
            "add",
            "192.168.77.1/24",
            "dev",
            "br0",
        ])?;
        sh(&[
            "ip",
            "-n",
            &rt,
            "addr",
            "add",
            &format!("{ROUTER_WAN}/24"),
            "dev",
            "wan",
        ])?;
        sh(&["ip", "-n", &rt, "link", "set", "br0", "up"])?;
        sh(&["ip", "-n", &rt, "link", "set", "wan", "up"])?;
        sh(&["ip", "-n", &wan, "addr", "add", "11.0.0.2/24", "dev", "w0"])?;
        sh(&["ip", "-n", &wan, "link", "set", "w0", "up"])?;
        for (n, ip) in [
            (&lan, format!("{LAN_IP}/24")),
            (&lan2, "192.168.77.11/24".into()),
        ] {
            sh(&["ip", "-n", n, "addr", "add", &ip, "dev", "eth0"])?;
            sh(&["ip", "-n", n, "link", "set", "eth0", "up"])?;
            sh(&[
                "ip",
                "-n",
                n,
                "route",
                "add",
                "default",
                "via",
                "192.168.77.1",
            ])?;
        }
        sysctl(&rt, "net.ipv4.ip_forward=1")
    }

    /// Gives the LAN a global IPv6 prefix, as an ISP's delegation does: the router is
    /// fe80::1 (link-local, the next hop router advertisements name) and 2001:db8:1::1 on
    /// the LAN, 2001:db8:2::1 towards the WAN namespace (2001:db8:2::2); the device is
    /// 2001:db8:1::10. The router forwards IPv6 without NAT, and its firewall (the same
    /// `forward` chain) drops what comes in unless miniupnpd opened a pinhole.
    fn add_ipv6(&mut self) -> Result<(), String> {
        let (rt, wan, lan) = (self.ns("rt"), self.ns("wan"), self.ns("lan"));
        let add = |ns: &str, addr: &str, dev: &str| {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev, "nodad"])
        };
        add(&rt, "fe80::1/64", "br0")?;
        add(&rt, "2001:db8:1::1/64", "br0")?;
        add(&rt, "2001:db8:2::1/64", "wan")?;
        add(&wan, "2001:db8:2::2/64", "w0")?;
        add(&lan, &format!("{LAN_IP6}/64"), "eth0")?;
        sh(&[
            "ip",
            "-n",
            &wan,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:2::1",
        ])?;
        sh(&[
            "ip", "-n", &lan, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
        ])?;
        sysctl(&rt, "net.ipv6.conf.all.forwarding=1")?;
        self.pubky_listen = "[::]:6287";
        Ok(())
    }

    /// The router's pinholes: the IPv6 rules miniupnpd put in its filter chain, each naming
    /// its address in hex (see [`hex6`]).
    fn pinholes(&self) -> String {
        // miniupnpd matches the raw header: 128 bits at bit 192 is the IPv6 destination.
        self.chain_lines("miniupnpd", "@nh,192,128")
    }

    /// The lines of the router's nftables chain `chain` that contain `mark`, trimmed.
    fn chain_lines(&self, chain: &str, mark: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns("rt"), "nft", "list", "chain"])
            .args(["inet", "filter", chain])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(mark))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Starts miniupnpd on the router, speaking UPnP IGD only, with the nftables chains it
    /// fills.
    fn start_router(&mut self) -> Result<(), String> {
        self.start_router_with("enable_natpmp=no\nenable_upnp=yes\nsystem_uptime=yes\n")
    }

    /// Starts a miniupnpd with `protocols` (its `enable_*` and `system_uptime` lines, and
    /// any permission rules that must come before the default allow-the-LAN one).
    fn start_router_with(&mut self, protocols: &str) -> Result<(), String> {
        if !self.rules_loaded {
            self.load_rules()?;
        }
        let dir = self.tmp.path();
        let rt = self.ns("rt");
        let n = self.miniupnpd.len();
        let conf = dir.join(format!("miniupnpd-{n}.conf"));
        std::fs::write(
            &conf,
            format!(
                "ext_ifname=wan\nlistening_ip=br0\n{protocols}secure_mode=yes\n\
                 uuid=3e1f8b3c-3f4e-4e3a-9d41-6a1c0b2f7e5{n}\n\
                 allow 1024-65535 192.168.77.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("miniupnpd.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &rt, "miniupnpd", "-d", "-f"])
            .arg(&conf)
            .arg("-P")
            .arg(dir.join(format!("miniupnpd-{n}.pid")))
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("miniupnpd: {e}"))?;
        self.miniupnpd.push(child);
        self.router_started = Instant::now();
        Ok(())
    }

    /// The router's firewall and NAT, with the chains miniupnpd fills.
    fn load_rules(&mut self) -> Result<(), String> {
        let rules = self.tmp.path().join("rules.nft");
        std::fs::write(
            &rules,
            "table inet filter {\n\
             chain forward { type filter hook forward priority 0; policy drop; ct state established,related accept; iifname \"br0\" accept; jump miniupnpd; }\n\
             chain miniupnpd { }\n\
             chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }\n\
             chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; oifname \"wan\" masquerade; }\n\
             chain prerouting_miniupnpd { }\n\
             chain postrouting_miniupnpd { }\n}\n",
        )
        .map_err(|e| e.to_string())?;
        let rt = self.ns("rt");
        sh(&[
            "ip",
            "netns",
            "exec",
            &rt,
            "nft",
            "-f",
            rules.to_str().unwrap(),
        ])
        .map_err(|e| format!("nftables in the router namespace: {e}"))?;
        self.rules_loaded = true;
        Ok(())
    }

    /// Puts the provider's NAT between the router and the internet: the WAN namespace
    /// masquerades the router's 11.0.0.1 to 12.0.0.1 towards an "internet" namespace
    /// (12.0.0.2) — a double NAT the router cannot see, since its own WAN address looks
    /// public.
    fn add_provider_nat(&self) -> Result<(), String> {
        let (rt, wan, inet) = (self.ns("rt"), self.ns("wan"), self.ns("inet"));
        sh(&["ip", "netns", "add", &inet])?;
        sh(&["ip", "-n", &inet, "link", "set", "lo", "up"])?;
        sh(&[
            "ip", "link", "add", "i0", "netns", &inet, "type", "veth", "peer", "name", "up0",
            "netns", &wan,
        ])?;
        sh(&["ip", "-n", &wan, "addr", "add", "12.0.0.1/24", "dev", "up0"])?;
        sh(&["ip", "-n", &wan, "link", "set", "up0", "up"])?;
        sh(&["ip", "-n", &inet, "addr", "add", "12.0.0.2/24", "dev", "i0"])?;
        sh(&["ip", "-n", &inet, "link", "set", "i0", "up"])?;
        sh(&[
            "ip", "-n", &rt, "route", "add", "default", "via", "11.0.0.2",
        ])?;
        sysctl(&wan, "net.ipv4.ip_forward=1")?;
        let rules = self.tmp.path().join("provider.nft");
        std::fs::write(
            &rules,
            "table ip provider {\n chain post { type nat hook postrouting priority 100; oifname \"up0\" masquerade; }\n}\n",
        )
        .map_err(|e| e.to_string())?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &wan,
            "nft",
            "-f",
            rules.to_str().unwrap(),
        ])
    }

    /// The router reboots: the daemon dies, the forwarding table is empty again, and the
    /// daemon starts afresh (with `system_uptime=no` its epoch starts again at 0).
    fn reboot_router(&mut self, protocols: &str) {
        for mut c in self.miniupnpd.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let rt = self.ns("rt");
        for chain in ["miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"] {
            sh(&[
                "ip", "netns", "exec", &rt, "nft", "flush", "chain", "inet", "filter", chain,
            ])
            .unwrap();
        }
        self.start_router_with(protocols).unwrap();
    }

    /// Reboots the NAT-PMP/PCP router while `device` is paused, runs `while_down` on the
    /// empty router, and resumes the device once the router listens again: then its epoch,
    /// not its silence, tells the device. The epoch counts whole seconds and a restart
    /// within 2 s of the last reading passes for clock drift, so the old router is first
    /// kept up for 5 s (a real one takes far longer to boot).
    fn reboot_router_under(&mut self, device: &Device, while_down: impl FnOnce(&Net)) {
        let old_router_up = Duration::from_secs(5);
        if let Some(wait) = old_router_up.checked_sub(self.router_started.elapsed()) {
            std::thread::sleep(wait);
        }
        let pid = device.child.id().to_string();
        sh(&["kill", "-STOP", &pid]).unwrap();
        self.reboot_router(NATPMP_AND_PCP);
        while_down(self);
        let rt = self.ns("rt");
        eventually("the rebooted router to listen for PCP", || {
            let out = Command::new("ip")
                .args(["netns", "exec", &rt, "ss", "-Hlun", "sport = :5351"])
                .output()
                .ok()?;
            (!out.stdout.is_empty()).then_some(())
        });
        sh(&["kill", "-CONT", &pid]).unwrap();
    }

    /// The router's port forwards as nftables shows them (what any mapping protocol made).
    fn forwards(&self) -> String {
        self.chain_lines("prerouting_miniupnpd", "dnat")
    }

    /// Behind the provider's NAT (`add_provider_nat`), the router's WAN address becomes a
    /// carrier-grade one: 100.64.0.1, the provider's side 100.64.0.2.
    fn give_router_a_cgnat_address(&self) -> Result<(), String> {
        let (rt, wan) = (self.ns("rt"), self.ns("wan"));
        sh(&[
            "ip",
            "-n",
            &wan,
            "addr",
            "add",
            "100.64.0.2/24",
            "dev",
            "w0",
        ])?;
        self.set_router_wan(ROUTER_WAN, "100.64.0.1");
        sh(&[
            "ip",
            "-n",
            &rt,
            "route",
            "replace",
            "default",
            "via",
            "100.64.0.2",
        ])
    }

    /// The ISP's DHCP hands the router a new WAN address (old one gone first, as on a
    /// real lease change).
    fn set_router_wan(&self, old: &str, new: &str) {
        let rt = self.ns("rt");
        let (old, new) = (format!("{old}/24"), format!("{new}/24"));
        sh(&["ip", "-n", &rt, "addr", "del", &old, "dev", "wan"]).unwrap();
        sh(&["ip", "-n", &rt, "addr", "add", &new, "dev", "wan"]).unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the device and the router said, for the failure report.
            for log in ["device.log", "relay.log", "miniupnpd.log"] {
                let text = std::fs::read_to_string(self.tmp.path().join(log)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("---- last lines of {log}");
                for l in &lines[lines.len().saturating_sub(60)..] {
                    eprintln!("{l}");
                }
            }
        }
        for mut c in self.miniupnpd.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for role in ["lan", "lan2", "wan", "rt", "inet"] {
            let _ = sh(&["ip", "netns", "del", &self.ns(role)]);
        }
    }
}

/// Sets a kernel `setting` (`key=value`) inside namespace `ns`.
fn sysctl(ns: &str, setting: &str) -> Result<(), String> {
    sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", setting])
}

/// Runs `f` on a thread inside network namespace `ns` (threads it starts stay there).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// Polls `f` until it returns `Some` (each probe is a real query; no fixed sleeps decide).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SAFETY;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The gateway's mapping table, read over UPnP from `ns`.
fn gateway_mappings(ns: &str) -> Vec<(u16, String, u16, u32)> {
    in_ns(ns, || {
        let gw = igd_next::search_gateway(igd_next::SearchOptions {
            timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        })
        .expect("the router answers UPnP discovery");
        let mut out = Vec::new();
        for i in 0.. {
            match gw.get_generic_port_mapping_entry(i) {
                Ok(e) => out.push((
                    e.external_port,
                    e.internal_client,
                    e.internal_port,
                    e.lease_duration,
                )),
                Err(_) => break,
            }
        }
        out
    })
}

/// A PubkyTLS GET of `/` from the WAN namespace to the router's external `port`, checking
/// the device's key: what a client on the internet does.
fn wan_tls_get(net: &Net, key: &PublicKey, port: u16) -> String {
    let addr: SocketAddr = format!("{ROUTER_WAN}:{port}").parse().unwrap();
    wan_tls_get_at(net, key, addr)
}

/// An IPv6 address as miniupnpd's nftables rules write it (`0x2001…`).
fn hex6(ip: &str) -> String {
    format!(
        "{:#034x}",
        ip.parse::<std::net::Ipv6Addr>().unwrap().to_bits()
    )
}

/// A PubkyTLS GET of `/` from the WAN namespace to `addr`.
fn wan_tls_get_at(net: &Net, key: &PublicKey, addr: SocketAddr) -> String {
    let key = *key;
    in_ns(&net.ns("wan"), move || {
        let name = rustls::pki_types::ServerName::try_from(key.to_z32()).unwrap();
        let conn =
            rustls::ClientConnection::new(pubky_edge::tls::client_config(&key), name).unwrap();
        let tcp = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(t) => t,
            Err(e) => return format!("connect: {e}"),
        };
        tcp.set_read_timeout(Some(SAFETY)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        if let Err(e) = tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") {
            return format!("tls: {e}");
        }
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// The pubky-edge binary running in the LAN namespace.
struct Device {
    child: Child,
    config: PathBuf,
    data: PathBuf,
    ns: String,
    key: PublicKey,
}

impl Device {
    fn start(net: &Net, extra: &str) -> Device {
        Device::start_as(net, "lan", "device", extra)
    }

    /// Another box (a relay): `name` for its files, in namespace `role`.
    fn start_as(net: &Net, role: &str, name: &str, extra: &str) -> Device {
        let data = match name {
            "device" => net.tmp.path().join("data"),
            other => net.tmp.path().join(format!("{other}-data")),
        };
        let config = net.tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[general]\nsignup_mode = \"open\"\n[drive]\nicann_listen_socket = \"0.0.0.0:6286\"\n\
                 pubky_listen_socket = \"{}\"\n[logging]\nlevel = \"debug\"\n{extra}",
                net.pubky_listen
            ),
        )
        .unwrap();
        let info = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
            .arg("-c")
            .arg(&config)
            .arg("-d")
            .arg(&data)
            .arg("info")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&info.stdout).into_owned();
        let z = text
            .lines()
            .find_map(|l| l.strip_prefix("public key:"))
            .unwrap_or_else(|| {
                panic!(
                    "no key in `info`: {text}{}",
                    String::from_utf8_lossy(&info.stderr)
                )
            })
            .trim();
        let key = PublicKey::parse_z32(z).unwrap();
        let log = std::fs::File::create(net.tmp.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.ns(role),
                env!("CARGO_BIN_EXE_pubky-edge"),
            ])
            .arg("-c")
            .arg(&config)
            .arg("-d")
            .arg(&data)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Device {
            child,
            config,
            data,
            ns: net.ns(role),
            key,
        }
    }

    fn upnp(&self) -> Option<UpnpState> {
        UpnpState::load(&self.data)
    }

    /// Waits for the port mapper to report its mappings made.
    fn mapped(&self) -> UpnpState {
        eventually("a mapping", || {
            let st = self.upnp()?;
            (st.state == "mapped").then_some(st)
        })
    }

    /// `pubky-edge status`, run in the LAN namespace like on the device.
    fn status(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_pubky-edge")])
            .arg("-c")
            .arg(&self.config)
            .arg("-d")
            .arg(&self.data)
            .arg("status")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(mut self) {
        sh(&["kill", "-TERM", &self.child.id().to_string()]).unwrap();
        let deadline = Instant::now() + SAFETY;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "pubky-edge exited with {st}");
                return;
            }
            assert!(Instant::now() < deadline, "pubky-edge did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Mainline testnet inside the LAN namespace, and a client there that reads records.
fn lan_dht(ns: &str) -> (Vec<mainline::async_dht::AsyncDht>, String, DhtClient) {
    in_ns(ns, || {
        let (nodes, bootstrap) = local_testnet(0, 3).unwrap();
        let client = DhtClient::start(&DhtSettings {
            bootstrap: bootstrap.clone(),
            request_timeout: Duration::from_millis(500),
            port: None,
        })
        .unwrap();
        (nodes, bootstrap[0].clone(), client)
    })
}

/// A Mainline testnet bound to `ip` inside namespace `ns` (on the internet side, so the
/// device's DHT traffic crosses the NATs), and a client there that reads records.
fn dht_at(ns: &str, ip: &str) -> (Vec<mainline::async_dht::AsyncDht>, String, DhtClient) {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    in_ns(ns, move || {
        let first = mainline::Dht::builder()
            .server_mode()
            .no_bootstrap()
            .bind_address(ip)
            .port(0)
            .build()
            .unwrap()
            .as_async();
        let bootstrap = smol::block_on(first.info()).local_addr().to_string();
        let mut nodes = vec![first];
        for _ in 0..2 {
            nodes.push(
                mainline::Dht::builder()
                    .server_mode()
                    .bootstrap(std::slice::from_ref(&bootstrap))
                    .bind_address(ip)
                    .port(0)
                    .build()
                    .unwrap()
                    .as_async(),
            );
        }
        let client = DhtClient::start(&DhtSettings {
            bootstrap: vec![bootstrap.clone()],
            request_timeout: Duration::from_millis(500),
            port: Some(0),
        })
        .unwrap();
        (nodes, bootstrap, client)
    })
}

fn record(dht: &DhtClient, key: &PublicKey) -> Option<(Option<IpAddr>, Option<u16>)> {
    smol::block_on(dht.get(key)).map(|p| direct_endpoint(&p))
}

fn dht_toml(bootstrap: &str) -> String {
    format!(
        "[pkdns]\ndht = true\ndht_bootstrap_nodes = [\"{bootstrap}\"]\ndht_request_timeout_ms = 500\n\
         publish_retry_min_ms = 200\nuser_keys_republish_interval_ms = 0\n"
    )
}

/// The DHT at `bootstrap`, the port mapper at test speed, mDNS off.
fn fast_mapping(bootstrap: &str) -> String {
    format!(
        "{}{FAST_UPNP}[mdns]\nenabled = false\n",
        dht_toml(bootstrap)
    )
}

const FAST_UPNP: &str =
    "[upnp]\nlease_ms = 4000\ncheck_interval_ms = 500\ndiscovery_timeout_ms = 2000\n\
                         retry_min_ms = 300\nretry_max_ms = 2000\n";

#[test]
fn upnp_maps_forwards_renews_follows_the_address_and_cleans_up() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("a", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    net.start_router().unwrap();
    let (_nodes, bootstrap, dht) = lan_dht(&net.ns("lan"));
    let device = Device::start(
        &net,
        &format!(
            "{}{FAST_UPNP}map_http_port = true\n[mdns]\nenabled = false\n",
            dht_toml(&bootstrap)
        ),
    );
    let lan2 = net.ns("lan2");

    // Both listeners are mapped at the gateway, to the device's LAN address.
    let mappings = eventually("both mappings at the gateway", || {
        let m = gateway_mappings(&lan2);
        (m.len() == 2).then_some(m)
    });
    for port in [6286, 6287] {
        assert!(
            mappings.iter().any(|(ext, ip, int, lease)| *ext == port
                && ip == LAN_IP
                && *int == port
                && *lease <= 4),
            "{mappings:?}"
        );
    }

    // From the internet side, both ports reach the device through the router.
    let wan_http = in_ns(&net.ns("wan"), || {
        let mut s =
            TcpStream::connect_timeout(&format!("{ROUTER_WAN}:6286").parse().unwrap(), SAFETY)
                .unwrap();
        s.set_read_timeout(Some(SAFETY)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    assert!(wan_http.starts_with("HTTP/1.1 200"), "{wan_http}");
    let wan_tls = wan_tls_get(&net, &device.key, 6287);
    assert!(
        wan_tls.starts_with("HTTP/1.1 200"),
        "PubkyTLS through the mapping: {wan_tls}"
    );

    // The record announces the router's external address and the mapped port.
    eventually("the record to announce the external address", || {
        (record(&dht, &device.key) == Some((Some(ROUTER_WAN.parse().unwrap()), Some(6287))))
            .then_some(())
    });

    // Leases of 4 s are renewed at half-life: after two renewals (more than one lease
    // later) the gateway still holds the mappings.
    eventually("two lease renewals", || {
        let st = device.upnp()?;
        st.mappings.iter().all(|m| m.renewals >= 2).then_some(())
    });
    assert_eq!(
        gateway_mappings(&lan2).len(),
        2,
        "mappings survived past their first lease"
    );

    // The ISP hands the router a new address: the record follows.
    net.set_router_wan(ROUTER_WAN, "11.0.0.9");
    eventually("the record to follow the new external address", || {
        (record(&dht, &device.key) == Some((Some("11.0.0.9".parse().unwrap()), Some(6287))))
            .then_some(())
    });

    // The LAN address was never published: the record waited for the router's answer.
    let log = std::fs::read_to_string(net.tmp.path().join("device.log")).unwrap();
    let published: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("published the homeserver record"))
        .collect();
    assert!(!published.is_empty(), "{log}");
    assert!(
        published.iter().all(|l| l.contains("ip=11.0.0.")),
        "{published:#?}"
    );

    let status = device.status();
    println!("{status}");
    assert!(
        status.contains("external ip:   11.0.0.9 (from the router)"),
        "{status}"
    );
    assert!(status.contains("cgnat:         no"), "{status}");
    // The first rung answered: nothing else was asked.
    assert!(
        status.contains("router:        mapped via UPnP IGD at http://192.168.77.1:"),
        "{status}"
    );
    assert_eq!(status.matches("tried:").count(), 1, "{status}");
    assert!(
        status.contains("mapping:       pubky_tls external port 6287 -> 192.168.77.10:6287"),
        "{status}"
    );
    assert!(
        status.contains("record:        resolves to 11.0.0.9:6287, the current address"),
        "{status}"
    );

    // A clean stop removes both mappings.
    device.stop();
    assert!(
        gateway_mappings(&lan2).is_empty(),
        "mappings left at the gateway"
    );
}

#[test]
fn a_port_held_by_another_host_moves_and_the_record_says_so_and_cgnat_is_reported() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("b", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    net.start_router().unwrap();
    // Another device on the LAN already holds external port 6287.
    in_ns(&net.ns("lan2"), || {
        let gw = eventually("the router", || {
            igd_next::search_gateway(igd_next::SearchOptions {
                timeout: Some(Duration::from_secs(2)),
                ..Default::default()
            })
            .ok()
        });
        gw.add_port(
            igd_next::PortMappingProtocol::TCP,
            6287,
            "192.168.77.11:6287".parse().unwrap(),
            0,
            "other host",
        )
        .unwrap();
    });
    let (_nodes, bootstrap, dht) = lan_dht(&net.ns("lan"));
    let device = Device::start(
        &net,
        // A long lease: a mapping that comes back below was not merely renewed.
        &format!(
            "{}{}[mdns]\nenabled = false\n",
            dht_toml(&bootstrap),
            FAST_UPNP.replace("lease_ms = 4000", "lease_ms = 600000")
        ),
    );
    eventually("the record to announce the alternative port", || {
        (record(&dht, &device.key) == Some((Some(ROUTER_WAN.parse().unwrap()), Some(6288))))
            .then_some(())
    });
    let m = gateway_mappings(&net.ns("lan2"));
    assert!(
        m.iter()
            .any(|(e, ip, i, _)| *e == 6288 && ip == LAN_IP && *i == 6287),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|(e, ip, _, _)| *e == 6287 && ip == "192.168.77.11"),
        "{m:?}"
    );

    // The router forgets the mapping (as after a reboot): it is made again long before
    // the lease's half-life.
    in_ns(&net.ns("lan"), || {
        let gw = igd_next::search_gateway(igd_next::SearchOptions {
            timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        })
        .unwrap();
        gw.remove_port(igd_next::PortMappingProtocol::TCP, 6288)
            .unwrap();
    });
    eventually("the lost mapping to be made again", || {
        let m = gateway_mappings(&net.ns("lan2"));
        m.iter()
            .any(|(e, ip, _, lease)| *e == 6288 && ip == LAN_IP && *lease > 500)
            .then_some(())
    });
    let log = std::fs::read_to_string(net.tmp.path().join("device.log")).unwrap();
    assert!(log.contains("the router lost the mapping"), "{log}");

    // The router's own WAN address becomes a carrier-grade NAT one.
    net.set_router_wan(ROUTER_WAN, "100.64.0.1");
    let st = eventually("the CGNAT report", || {
        let st = device.upnp()?;
        (st.nat != Some(NatKind::Public)).then_some(st)
    });
    println!("{st:?}");
    let status = device.status();
    println!("{status}");
    assert!(status.contains("cgnat:         YES"), "{status}");
    device.stop();
    let m = gateway_mappings(&net.ns("lan2"));
    assert_eq!(m.len(), 1, "only the other host's mapping is left: {m:?}");
}

/// miniupnpd with UPnP off: it answers NAT-PMP and PCP (both on port 5351), and its epoch
/// counts from its own start, as a router's does from its boot.
const NATPMP_AND_PCP: &str =
    "enable_natpmp=yes\nenable_upnp=no\nsystem_uptime=no\nmin_lifetime=1\n";

fn ladder(st: &UpnpState) -> Vec<(Protocol, bool)> {
    st.ladder.iter().map(|r| (r.protocol, r.answered)).collect()
}

#[test]
fn nat_pmp_takes_over_when_upnp_is_off_renews_and_cleans_up() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("d", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    net.start_router_with(NATPMP_AND_PCP).unwrap();
    // The DHT on the internet side: its nodes see the device come from the router's address.
    let (_nodes, bootstrap, dht) = dht_at(&net.ns("wan"), "11.0.0.2");
    let device = Device::start(&net, &fast_mapping(&bootstrap));

    // UPnP finds nobody; NAT-PMP, the next rung, maps the PubkyTLS port.
    let st = device.mapped();
    assert_eq!(st.protocol, Some(Protocol::NatPmp), "{st:?}");
    assert_eq!(
        ladder(&st),
        vec![(Protocol::Upnp, false), (Protocol::NatPmp, true)]
    );
    let fwd = net.forwards();
    assert!(
        fwd.contains("dport 6287 dnat ip to 192.168.77.10:6287"),
        "{fwd}"
    );
    let wan_tls = wan_tls_get(&net, &device.key, 6287);
    assert!(
        wan_tls.starts_with("HTTP/1.1 200"),
        "through NAT-PMP: {wan_tls}"
    );
    eventually("the record to announce the external address", || {
        (record(&dht, &device.key) == Some((Some(ROUTER_WAN.parse().unwrap()), Some(6287))))
            .then_some(())
    });

    // The router granted the 4 s asked for; renewals at half of it keep the forward.
    eventually("two lease renewals", || {
        let st = device.upnp()?;
        st.mappings
            .iter()
            .all(|m| m.renewals >= 2 && m.lease_secs == 4)
            .then_some(())
    });
    assert!(net.forwards().contains("192.168.77.10:6287"));

    // The DHT's nodes saw the publish come from the router's external address.
    eventually("the DHT's view of the address", || {
        let p = pubky_edge::announce::PublishStatus::load(&device.data)?;
        (p.dht_seen_ip.as_deref() == Some(ROUTER_WAN)).then_some(())
    });
    let status = device.status();
    assert!(
        status.contains("dht view:      nodes see 11.0.0.1")
            && status.contains("(agrees with the router)"),
        "{status}"
    );

    println!("{status}");
    for line in [
        "router:        mapped via NAT-PMP at 192.168.77.1:5351",
        "tried:         UPnP IGD, ",
        "tried:         NAT-PMP, ",
        "mapping:       pubky_tls external port 6287 -> 192.168.77.10:6287 (lease 4 s",
        "external ip:   11.0.0.1 (from the router)",
        "cgnat:         no",
    ] {
        assert!(status.contains(line), "{line}: {status}");
    }

    // The ISP hands the router a new address: NAT-PMP's answer carries it, and the
    // publisher signs the record for it. (Whether the put lands is the UPnP test's to show,
    // with its DHT on the LAN: through the router, this topology's DHT puts time out for
    // a while after the change.)
    net.set_router_wan(ROUTER_WAN, "11.0.0.9");
    eventually("the record to be published for the new address", || {
        let p = pubky_edge::announce::PublishStatus::load(&device.data)?;
        let st = device.upnp()?;
        (st.external_ip.as_deref() == Some("11.0.0.9")
            && p.published_ip.as_deref() == Some("11.0.0.9"))
        .then_some(())
    });

    device.stop();
    assert_eq!(net.forwards(), "", "the forward was left at the router");
}

#[test]
fn a_protocol_that_refuses_the_mapping_is_passed_over_for_the_next() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("g", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    // UPnP answers but refuses every mapping (its permission rules deny all); NAT-PMP,
    // in a second daemon, maps.
    net.start_router_with(
        "enable_natpmp=no\nenable_upnp=yes\nsystem_uptime=yes\ndeny 0-65535 0.0.0.0/0 0-65535\n",
    )
    .unwrap();
    net.start_router_with(NATPMP_AND_PCP).unwrap();
    let (_nodes, bootstrap, _dht) = lan_dht(&net.ns("lan"));
    let device = Device::start(&net, &fast_mapping(&bootstrap));
    let st = device.mapped();
    assert_eq!(st.protocol, Some(Protocol::NatPmp), "{st:?}");
    assert_eq!(
        ladder(&st),
        vec![(Protocol::Upnp, true), (Protocol::NatPmp, true)]
    );
    assert!(
        st.ladder[0]
            .result
            .starts_with("passed over: it refused the mapping (pubky_tls: "),
        "{st:?}"
    );
    let wan_tls = wan_tls_get(&net, &device.key, 6287);
    assert!(
        wan_tls.starts_with("HTTP/1.1 200"),
        "through NAT-PMP: {wan_tls}"
    );
    let status = device.status();
    println!("{status}");
    assert!(
        status.contains("tried:         UPnP IGD, 0 ms: passed over: it refused the mapping"),
        "{status}"
    );
    device.stop();
    assert_eq!(net.forwards(), "", "the forward was left at the router");
}

#[test]
fn pcp_maps_and_a_router_restart_is_told_by_its_epoch() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("e", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    net.start_router_with(NATPMP_AND_PCP).unwrap();
    let (_nodes, bootstrap, dht) = lan_dht(&net.ns("lan"));
    // PCP alone, with a long lease: a forward that comes back below was not renewed.
    let device = Device::start(
        &net,
        &format!(
            "{}{}protocols = [\"pcp\"]\n[mdns]\nenabled = false\n",
            dht_toml(&bootstrap),
            FAST_UPNP.replace("lease_ms = 4000", "lease_ms = 600000")
        ),
    );
    let st = device.mapped();
    assert_eq!(st.protocol, Some(Protocol::Pcp), "{st:?}");
    assert_eq!(ladder(&st), vec![(Protocol::Pcp, true)]);
    // PCP names the external address in the mapping's answer.
    assert_eq!(st.external_ip.as_deref(), Some(ROUTER_WAN), "{st:?}");
    assert!(
        st.mappings[0].lease_secs > 500,
        "the lease asked for: {st:?}"
    );
    assert!(net.forwards().contains("192.168.77.10:6287"));
    let wan_tls = wan_tls_get(&net, &device.key, 6287);
    assert!(
        wan_tls.starts_with("HTTP/1.1 200"),
        "through PCP: {wan_tls}"
    );
    eventually("the record to announce the external address", || {
        (record(&dht, &device.key) == Some((Some(ROUTER_WAN.parse().unwrap()), Some(6287))))
            .then_some(())
    });

    // The router reboots while the device is paused: when it looks again the router answers
    // as before, with an empty table and an epoch that started again.
    net.reboot_router_under(&device, |net| {
        assert_eq!(net.forwards(), "", "a rebooted router forwards nothing")
    });
    eventually("the forward to be made again", || {
        net.forwards().contains("192.168.77.10:6287").then_some(())
    });
    let log = std::fs::read_to_string(net.tmp.path().join("device.log")).unwrap();
    assert!(log.contains("the router restarted"), "{log}");
    let wan_tls = wan_tls_get(&net, &device.key, 6287);
    assert!(
        wan_tls.starts_with("HTTP/1.1 200"),
        "after the reboot: {wan_tls}"
    );

    device.stop();
    assert_eq!(net.forwards(), "", "the forward was left at the router");
}

/// IPv6 (issue 18, point 1): a LAN with a global prefix behind a router whose firewall
/// drops inbound IPv6. The device asks the router for a pinhole over PCP, sent to the
/// link-local next hop of its IPv6 default route; once it is open the record carries the
/// address (AAAA) beside the router's IPv4 one, and a client on the WAN side completes a
/// PubkyTLS handshake with the device's key over IPv6. The pinhole is renewed, made again
/// after the router reboots, and removed on a clean stop.
#[test]
fn ipv6_a_pcp_pinhole_opens_the_firewall_and_the_record_carries_the_address() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("i", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    net.add_ipv6().unwrap();
    net.start_router_with(NATPMP_AND_PCP).unwrap();
    let (_nodes, bootstrap, dht) = lan_dht(&net.ns("lan"));
    let box6: SocketAddr = format!("[{LAN_IP6}]:6287").parse().unwrap();

    // The firewall: a listener on the device's address is not reachable from the WAN side
    // while no pinhole exists (the router drops the SYN; the connect times out).
    let listener = in_ns(&net.ns("lan"), move || {
        std::net::TcpListener::bind(box6).unwrap()
    });
    let blocked = in_ns(&net.ns("wan"), move || {
        TcpStream::connect_timeout(&box6, Duration::from_millis(1500)).map(|_| ())
    });
    assert!(
        blocked.is_err(),
        "inbound IPv6 passed the router's firewall"
    );
    drop(listener);

    // The lease is short so it is renewed during the test.
    let device = Device::start(
        &net,
        &format!(
            "{}{FAST_UPNP}protocols = [\"pcp\"]\n[mdns]\nenabled = false\n",
            dht_toml(&bootstrap)
        ),
    );
    let st = eventually("the pinhole", || {
        PinholeState::load(&device.data).filter(|s| s.state == "pinhole_open")
    });
    assert_eq!(st.address.as_deref(), Some(LAN_IP6), "{st:?}");
    assert_eq!(st.port, 6287);
    assert!(
        st.gateway
            .as_deref()
            .is_some_and(|g| g.contains("[fe80::1%")),
        "asked at the link-local next hop: {st:?}"
    );
    assert!(
        net.pinholes().contains(&hex6(LAN_IP6)),
        "{}",
        net.pinholes()
    );
    let wan_tls = wan_tls_get_at(&net, &device.key, box6);
    assert!(
        wan_tls.starts_with("HTTP/1.1 200"),
        "over IPv6 through the pinhole: {wan_tls}"
    );
    // The record: the router's IPv4 address and the device's IPv6 one, one port for both.
    let want6: std::net::Ipv6Addr = LAN_IP6.parse().unwrap();
    eventually("the record to announce both addresses", || {
        let p = smol::block_on(dht.get(&device.key))?;
        (direct_endpoint(&p) == (Some(ROUTER_WAN.parse().unwrap()), Some(6287))
            && announced_ipv6(&p) == vec![want6])
        .then_some(())
    });
    eventually("a renewal of the pinhole", || {
        PinholeState::load(&device.data).filter(|s| s.state == "pinhole_open" && s.renewals >= 1)
    });
    let status = device.status();
    let line = status
        .lines()
        .find(|l| l.starts_with("ipv6:"))
        .unwrap_or("");
    assert!(
        line.contains(&format!(
            "[{LAN_IP6}]:6287 open at the router's firewall via PCP"
        )) && line.contains("the record announces it (AAAA)"),
        "{status}"
    );
    assert!(
        status.contains(&format!("{ROUTER_WAN}:6287 and [{LAN_IP6}]:6287")),
        "{status}"
    );

    // The router reboots (its epoch starts again, its pinholes are gone): the device opens
    // the pinhole again.
    net.reboot_router_under(&device, |net| {
        assert_eq!(net.pinholes(), "", "a rebooted router keeps no pinhole")
    });
    eventually("the pinhole to be made again", || {
        net.pinholes().contains(&hex6(LAN_IP6)).then_some(())
    });
    let wan_tls = wan_tls_get_at(&net, &device.key, box6);
    assert!(
        wan_tls.starts_with("HTTP/1.1 200"),
        "after the reboot: {wan_tls}"
    );

    device.stop();
    assert_eq!(net.pinholes(), "", "the pinhole was left at the router");
}

#[test]
fn a_nat_in_front_of_the_router_is_told_by_the_dht_view() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("f", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    net.add_provider_nat().unwrap();
    net.start_router().unwrap();
    let (_nodes, bootstrap, _dht) = dht_at(&net.ns("inet"), "12.0.0.2");
    let device = Device::start(&net, &fast_mapping(&bootstrap));
    // The router maps the port and names its own WAN address, which looks public...
    let st = device.mapped();
    assert_eq!(st.external_ip.as_deref(), Some(ROUTER_WAN));
    assert_eq!(st.nat, Some(NatKind::Public));
    // ...but the DHT's nodes see the provider's address.
    eventually("the DHT's view of the address", || {
        let p = pubky_edge::announce::PublishStatus::load(&device.data)?;
        (p.dht_seen_ip.as_deref() == Some("12.0.0.1")).then_some(())
    });
    let status = device.status();
    println!("{status}");
    for line in [
        "dht view:      nodes see 12.0.0.1",
        "(the router names another: see cgnat)",
        "cgnat:         YES: the router says its internet address is 11.0.0.1, but the DHT's nodes see 12.0.0.1",
    ] {
        assert!(status.contains(line), "{line}: {status}");
    }
    // The metrics carry both views and the verdict on them.
    let metrics = in_ns(&device.ns, || {
        let mut s = TcpStream::connect("127.0.0.1:6289").unwrap();
        s.set_read_timeout(Some(SAFETY)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    for line in [
        "pubky_edge_public_address_info{source=\"router\",address=\"11.0.0.1\"} 1",
        "pubky_edge_public_address_info{source=\"dht\",address=\"12.0.0.1\"} 1",
        "pubky_edge_nat_in_front_of_router 1",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    device.stop();
}

/// The box's key without starting it: `pubky-edge info` creates the identity.
fn identity_in(data: &Path) -> PublicKey {
    let out = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .arg("-d")
        .arg(data)
        .arg("info")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let z = text
        .lines()
        .find_map(|l| l.strip_prefix("public key:"))
        .unwrap_or_else(|| panic!("no key in `info`: {text}"));
    PublicKey::parse_z32(z.trim()).unwrap()
}

/// A PubkyTLS GET of `path` (for `user`, by `pubky-host`) from namespace `ns` to `addr`,
/// checking the box's `key`: the body and how long the whole exchange took.
fn tls_fetch(
    ns: &str,
    addr: SocketAddr,
    key: PublicKey,
    user: String,
    path: &str,
) -> (Vec<u8>, Duration) {
    let path = path.to_string();
    in_ns(ns, move || {
        let start = Instant::now();
        let name = rustls::pki_types::ServerName::try_from(key.to_z32()).unwrap();
        let conn =
            rustls::ClientConnection::new(pubky_edge::tls::client_config(&key), name).unwrap();
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(SAFETY)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: x\r\npubky-host: {user}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out[..split])
        );
        (out[split + 4..].to_vec(), start.elapsed())
    })
}

/// A box on the internet side of `role` at `ip` that relays for `box_key` (link port 7000,
/// the box's public port 7443), with `extra` tunnel settings.
fn relay_box(
    net: &Net,
    role: &str,
    ip: &str,
    bootstrap: &str,
    box_key: &PublicKey,
    extra: &str,
) -> Device {
    Device::start_as(
        net,
        role,
        "relay",
        &format!(
            "[pkdns]\ndht = true\npublic_ip = \"{ip}\"\ndht_bootstrap_nodes = [\"{bootstrap}\"]\n\
             dht_request_timeout_ms = 500\npublish_retry_min_ms = 200\n[upnp]\nenabled = false\n\
             [mdns]\nenabled = false\n[tunnel]\nlisten_socket = \"{ip}:7000\"\n\
             boxes = [{{ key = \"{box_key}\", port = 7443 }}]\n{extra}"
        ),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn behind_a_provider_nat_the_box_is_reached_through_a_relay_box_by_the_sdk() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("j", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    // The box's router sits behind the provider's carrier-grade NAT (its WAN address is
    // 100.64.0.1); the relay box and the clients are on the internet side (12.0.0.2), which
    // has no route to the router's address.
    net.add_provider_nat().unwrap();
    net.give_router_a_cgnat_address().unwrap();
    net.start_router().unwrap();
    let (_nodes, bootstrap, dht) = dht_at(&net.ns("inet"), "12.0.0.2");
    let relay_data = net.tmp.path().join("relay-data");
    let relay_key = identity_in(&relay_data);
    let start = Instant::now();
    let device = Device::start(
        &net,
        &format!(
            "{}[tunnel]\nvia = \"{relay_key}@12.0.0.2:7000\"\n",
            fast_mapping(&bootstrap)
        ),
    );
    // The relay's bandwidth bound is off, to measure the path itself.
    let relay = relay_box(
        &net,
        "inet",
        "12.0.0.2",
        &bootstrap,
        &device.key,
        "max_kib_per_second_per_box = 0\n",
    );
    assert_eq!(relay.key, relay_key);
    let link = eventually("the relay link", || {
        let l = pubky_edge::tunnel::LinkState::load(&device.data)?;
        l.connected().then_some(l)
    });
    println!(
        "relay link up {} ms after the box started (it retries from 1 s while the relay starts)",
        start.elapsed().as_millis()
    );
    assert_eq!(link.published.as_deref(), Some("12.0.0.2:7443"));
    // The relay connects back to where the link comes from (the provider's 12.0.0.1), finds
    // nothing forwarded there, and the record names the relay.
    let checked = eventually("the connect-back", || {
        let l = pubky_edge::tunnel::LinkState::load(&device.data)?;
        (l.direct_ok == Some(false)).then_some(l)
    });
    assert!(checked.in_record, "{checked:?}");
    assert!(
        checked.direct.as_deref().unwrap().contains("12.0.0.1:6287"),
        "{checked:?}"
    );
    eventually("the record announces the relay", || {
        (record(&dht, &device.key)? == (Some("12.0.0.2".parse().unwrap()), Some(7443)))
            .then_some(())
    });
    // Behind the carrier-grade NAT the router has no public address: miniupnpd names none
    // and refuses the mapping, the box reports why, and nothing on the internet side can
    // reach the router's address.
    let st = eventually("the router's answer", || {
        let st = device.upnp()?;
        (st.nat == Some(NatKind::NoPublicAddress)).then_some(st)
    });
    assert!(st.mappings.is_empty(), "{st:?}");
    let direct = in_ns(&net.ns("inet"), || {
        TcpStream::connect_timeout(&"100.64.0.1:6287".parse().unwrap(), Duration::from_secs(2))
    });
    assert!(
        direct.is_err(),
        "the router's mapping is reachable from the internet side"
    );

    // The official SDK on the internet side: it resolves the box to the relay, checks the
    // box's key through it, and signs up, writes and reads; 64 MiB go up and come back.
    let big: Vec<u8> = (0..64 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let (hs, boot) = (device.key.to_z32(), bootstrap.clone());
    let sent = big.clone();
    let user = in_ns(&net.ns("inet"), move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let pubky = pubky::Pubky::with_client(crate::support::sdk_client(&[boot]));
            let hs = pubky::PublicKey::try_from(hs.as_str()).unwrap();
            let user = pubky::Keypair::random();
            let signer = pubky.signer(user.clone());
            signer
                .signup(&hs, None)
                .await
                .expect("signup through the relay");
            let session = signer
                .signin_blocking(pubky::ClientId::new("relay.test").unwrap())
                .await
                .expect("signin through the relay");
            let st = session.storage();
            st.put("/pub/relay/hello.txt", "through the relay")
                .await
                .unwrap();
            let got = st.get("/pub/relay/hello.txt").await.unwrap();
            assert_eq!(got.text().await.unwrap(), "through the relay");
            st.put("/pub/relay/big.bin", sent.clone())
                .await
                .expect("64 MiB up through the relay");
            let got = st
                .get("/pub/relay/big.bin")
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert!(got[..] == sent[..], "64 MiB back through the relay");
            user.public_key().z32()
        })
    });

    // The same download through the relay and directly from the LAN, on the same run.
    let relayed_at: SocketAddr = "12.0.0.2:7443".parse().unwrap();
    let direct_at: SocketAddr = format!("{LAN_IP}:6287").parse().unwrap();
    let mut report = Vec::new();
    for (name, ns, at) in [
        ("relay", net.ns("inet"), relayed_at),
        ("direct", net.ns("lan2"), direct_at),
    ] {
        let (body, took) = tls_fetch(&ns, at, device.key, user.clone(), "/pub/relay/big.bin");
        assert!(body[..] == big[..], "64 MiB {name}");
        let small: Vec<Duration> = (0..20)
            .map(|_| tls_fetch(&ns, at, device.key, user.clone(), "/pub/relay/hello.txt").1)
            .collect();
        report.push(format!(
            "{name}: 64 MiB in {} ms ({:.0} MiB/s); small GET on a new connection, median of 20: {} us",
            took.as_millis(),
            64.0 / took.as_secs_f64(),
            median(small).as_micros()
        ));
    }
    println!("{}", report.join("\n"));

    // Both sides say what they see.
    let said = device.status();
    println!("{said}");
    for line in [
        format!("relay link:    connected to {relay_key}@12.0.0.2:7000"),
        "announced as 12.0.0.2:7443".to_string(),
        "record:        resolves to 12.0.0.2:7443, the current address".to_string(),
        "connect-back:  the relay could NOT reach this box".to_string(),
        "the record names the relay".to_string(),
        "verdict:       Reachable through the relay.".to_string(),
        "cgnat:         YES (probably): the router reports no public external address".to_string(),
    ] {
        assert!(said.contains(&line), "{line}: {said}");
    }
    let said = relay.status();
    assert!(
        said.contains(&format!(
            "relaying:      {} on port 7443: linked from 12.0.0.1:",
            device.key
        )),
        "{said}"
    );
    device.stop();
    relay.stop();
}

#[test]
fn a_mapped_box_is_proven_reachable_by_its_relay_connecting_back() {
    let _suite = crate::suite("household");
    let mut net = match Net::create("h", true) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    net.start_router().unwrap();
    // No provider NAT: the router's address is the internet's view, and the relay box sits
    // on the WAN side next to the DHT.
    let (_nodes, bootstrap, dht) = dht_at(&net.ns("wan"), "11.0.0.2");
    let relay_data = net.tmp.path().join("relay-data");
    let relay_key = identity_in(&relay_data);
    let device = Device::start(
        &net,
        &format!(
            "{}[tunnel]\nvia = \"{relay_key}@11.0.0.2:7000\"\n",
            fast_mapping(&bootstrap)
        ),
    );
    let _relay = relay_box(&net, "wan", "11.0.0.2", &bootstrap, &device.key, "");
    device.mapped();
    // Once the router has mapped the port, the relay's connect-back completes a PubkyTLS
    // handshake with the box's key at the router's address, and the record keeps naming it.
    let checked = eventually("a connect-back that reached the box", || {
        let l = pubky_edge::tunnel::LinkState::load(&device.data)?;
        (l.direct_ok == Some(true)).then_some(l)
    });
    assert!(!checked.in_record, "{checked:?}");
    assert!(
        checked
            .direct
            .as_deref()
            .unwrap()
            .starts_with(&format!("{ROUTER_WAN}:6287")),
        "{checked:?}"
    );
    eventually("the record names the router's address", || {
        (record(&dht, &device.key)? == (Some(ROUTER_WAN.parse().unwrap()), Some(6287)))
            .then_some(())
    });
    let said = device.status();
    for line in [
        format!("connect-back:  the relay reached this box at {ROUTER_WAN}:6287"),
        "the record names this box's own address".to_string(),
        "verdict:       Reachable from the internet. The relay at 11.0.0.2:7000 connected back"
            .to_string(),
    ] {
        assert!(said.contains(&line), "{line}: {said}");
    }
    device.stop();
}

#[test]
fn mdns_announces_follows_addresses_and_says_goodbye_and_a_missing_router_is_reported() {
    let _suite = crate::suite("household");
    let net = match Net::create("c", false) {
        Ok(n) => n,
        Err(e) if skip(&e) => return,
        Err(e) => panic!("{e}"),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let lan2 = net.ns("lan2");
    // The browser lives in the second LAN namespace for the whole test.
    let browser = std::thread::spawn(move || {
        in_ns(&lan2, move || {
            let daemon = mdns_sd::ServiceDaemon::new().unwrap();
            let events = daemon
                .browse(pubky_edge::announce::mdns::SERVICE_TYPE)
                .unwrap();
            while let Ok(ev) = events.recv_timeout(SAFETY * 2) {
                let done = matches!(ev, mdns_sd::ServiceEvent::ServiceRemoved(..));
                if tx.send(ev).is_err() || done {
                    break;
                }
            }
            let _ = daemon.shutdown();
        })
    });
    // The dashboard's `_http._tcp` service, browsed from the same LAN.
    let (web_tx, web_rx) = std::sync::mpsc::channel();
    let lan2_web = net.ns("lan2");
    let web_browser = std::thread::spawn(move || {
        in_ns(&lan2_web, move || {
            let daemon = mdns_sd::ServiceDaemon::new().unwrap();
            let events = daemon
                .browse(pubky_edge::announce::mdns::WEB_SERVICE_TYPE)
                .unwrap();
            // Resolutions come as the records arrive: wait for the one with the IPv4 address.
            while let Ok(ev) = events.recv_timeout(SAFETY * 2) {
                if let mdns_sd::ServiceEvent::ServiceResolved(s) = ev {
                    let v4 = s.get_addresses_v4().contains(&LAN_IP.parse().unwrap());
                    if web_tx.send(s).is_err() || v4 {
                        break;
                    }
                }
            }
            let _ = daemon.shutdown();
        })
    });
    // No router runs UPnP in this topology: the mapper must say so, not fail the server.
    let device = Device::start(
        &net,
        &format!(
            "[pkdns]\ndht = false\n{}[dashboard]\nlisten_socket = \"0.0.0.0:6290\"\n",
            FAST_UPNP.replace("discovery_timeout_ms = 2000", "discovery_timeout_ms = 500")
        ),
    );
    let z = device.key.to_z32();
    let fullname = format!("{z}.{}", pubky_edge::announce::mdns::SERVICE_TYPE);
    let resolved = loop {
        match rx
            .recv_timeout(SAFETY)
            .expect("the service is found on the LAN")
        {
            // A resolution may come before the address records (then without IPv4
            // addresses); a later one carries them.
            mdns_sd::ServiceEvent::ServiceResolved(s)
                if s.get_fullname() == fullname && !s.get_addresses_v4().is_empty() =>
            {
                break s
            }
            _ => {}
        }
    };
    assert_eq!(resolved.get_hostname(), format!("pubky-{}.local.", &z[..4]));
    assert_eq!(resolved.get_port(), 6287);
    assert_eq!(resolved.get_property_val_str("pk"), Some(z.as_str()));
    assert_eq!(resolved.get_property_val_str("pubky_tls"), Some("6287"));
    assert_eq!(resolved.get_property_val_str("http"), Some("6286"));
    assert_eq!(
        resolved.get_property_val_str("version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let addrs = resolved.get_addresses_v4();
    assert!(addrs.contains(&LAN_IP.parse().unwrap()), "{addrs:?}");
    assert!(!addrs.iter().any(|a| a.is_loopback()), "{addrs:?}");
    // The dashboard is listed as a web page named after the box, and answers a LAN host
    // that asks for it by that name.
    let web = loop {
        let w = web_rx
            .recv_timeout(SAFETY)
            .expect("the dashboard is found on the LAN");
        if w.get_addresses_v4().contains(&LAN_IP.parse().unwrap()) {
            break w;
        }
    };
    web_browser.join().unwrap();
    let name = format!("pubky-{}", &z[..4]);
    assert_eq!(
        web.get_fullname(),
        format!("{name}.{}", pubky_edge::announce::mdns::WEB_SERVICE_TYPE)
    );
    assert_eq!(web.get_port(), 6290);
    assert_eq!(web.get_property_val_str("path"), Some("/"));
    assert!(
        web.get_addresses_v4().contains(&LAN_IP.parse().unwrap()),
        "{:?}",
        web.get_addresses()
    );
    let page = in_ns(&net.ns("lan2"), move || {
        let mut s = std::net::TcpStream::connect((LAN_IP, 6290)).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET / HTTP/1.1\r\nhost: {name}.local\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("Claim this box"),
        "{page}"
    );

    // A new address on the device's interface is announced (mdns-sd checks every 5 s).
    sh(&[
        "ip",
        "-n",
        &net.ns("lan"),
        "addr",
        "add",
        "192.168.77.20/24",
        "dev",
        "eth0",
    ])
    .unwrap();
    loop {
        let ev = rx
            .recv_timeout(SAFETY)
            .expect("the new address is announced");
        if let mdns_sd::ServiceEvent::ServiceResolved(s) = ev {
            if s.get_addresses_v4()
                .contains(&"192.168.77.20".parse().unwrap())
            {
                break;
            }
        }
    }

    eventually("the missing router to be reported", || {
        (device.upnp()?.state == "no_gateway").then_some(())
    });
    let status = device.status();
    println!("{status}");
    assert!(
        status.contains(&format!("mdns:          {fullname} on pubky-")),
        "{status}"
    );
    assert!(status.contains("router:        no_gateway"), "{status}");
    // Every rung of the ladder was asked, and each says why it failed.
    for tried in [
        "tried:         UPnP IGD, ",
        "tried:         NAT-PMP, ",
        "tried:         PCP, ",
    ] {
        assert!(status.contains(tried), "{tried}: {status}");
    }
    assert!(
        status.contains("router error:  no router answered (UPnP IGD: nothing answered"),
        "{status}"
    );

    // Shutdown sends the goodbye: the browser sees the service removed.
    device.stop();
    let removed = loop {
        let ev = rx
            .recv_timeout(SAFETY)
            .expect("the goodbye reaches the browser");
        if let mdns_sd::ServiceEvent::ServiceRemoved(_, name) = ev {
            break name;
        }
    };
    assert_eq!(removed, fullname);
    browser.join().unwrap();
}
