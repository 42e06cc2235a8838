//! The household side of start-up and teardown: the UPnP port mapper, the IPv6 pinhole
//! and the mDNS announcement, started from `[upnp]`/`[mdns]` once the listeners are bound,
//! and stopped first on shutdown (goodbye and mapping removal before the listeners drain).
//!
//! Both only make sense when the PubkyTLS listener can be reached from the LAN: with a
//! loopback listener (the default config) neither runs, and the report says why.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use event_listener::Event;
use smol::{Executor, Task};

use super::mapping::PortRequest;
use super::mdns::{Announcer, MdnsSettings, Ports};
use super::pinhole::{PinholeState, Pinholer};
use super::upnp::{PortMapper, UpnpState};
use super::worker::save_json;
use super::PublicAddress;
use crate::config::Config;
use crate::pubkey::PublicKey;
use crate::runtime::shutdown::ShutdownSignal;

/// The bound listeners, as the household workers need them.
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    pub pubky_tls: SocketAddr,
    pub http: SocketAddr,
    pub relay: Option<SocketAddr>,
    /// Announced on mDNS only; never asked of the router.
    pub dashboard: Option<SocketAddr>,
}

/// The running household workers.
pub struct Household {
    upnp: Option<Task<()>>,
    /// The IPv6 rung (`pinhole`).
    ipv6: Option<Task<()>>,
    mdns: Option<Announcer>,
    /// What the port mapper knows (also in `<data>/upnp.json`).
    pub upnp_state: Arc<Mutex<UpnpState>>,
    /// Notified after every port mapper round.
    pub upnp_changed: Arc<Event>,
}

pub fn mdns_settings(config: &Config) -> MdnsSettings {
    MdnsSettings {
        interfaces: config.mdns.interfaces.clone(),
        skip_interfaces: config.mdns.skip_interfaces.clone(),
    }
}

/// Whether the router will be asked for the public address: UPnP on, a LAN-reachable
/// PubkyTLS listener and no configured `pkdns.public_ip`. The address is then held back
/// until the port mapper's first answer.
pub fn router_decides_address(config: &Config) -> bool {
    config.upnp.enabled
        && !config.drive.pubky_listen_socket.ip().is_loopback()
        && config.pkdns.public_ip.is_none()
}

impl Household {
    pub fn start(
        ex: &Executor<'static>,
        config: &Config,
        key: &PublicKey,
        listeners: Listeners,
        address: &Arc<PublicAddress>,
        data_dir: &Path,
        shutdown: ShutdownSignal,
    ) -> Household {
        let listen_ip = listeners.pubky_tls.ip();
        let reachable = !listen_ip.is_loopback();
        let upnp_state = Arc::new(Mutex::new(UpnpState::default()));
        let upnp_changed = Arc::new(Event::new());
        let u = &config.upnp;
        let upnp = if u.enabled && reachable {
            let mapper = PortMapper {
                settings: u.clone(),
                ports: port_requests(config, &listeners),
                listen_ip,
                address: address.clone(),
                data_dir: data_dir.to_path_buf(),
                state: upnp_state.clone(),
                changed: upnp_changed.clone(),
            };
            Some(ex.spawn(mapper.run(shutdown.clone())))
        } else {
            let why = if u.enabled {
                "off: the PubkyTLS listener is on loopback"
            } else {
                "off: upnp.enabled = false"
            };
            let st = UpnpState {
                state: why.into(),
                updated_secs: crate::clock::now_secs(),
                ..Default::default()
            };
            save_json(data_dir, super::upnp::STATE_FILE, &st);
            *upnp_state.lock().unwrap_or_else(|e| e.into_inner()) = st;
            None
        };
        let ipv6 = match super::pinhole::off_reason(u, listeners.pubky_tls) {
            None => {
                let pinholer = Pinholer::new(
                    u.clone(),
                    listeners.pubky_tls,
                    address.clone(),
                    data_dir.to_path_buf(),
                );
                Some(ex.spawn(pinholer.run(shutdown.clone())))
            }
            Some(why) => {
                PinholeState::save_off(data_dir, &why);
                None
            }
        };
        let mdns = start_mdns(config, key, &listeners, reachable, data_dir);
        Household {
            upnp,
            ipv6,
            mdns,
            upnp_state,
            upnp_changed,
        }
    }

    /// Says goodbye on mDNS and removes the router mappings. The shutdown signal must have
    /// been triggered (the port mapper ends on it).
    pub async fn stop(self) {
        let mdns = self.mdns.map(|a| smol::unblock(move || a.stop()));
        if let Some(t) = self.upnp {
            t.await;
        }
        if let Some(t) = self.ipv6 {
            t.await;
        }
        if let Some(m) = mdns {
            m.await;
        }
    }
}

/// The ports to ask the router for: PubkyTLS always, plain HTTP when configured and not on
/// loopback; each at its announced external port.
fn port_requests(config: &Config, listeners: &Listeners) -> Vec<PortRequest> {
    let pk = &config.pkdns;
    let mut ports = vec![PortRequest {
        name: "pubky_tls".into(),
        internal_port: listeners.pubky_tls.port(),
        external_port: pk.announced_tls_port(listeners.pubky_tls.port()),
    }];
    if config.upnp.map_http_port && !listeners.http.ip().is_loopback() {
        ports.push(PortRequest {
            name: "http".into(),
            internal_port: listeners.http.port(),
            external_port: pk.announced_http_port(listeners.http.port()),
        });
    }
    ports
}

/// The mDNS announcement, unless it is off or the listener is on loopback (either is
/// recorded in `mdns.json` for `status`).
fn start_mdns(
    config: &Config,
    key: &PublicKey,
    listeners: &Listeners,
    reachable: bool,
    data_dir: &Path,
) -> Option<Announcer> {
    if !(config.mdns.enabled && reachable) {
        let why = if config.mdns.enabled {
            "off: the PubkyTLS listener is on loopback"
        } else {
            "off: mdns.enabled = false"
        };
        record_mdns_off(data_dir, why);
        return None;
    }
    let ports = Ports {
        pubky_tls: listeners.pubky_tls.port(),
        http: listeners.http.port(),
        relay: listeners.relay.map(|r| r.port()),
        dashboard: listeners.dashboard,
    };
    let listen_ip = listeners.pubky_tls.ip();
    match Announcer::start(&mdns_settings(config), key, ports, listen_ip, data_dir) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!("mDNS announcement not started: {e}");
            record_mdns_off(data_dir, &e);
            None
        }
    }
}

fn record_mdns_off(data_dir: &Path, why: &str) {
    let st = super::mdns::MdnsState {
        state: why.into(),
        updated_secs: crate::clock::now_secs(),
        ..Default::default()
    };
    save_json(data_dir, super::mdns::STATE_FILE, &st);
}
