//! Makes the device discoverable on the LAN with mDNS/DNS-SD (`mdns-sd`, which runs its own
//! thread). One service instance:
//!
//! - service type `_pubky._tcp.local.`, instance name = the homeserver's public key (z-base-32),
//!   so a client that knows the key can look up `<key>._pubky._tcp.local.` directly;
//! - host name `pubky-<first 4 characters of the key>.local.`, SRV port = the PubkyTLS port;
//! - TXT: `pk` (the key), `pubky_tls`, `http` and (when configured) `relay` ports, `version`.
//!
//! Addresses follow the interfaces (`enable_addr_auto`): mdns-sd re-announces when an address
//! appears or goes. Interfaces are chosen by name (`[mdns]`), loopback never. On stop the
//! service is unregistered (goodbye packets, TTL 0) before the daemon shuts down. What is
//! announced goes to `<data>/mdns.json` for `pubky-edge status`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdns_sd::{DaemonEvent, IfKind, IfPredicate, ServiceDaemon, ServiceInfo};
use serde::{Deserialize, Serialize};

use super::worker::save_json;
use crate::pubkey::PublicKey;

pub const SERVICE_TYPE: &str = "_pubky._tcp.local.";
/// The dashboard's service type: Bonjour-aware browsers and phone apps list these.
pub const WEB_SERVICE_TYPE: &str = "_http._tcp.local.";
pub const STATE_FILE: &str = "mdns.json";

/// Interface selection (from `[mdns]`).
#[derive(Debug, Clone, Default)]
pub struct MdnsSettings {
    /// Only these interfaces (exact names); empty = every interface not skipped.
    pub interfaces: Vec<String>,
    /// Name prefixes of interfaces never used (containers, VMs, tunnels).
    pub skip_interfaces: Vec<String>,
}

impl MdnsSettings {
    /// Pure: whether mDNS runs on the interface `name`.
    pub fn uses(&self, name: &str, loopback: bool) -> bool {
        !loopback
            && (self.interfaces.is_empty() || self.interfaces.iter().any(|i| i == name))
            && !self
                .skip_interfaces
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

/// The listeners announced in TXT.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub pubky_tls: u16,
    pub http: u16,
    pub relay: Option<u16>,
    /// The dashboard's listener, announced as `_http._tcp` when it is on the LAN.
    pub dashboard: Option<std::net::SocketAddr>,
}

pub fn host_name(key: &PublicKey) -> String {
    let z = key.to_string();
    format!("pubky-{}.local.", &z[..4])
}

pub fn instance_name(key: &PublicKey) -> String {
    key.to_string()
}

pub fn txt(key: &PublicKey, ports: Ports) -> Vec<(String, String)> {
    let mut t = vec![
        ("pk".to_string(), key.to_string()),
        ("pubky_tls".to_string(), ports.pubky_tls.to_string()),
        ("http".to_string(), ports.http.to_string()),
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ];
    if let Some(r) = ports.relay {
        t.push(("relay".to_string(), r.to_string()));
    }
    t
}

/// What is announced; persisted for `pubky-edge status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdnsState {
    /// "announcing", "stopped", "error"
    pub state: String,
    pub service_type: String,
    pub instance: String,
    pub host: String,
    pub port: u16,
    pub addresses: Vec<String>,
    pub last_error: Option<String>,
    pub updated_secs: u64,
}

impl MdnsState {
    pub fn load(data_dir: &Path) -> Option<MdnsState> {
        let text = std::fs::read_to_string(data_dir.join(STATE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The selected interfaces' current addresses.
pub fn lan_addresses(settings: &MdnsSettings) -> Vec<(String, IpAddr)> {
    let mut out: Vec<(String, IpAddr)> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| settings.uses(&i.name, i.is_loopback()))
        .map(|i| (i.name.clone(), i.ip()))
        .collect();
    out.sort();
    out
}

/// The running announcement.
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
    /// The dashboard's `_http._tcp` service, when announced.
    web: Option<String>,
    state: Arc<Mutex<MdnsState>>,
    data_dir: PathBuf,
    monitor: Option<std::thread::JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl Announcer {
    /// Registers the service. `listen_ip` unspecified = every selected interface's addresses
    /// (kept up to date); a specific address = that one only.
    pub fn start(
        settings: &MdnsSettings,
        key: &PublicKey,
        ports: Ports,
        listen_ip: IpAddr,
        data_dir: &Path,
    ) -> Result<Announcer, String> {
        let daemon = daemon(settings)?;
        let host = host_name(key);
        let info = service_info(key, &host, ports, listen_ip)?;
        let fullname = info.get_fullname().to_string();
        let monitor = daemon.monitor().map_err(|e| format!("mDNS monitor: {e}"))?;
        daemon
            .register(info)
            .map_err(|e| format!("mDNS register: {e}"))?;
        let web = match ports.dashboard.filter(|d| !d.ip().is_loopback()) {
            Some(d) => {
                let info = web_service_info(key, &host, d)?;
                let name = info.get_fullname().to_string();
                daemon
                    .register(info)
                    .map_err(|e| format!("mDNS register: {e}"))?;
                tracing::info!(instance = %name, "announcing the dashboard on mDNS");
                Some(name)
            }
            None => None,
        };
        let state = Arc::new(Mutex::new(MdnsState {
            state: "announcing".into(),
            service_type: SERVICE_TYPE.into(),
            instance: fullname.clone(),
            host: host.clone(),
            port: ports.pubky_tls,
            addresses: announced(settings, listen_ip),
            last_error: None,
            updated_secs: crate::clock::now_secs(),
        }));
        save(data_dir, &state);
        tracing::info!(instance = %fullname, %host, "announcing on mDNS");
        let stopping = Arc::new(AtomicBool::new(false));
        let watch = Watch {
            state: state.clone(),
            data_dir: data_dir.to_path_buf(),
            settings: settings.clone(),
            listen_ip,
            stopping: stopping.clone(),
        };
        let monitor = std::thread::Builder::new()
            .name("mdns-monitor".into())
            .spawn(move || watch.run(monitor))
            .map_err(|e| format!("mDNS monitor thread: {e}"))?;
        Ok(Announcer {
            daemon,
            fullname,
            web,
            state,
            data_dir: data_dir.to_path_buf(),
            monitor: Some(monitor),
            stopping,
        })
    }

    /// Sends the goodbye (unregister, waiting for mdns-sd to have sent it) and stops the
    /// daemon. Blocking, bounded: run it off the executor.
    pub fn stop(mut self) {
        for name in std::iter::once(&self.fullname).chain(self.web.as_ref()) {
            match self.daemon.unregister(name) {
                Ok(rx) => {
                    if rx.recv_timeout(Duration::from_secs(3)).is_err() {
                        tracing::warn!("mDNS: no confirmation that the goodbye was sent");
                    }
                }
                Err(e) => tracing::warn!("mDNS unregister: {e}"),
            }
        }
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(Duration::from_secs(3));
        }
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(t) = self.monitor.take() {
            let _ = t.join();
        }
        self.state.lock().unwrap_or_else(|e| e.into_inner()).state = "stopped".into();
        save(&self.data_dir, &self.state);
        tracing::info!("mDNS goodbye sent");
    }
}

fn save(dir: &Path, state: &Mutex<MdnsState>) {
    let mut snapshot = state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    snapshot.updated_secs = crate::clock::now_secs();
    save_json(dir, STATE_FILE, &snapshot);
}

/// The mDNS daemon, on the selected interfaces only (never loopback).
fn daemon(settings: &MdnsSettings) -> Result<ServiceDaemon, String> {
    let daemon = ServiceDaemon::new().map_err(|e| format!("cannot start mDNS: {e}"))?;
    let sel = settings.clone();
    let skip = IfPredicate::new(move |i| !sel.uses(&i.name, i.is_loopback()));
    daemon
        .disable_interface(vec![
            IfKind::LoopbackV4,
            IfKind::LoopbackV6,
            IfKind::Predicate(skip),
        ])
        .map_err(|e| format!("mDNS interface selection: {e}"))?;
    Ok(daemon)
}

/// The homeserver's service record: its name, host, port and TXT keys; the addresses are
/// the listener's own, or every selected interface's when it listens on all.
fn service_info(
    key: &PublicKey,
    host: &str,
    ports: Ports,
    listen_ip: IpAddr,
) -> Result<ServiceInfo, String> {
    let addrs: Vec<IpAddr> = if listen_ip.is_unspecified() {
        Vec::new()
    } else {
        vec![listen_ip]
    };
    let info = ServiceInfo::new(
        SERVICE_TYPE,
        &instance_name(key),
        host,
        &addrs[..],
        ports.pubky_tls,
        &txt(key, ports)[..],
    )
    .map_err(|e| format!("mDNS service: {e}"))?;
    Ok(if listen_ip.is_unspecified() {
        info.enable_addr_auto()
    } else {
        info
    })
}

/// The dashboard's service: named after the box (`pubky-xxxx`), on the same host name, at
/// the dashboard's port, with the page's path.
fn web_service_info(
    key: &PublicKey,
    host: &str,
    at: std::net::SocketAddr,
) -> Result<ServiceInfo, String> {
    let name = host.trim_end_matches('.').trim_end_matches(".local");
    let addrs: Vec<IpAddr> = if at.ip().is_unspecified() {
        Vec::new()
    } else {
        vec![at.ip()]
    };
    let txt = [
        ("path".to_string(), "/".to_string()),
        ("pk".to_string(), key.to_string()),
    ];
    let info = ServiceInfo::new(
        WEB_SERVICE_TYPE,
        name,
        host,
        &addrs[..],
        at.port(),
        &txt[..],
    )
    .map_err(|e| format!("mDNS service: {e}"))?;
    Ok(if at.ip().is_unspecified() {
        info.enable_addr_auto()
    } else {
        info
    })
}

/// The addresses the announcement carries, as the report shows them.
fn announced(settings: &MdnsSettings, listen_ip: IpAddr) -> Vec<String> {
    if listen_ip.is_unspecified() {
        lan_addresses(settings)
            .into_iter()
            .map(|(n, ip)| format!("{ip} ({n})"))
            .collect()
    } else {
        vec![listen_ip.to_string()]
    }
}

/// The monitor thread's state. Address changes are re-announced by mdns-sd itself; this
/// thread keeps the report current and logs them. It ends when the daemon shuts down.
struct Watch {
    state: Arc<Mutex<MdnsState>>,
    data_dir: std::path::PathBuf,
    settings: MdnsSettings,
    listen_ip: IpAddr,
    stopping: Arc<AtomicBool>,
}

impl Watch {
    fn run(self, monitor: mdns_sd::Receiver<DaemonEvent>) {
        // Polls the flag too, so a stop never waits on a channel that stays open.
        while !self.stopping.load(Ordering::SeqCst) {
            let ev = match monitor.recv_timeout(Duration::from_millis(500)) {
                Ok(ev) => ev,
                Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
                Err(mdns_sd::RecvTimeoutError::Disconnected) => break,
            };
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                DaemonEvent::IpAdd(ip) | DaemonEvent::IpDel(ip) => {
                    tracing::info!(%ip, "mDNS: interface address changed; re-announcing");
                    st.addresses = announced(&self.settings, self.listen_ip);
                }
                DaemonEvent::Error(e) => {
                    tracing::warn!("mDNS: {e}");
                    st.last_error = Some(e.to_string());
                }
                _ => continue,
            }
            drop(st);
            save(&self.data_dir, &self.state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        PublicKey::from_bytes(sk.verifying_key().to_bytes()).unwrap()
    }

    #[test]
    fn names_derive_from_the_key() {
        let k = key();
        let z = k.to_string();
        assert_eq!(host_name(&k), format!("pubky-{}.local.", &z[..4]));
        assert_eq!(instance_name(&k), z);
    }

    #[test]
    fn txt_carries_key_ports_and_version() {
        let k = key();
        let t = txt(
            &k,
            Ports {
                pubky_tls: 6287,
                http: 6286,
                relay: None,
                dashboard: None,
            },
        );
        let get = |n: &str| t.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("pk"), Some(k.to_string()));
        assert_eq!(get("pubky_tls").as_deref(), Some("6287"));
        assert_eq!(get("http").as_deref(), Some("6286"));
        assert_eq!(get("version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(get("relay"), None);
        // Each TXT string (key=value) fits the 255-byte limit.
        assert!(t.iter().all(|(k, v)| k.len() + v.len() < 255));
    }

    #[test]
    fn interface_selection() {
        let s = MdnsSettings {
            interfaces: vec![],
            skip_interfaces: vec!["docker".into(), "veth".into(), "br-".into()],
        };
        assert!(s.uses("eth0", false));
        assert!(s.uses("wlan0", false));
        assert!(!s.uses("lo", true));
        assert!(!s.uses("docker0", false));
        assert!(!s.uses("veth12ab", false));
        assert!(!s.uses("br-5f2a", false));
        let only = MdnsSettings {
            interfaces: vec!["wlan0".into()],
            ..s
        };
        assert!(only.uses("wlan0", false));
        assert!(!only.uses("eth0", false));
    }
}
