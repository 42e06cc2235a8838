//! The IPv6 rung: the box's stable global IPv6 address, announced beside the IPv4 one
//! (`AAAA`, `ipv6hint`) once the router's firewall lets the PubkyTLS port through. There is
//! no NAT to map, but household routers drop inbound IPv6: a PCP MAP (RFC 6887) for the
//! box's own address, sent to the IPv6 default gateway, asks for that pinhole. Like the
//! IPv4 mapping it is renewed at half its lease, made again when the router's epoch says it
//! restarted, and deleted on a clean stop; a new prefix (the ISP renumbered) moves it.
//! While no pinhole is open the address is withdrawn from the record: an address nobody
//! can reach is worse than none. `upnp.ipv6 = "open"` announces it without asking.
//!
//! What it knows goes to `<data>/ipv6.json` for `pubky-edge status`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use smol::future::FutureExt;

use super::address::PublicAddress;
use super::mapping::{lease_secs, renew_due, AddOutcome, Protocol};
use super::port_control::PortControl;
use super::worker::{backoff, save_json};
use super::{ipv6, natpmp};
use crate::config::Ipv6Mode;
use crate::runtime::shutdown::ShutdownSignal;

pub const STATE_FILE: &str = "ipv6.json";

/// What the IPv6 rung knows; persisted for `pubky-edge status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinholeState {
    /// "pinhole_open", "open" (announced without asking), "searching", "no_route",
    /// "no_address", "no_gateway", "refused", "stopped", or "off: <why>".
    pub state: String,
    /// The box's stable global IPv6 address.
    pub address: Option<String>,
    /// The PubkyTLS port open to it.
    pub port: u16,
    /// Where the pinhole was asked for.
    pub gateway: Option<String>,
    pub lease_secs: u32,
    pub renewals: u32,
    /// How long opening it took (the router's answer to the first MAP).
    pub took_ms: Option<u64>,
    pub last_error: Option<String>,
    pub updated_secs: u64,
}

impl PinholeState {
    pub fn load(data_dir: &std::path::Path) -> Option<PinholeState> {
        super::worker::load_json(data_dir, STATE_FILE)
    }

    /// Records that the rung does not run, and why.
    pub fn save_off(data_dir: &std::path::Path, why: &str) {
        let st = PinholeState {
            state: format!("off: {why}"),
            updated_secs: crate::clock::now_secs(),
            ..Default::default()
        };
        save_json(data_dir, STATE_FILE, &st);
    }

    /// Whether the address is announced now (as far as this rung decides).
    pub fn is_open(&self) -> bool {
        matches!(self.state.as_str(), "pinhole_open" | "open")
    }

    /// Whether the last publish put this address in the record.
    pub fn in_record(&self, publish: Option<&super::PublishStatus>) -> bool {
        let published = publish.and_then(|p| p.published_ipv6.as_deref());
        published.is_some() && published == self.address.as_deref()
    }
}

/// Why the IPv6 rung cannot run with this listener and config, if it cannot.
pub fn off_reason(settings: &crate::config::Upnp, listen: SocketAddr) -> Option<String> {
    match (settings.ipv6, listen.ip()) {
        (Ipv6Mode::Off, _) => Some("upnp.ipv6 = \"off\"".into()),
        (_, ip) if ip.is_loopback() => Some("the PubkyTLS listener is on loopback".into()),
        (_, IpAddr::V4(_)) => Some(format!(
            "the PubkyTLS listener takes IPv4 only (drive.pubky_listen_socket = {listen}; \
             \"[::]:{}\" takes both)",
            listen.port()
        )),
        (_, IpAddr::V6(ip)) if !ip.is_unspecified() && !ipv6::is_global(ip) => Some(format!(
            "the PubkyTLS listener is on {ip}, not a global address"
        )),
        (Ipv6Mode::Pinhole, _) if !settings.enabled => Some("upnp.enabled = false".into()),
        _ => None,
    }
}

/// An open pinhole.
struct Hole {
    router: PortControl,
    internal: SocketAddr,
    generation: u64,
    lease_secs: u32,
    renewed: Instant,
    renewals: u32,
}

pub struct Pinholer {
    settings: crate::config::Upnp,
    /// The PubkyTLS listener (`[::]` or one global IPv6 address).
    listen: SocketAddr,
    address: Arc<PublicAddress>,
    data_dir: PathBuf,
    /// What `ipv6.json` says, kept here so a round writes the file without reading it.
    state: Mutex<PinholeState>,
}

impl Pinholer {
    pub fn new(
        settings: crate::config::Upnp,
        listen: SocketAddr,
        address: Arc<PublicAddress>,
        data_dir: PathBuf,
    ) -> Pinholer {
        Pinholer {
            settings,
            listen,
            address,
            data_dir,
            state: Mutex::default(),
        }
    }

    pub async fn run(self, shutdown: ShutdownSignal) {
        // Nothing of a previous run holds now.
        self.update(|_| {});
        let mut hole: Option<Hole> = None;
        let mut failures = 0u32;
        loop {
            let round = async { Some(self.round(&mut hole).await) }
                .or(async {
                    shutdown.wait().await;
                    None
                })
                .await;
            let Some(ok) = round else { break };
            failures = if ok { 0 } else { failures + 1 };
            let wait = match (&hole, ok) {
                (Some(h), _) => (Duration::from_secs(u64::from(h.lease_secs)) / 2)
                    .saturating_sub(h.renewed.elapsed())
                    .min(self.settings.check_interval),
                (None, true) => self.settings.check_interval,
                (None, false) => {
                    backoff(failures, self.settings.retry_min, self.settings.retry_max)
                }
            };
            if shutdown.sleep(wait).await {
                break;
            }
        }
        if let Some(h) = hole {
            match h.router.unmap(h.internal).await {
                Ok(()) => tracing::info!(internal = %h.internal, "IPv6 pinhole removed"),
                Err(e) => tracing::warn!("IPv6 pinhole: could not remove it: {e}"),
            }
        }
        self.update(|st| st.state = "stopped".into());
    }

    fn update(&self, f: impl FnOnce(&mut PinholeState)) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut st);
        st.updated_secs = crate::clock::now_secs();
        save_json(&self.data_dir, STATE_FILE, &*st);
    }

    /// Takes the address out of the record and says why (once per change in the log).
    fn withdraw(&self, state: &str, why: String) {
        self.address.set_ipv6(None);
        self.update(|st| {
            if st.state != state || st.last_error.as_deref() != Some(why.as_str()) {
                tracing::warn!(ipv6 = state, "IPv6 address not announced: {why}");
            }
            st.state = state.into();
            st.last_error = Some(why);
        });
    }

    /// One look at the address and the pinhole; `false` when the next should come sooner.
    async fn round(&self, hole: &mut Option<Hole>) -> bool {
        let port = self.listen.port();
        let Some((gateway, dev)) = ipv6::default_gateway(natpmp::SERVER_PORT) else {
            self.withdraw("no_route", "no IPv6 default route".into());
            return false;
        };
        let listen_ip = match self.listen.ip() {
            IpAddr::V6(ip) => ip,
            IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
        };
        let Some(ip) = ipv6::stable_global_address(listen_ip, &dev) else {
            self.withdraw(
                "no_address",
                format!("no stable global IPv6 address on {dev}"),
            );
            return false;
        };
        if self.settings.ipv6 == Ipv6Mode::Open {
            self.address.set_ipv6(Some((ip, port)));
            self.update(|st| {
                *st = PinholeState {
                    state: "open".into(),
                    address: Some(ip.to_string()),
                    port,
                    last_error: None,
                    ..Default::default()
                };
            });
            return true;
        }
        let internal = SocketAddr::new(IpAddr::V6(ip), port);
        if let Some(h) = hole.take() {
            if h.internal != internal {
                // A new prefix: the old address's pinhole goes, one for the new one comes.
                tracing::info!(old = %h.internal, new = %internal, "the IPv6 address changed; moving the pinhole");
                let _ = h.router.unmap(h.internal).await;
            } else if let Err(e) = h.router.external().await {
                self.withdraw("no_gateway", format!("the router stopped answering ({e})"));
                return false;
            } else if h.router.generation() != h.generation {
                tracing::warn!("the router restarted: opening the IPv6 pinhole again");
                *hole = Some(h);
            } else if !renew_due(h.lease_secs, h.renewed.elapsed()) {
                *hole = Some(h);
                return true;
            } else {
                *hole = Some(h);
            }
        }
        self.open(hole, gateway, ip, port).await
    }

    /// Opens (or renews) the pinhole for `ip`, `port` at the router at `gateway`.
    async fn open(
        &self,
        hole: &mut Option<Hole>,
        gateway: SocketAddr,
        ip: Ipv6Addr,
        port: u16,
    ) -> bool {
        let internal = SocketAddr::new(IpAddr::V6(ip), port);
        let started = Instant::now();
        let router = match hole.as_ref() {
            Some(h) => h.router.clone(),
            None => {
                self.update(|st| st.state = "searching".into());
                match PortControl::at(Protocol::Pcp, gateway, self.settings.discovery_timeout).await
                {
                    Ok(r) => r,
                    Err(e) => {
                        self.withdraw("no_gateway", format!("no pinhole: {e}"));
                        return false;
                    }
                }
            }
        };
        let lease = lease_secs(self.settings.lease);
        let granted = router.map(internal, port, lease).await;
        let (external_port, lease_secs) = match granted {
            AddOutcome::Granted {
                external_port,
                lease_secs,
            } => (external_port, lease_secs),
            AddOutcome::Refused(e) => {
                *hole = None;
                self.withdraw("refused", format!("the router refused the pinhole: {e}"));
                return false;
            }
            other => {
                *hole = None;
                self.withdraw("refused", format!("an unexpected answer: {other:?}"));
                return false;
            }
        };
        if external_port != port {
            // IPv6 has no port translation: a router that names another port did not open
            // this one.
            let _ = router.unmap(internal).await;
            *hole = None;
            self.withdraw(
                "refused",
                format!("the router opened port {external_port}, not {port}"),
            );
            return false;
        }
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let renewals = match hole.as_ref() {
            Some(h) if h.internal == internal => h.renewals + 1,
            _ => {
                tracing::info!(%internal, lease_secs, router = %router, took_ms, "IPv6 pinhole opened");
                0
            }
        };
        *hole = Some(Hole {
            generation: router.generation(),
            router: router.clone(),
            internal,
            lease_secs,
            renewed: Instant::now(),
            renewals,
        });
        self.address.set_ipv6(Some((ip, port)));
        self.update(|st| {
            let first = renewals == 0;
            st.state = "pinhole_open".into();
            st.address = Some(internal.ip().to_string());
            st.port = port;
            st.gateway = Some(router.to_string());
            st.lease_secs = lease_secs;
            st.renewals = renewals;
            if first {
                st.took_ms = Some(took_ms);
            }
            st.last_error = None;
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ipv6: Ipv6Mode, enabled: bool) -> crate::config::Upnp {
        let mut s = crate::config::Config::defaults().upnp;
        s.ipv6 = ipv6;
        s.enabled = enabled;
        s
    }

    #[test]
    fn the_rung_runs_only_with_a_listener_that_takes_ipv6() {
        let any6: SocketAddr = "[::]:6287".parse().unwrap();
        assert_eq!(off_reason(&settings(Ipv6Mode::Pinhole, true), any6), None);
        assert_eq!(off_reason(&settings(Ipv6Mode::Open, false), any6), None);
        let global: SocketAddr = "[2001:db8:1::10]:6287".parse().unwrap();
        assert_eq!(off_reason(&settings(Ipv6Mode::Pinhole, true), global), None);
        let v4 = off_reason(
            &settings(Ipv6Mode::Pinhole, true),
            "0.0.0.0:6287".parse().unwrap(),
        )
        .unwrap();
        assert!(
            v4.contains("IPv4 only") && v4.contains("\"[::]:6287\""),
            "{v4}"
        );
        let local = off_reason(
            &settings(Ipv6Mode::Pinhole, true),
            "[fd00::2]:6287".parse().unwrap(),
        )
        .unwrap();
        assert!(local.contains("not a global address"), "{local}");
        for lo in ["127.0.0.1:6287", "[::1]:6287"] {
            assert_eq!(
                off_reason(&settings(Ipv6Mode::Pinhole, true), lo.parse().unwrap()).as_deref(),
                Some("the PubkyTLS listener is on loopback")
            );
        }
        assert_eq!(
            off_reason(&settings(Ipv6Mode::Off, true), any6).as_deref(),
            Some("upnp.ipv6 = \"off\"")
        );
        assert_eq!(
            off_reason(&settings(Ipv6Mode::Pinhole, false), any6).as_deref(),
            Some("upnp.enabled = false")
        );
    }
}
