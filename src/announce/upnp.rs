//! Opens the device's ports on the household router: finds the gateway by trying the
//! ladder of `[upnp] protocols` in turn (UPnP IGD, NAT-PMP, PCP), maps the PubkyTLS port
//! (and the plain HTTP port when configured), reads the external address, renews leases at
//! half-life, maps again after the router lost its table (UPnP: the mapping is no longer
//! listed; NAT-PMP and PCP: the router's epoch went back), and removes the mappings on a
//! clean stop. What the router says feeds [`PublicAddress`] (so the pkarr record follows the
//! external address and the mapped port) and `<data>/upnp.json` (so `pubky-edge status` can
//! report it).
//!
//! The decisions (which port to try next, when to renew, what an external address means) are
//! the pure functions of `mapping`; the calls to the router are in `router`.
//! A failure never stops the server: it is reported and retried with backoff.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event;
use smol::future::FutureExt;

use super::address::PublicAddress;
use super::mapping::{
    after_add, classify, lease_secs, renew_due, AddOutcome, Attempt, External, NatKind, Next,
    PassedOver, PortRequest,
};
use super::router::{local_ip_towards, Router};
use super::worker::{backoff, save_json};
use crate::runtime::shutdown::ShutdownSignal;

pub use super::mapper_state::{MappingState, Rung, UpnpState, STATE_FILE};

struct Held {
    req: PortRequest,
    attempt: Attempt,
    internal: SocketAddr,
    /// The router's restart count (`Router::generation`) when it was made.
    generation: u64,
    renewed: Instant,
    state: MappingState,
}

pub struct PortMapper {
    /// Timing and policy (`[upnp]`).
    pub settings: crate::config::Upnp,
    pub ports: Vec<PortRequest>,
    /// The listeners' own address when it is a specific one (else the route to the gateway
    /// decides which local address the router forwards to).
    pub listen_ip: IpAddr,
    pub address: Arc<PublicAddress>,
    pub data_dir: PathBuf,
    pub state: Arc<Mutex<UpnpState>>,
    /// Notified after every round.
    pub changed: Arc<Event>,
}

impl PortMapper {
    pub async fn run(self, shutdown: ShutdownSignal) {
        let mut gateway: Option<Router> = None;
        let mut passed_over = PassedOver::default();
        let mut held: Vec<Held> = Vec::new();
        let mut failures = 0u32;
        loop {
            // A round waiting on a silent router must not hold up the stop. A mapping made
            // in an interrupted round is not removed; its lease ends it.
            let round = async { Some(self.round(&mut gateway, &mut held, &mut passed_over).await) }
                .or(async {
                    shutdown.wait().await;
                    None
                })
                .await;
            let Some(ok) = round else {
                break;
            };
            // Whatever the router said, the publisher waits no longer: without a public
            // address from the router, the configured or local one is announced.
            self.address.release();
            failures = if ok { 0 } else { failures + 1 };
            let wait = if ok {
                self.next_check(&held)
            } else {
                backoff(failures, self.settings.retry_min, self.settings.retry_max)
            };
            self.changed.notify(usize::MAX);
            let stop = shutdown.sleep(wait).await;
            if stop {
                break;
            }
        }
        self.remove_all(gateway, held).await;
        self.changed.notify(usize::MAX);
    }

    fn next_check(&self, held: &[Held]) -> Duration {
        held.iter()
            .filter(|h| h.attempt.lease_secs != 0)
            .map(|h| {
                let half = Duration::from_secs(u64::from(h.attempt.lease_secs)) / 2;
                half.saturating_sub(h.renewed.elapsed())
            })
            .fold(self.settings.check_interval, Duration::min)
    }

    fn update(&self, f: impl FnOnce(&mut UpnpState)) {
        let snapshot = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut st);
            st.updated_secs = crate::clock::now_secs();
            st.clone()
        };
        save_json(&self.data_dir, STATE_FILE, &snapshot);
    }

    fn fail(&self, state: &str, error: String) {
        tracing::warn!(upnp = state, "port mapping: {error}; will retry");
        self.update(|st| {
            st.state = state.into();
            st.last_error = Some(error);
        });
    }

    /// One pass: find the gateway if needed, read the external address, map or renew.
    /// Returns false when something failed (the caller backs off).
    async fn round(
        &self,
        gateway: &mut Option<Router>,
        held: &mut Vec<Held>,
        passed_over: &mut PassedOver,
    ) -> bool {
        let gw = match gateway.clone() {
            Some(gw) => gw,
            None => match self.search(passed_over).await {
                Some(gw) => {
                    held.clear();
                    *gateway = Some(gw.clone());
                    gw
                }
                None => return false,
            },
        };
        let Some(local_ip) = local_ip_towards(self.listen_ip, gw.addr()) else {
            self.fail("error", format!("no local address towards {}", gw.addr()));
            return false;
        };
        let Some(mut answer) = self.external(&gw).await else {
            *gateway = None;
            return false;
        };
        let mut errors = Vec::new();
        for req in &self.ports {
            if let Err(e) = self.keep_mapped(&gw, local_ip, req, held).await {
                errors.push(format!("{}: {e}", req.name));
            }
        }
        let tls_mapped = held.iter().any(|h| h.req.name == "pubky_tls");
        if !tls_mapped
            && !errors.is_empty()
            && passed_over.ladder_goes_on(&self.settings.protocols, gw.protocol())
        {
            // A router may answer a protocol and refuse its mappings (an ACL, or UPnP left on
            // read-only) while it maps through another: the next search skips this one.
            let why = errors.join("; ");
            tracing::warn!(
                protocol = gw.protocol().label(),
                "port mapping: the router refused the mapping ({why}); asking in the next protocol"
            );
            passed_over.push(gw.protocol(), why);
            // What it said of its external address still tells (a router that names none
            // sits behind carrier-grade NAT, and refuses mappings for that reason).
            let (external_ip, nat) = answer;
            self.update(|st| {
                st.external_ip = external_ip.map(|ip| ip.to_string());
                st.nat = nat;
            });
            // What this protocol did map (the HTTP port) is not left behind.
            Self::unmap(&gw, std::mem::take(held)).await;
            *gateway = None;
            return false;
        }
        if answer == (None, None) && !held.is_empty() {
            // PCP names the external address in its mapping answers.
            match self.external(&gw).await {
                Some(a) => answer = a,
                None => {
                    *gateway = None;
                    return false;
                }
            }
        }
        let (external_ip, nat) = answer;
        // After the mappings, so the first record carries the mapped port too.
        if let (Some(ip), Some(NatKind::Public)) = (external_ip, nat) {
            self.address.set(ip);
        }
        let mappings = held.iter().map(|h| h.state.clone()).collect();
        let gw_text = gw.to_string();
        let error = (!errors.is_empty()).then(|| format!("mapping refused: {}", errors.join("; ")));
        if let Some(e) = &error {
            tracing::warn!("port mapping: {e}; will retry");
        }
        self.update(|st| {
            st.state = if error.is_some() { "refused" } else { "mapped" }.into();
            st.protocol = Some(gw.protocol());
            st.gateway = Some(gw_text);
            st.local_ip = Some(local_ip.to_string());
            st.external_ip = external_ip.map(|ip| ip.to_string());
            st.nat = nat;
            st.mappings = mappings;
            st.last_error = error.clone();
        });
        error.is_none()
    }

    /// Asks the router in each protocol of the ladder until one answers, passing over those
    /// that refused the mapping since the last search that found nothing.
    async fn search(&self, passed_over: &mut PassedOver) -> Option<Router> {
        self.update(|st| {
            st.state = "searching".into();
            st.protocol = None;
            st.ladder.clear();
        });
        let mut why = Vec::new();
        for &protocol in &self.settings.protocols {
            if let Some(refused) = passed_over.refusal(protocol) {
                let rung = Rung {
                    protocol,
                    answered: true,
                    result: format!("passed over: it refused the mapping ({refused})"),
                    took_ms: 0,
                };
                self.update(|st| st.ladder.push(rung));
                why.push(format!("{}: refused the mapping", protocol.label()));
                continue;
            }
            let started = Instant::now();
            let found = Router::search(protocol, self.settings.discovery_timeout).await;
            let rung = Rung {
                protocol,
                answered: found.is_ok(),
                result: match &found {
                    Ok(r) => format!("answered at {}", r.addr()),
                    Err(e) => e.clone(),
                },
                took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            tracing::debug!(protocol = protocol.label(), took_ms = rung.took_ms, result = %rung.result, "port mapping: asked the router");
            self.update(|st| st.ladder.push(rung));
            match found {
                Ok(r) => {
                    tracing::info!(gateway = %r, "router found");
                    self.update(|st| st.protocol = Some(protocol));
                    return Some(r);
                }
                Err(e) => why.push(format!("{}: {e}", protocol.label())),
            }
        }
        // Next time every protocol is asked again: a refusal may have been passing.
        let state = if passed_over.is_empty() {
            "no_gateway"
        } else {
            "refused"
        };
        passed_over.clear();
        self.fail(state, format!("no router answered ({})", why.join("; ")));
        None
    }

    /// Reads the external address; a public one becomes the record's address. `None` when
    /// the gateway stopped answering (it is searched again).
    async fn external(&self, gw: &Router) -> Option<(Option<IpAddr>, Option<NatKind>)> {
        let (external_ip, nat) = match gw.external().await {
            Ok(External::Address(ip)) => (Some(ip), Some(classify(ip))),
            Ok(External::NoneNamed) => (None, Some(NatKind::NoPublicAddress)),
            Ok(External::Unknown) => (None, None),
            Err(e) => {
                self.fail("error", format!("the gateway stopped answering ({e})"));
                return None;
            }
        };
        let (known_ip, known_nat) = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (st.external_ip.clone(), st.nat)
        };
        match (external_ip, nat) {
            (Some(_), Some(NatKind::Public)) => {}
            // Said once per change, not every round.
            (ip, Some(kind))
                if (ip.map(|i| i.to_string()), Some(kind)) != (known_ip, known_nat) =>
            {
                tracing::warn!(
                    external = ?ip,
                    nat = ?kind,
                    "port mapping: the router has no public external address (carrier-grade or double NAT): inbound connections from the internet will not arrive"
                )
            }
            _ => {}
        }
        Some((external_ip, nat))
    }

    /// Maps `req` if it is not mapped yet, renews it when its lease is at half-life.
    async fn keep_mapped(
        &self,
        gw: &Router,
        local_ip: IpAddr,
        req: &PortRequest,
        held: &mut Vec<Held>,
    ) -> Result<(), String> {
        let pos = held.iter().position(|h| h.req == *req);
        if let Some(i) = pos {
            let h = &held[i];
            if !renew_due(h.attempt.lease_secs, h.renewed.elapsed()) {
                let internal = SocketAddr::new(local_ip, req.internal_port);
                if gw
                    .still_mapped(h.attempt.external_port, internal, h.generation)
                    .await
                {
                    return Ok(());
                }
                // A router that rebooted (households pull plugs) forgets its mappings.
                tracing::warn!(
                    port = h.attempt.external_port,
                    "port mapping: the router lost the mapping; mapping again"
                );
            }
        }
        let start = match pos {
            Some(i) => held[i].attempt,
            None => Attempt {
                external_port: req.external_port,
                lease_secs: lease_secs(self.settings.lease),
                alternatives: 0,
            },
        };
        let internal = SocketAddr::new(local_ip, req.internal_port);
        let attempt = match self.negotiate(gw, req, internal, start).await {
            Ok(a) => a,
            Err(e) => {
                if let Some(i) = pos {
                    held.remove(i);
                }
                return Err(e);
            }
        };
        if pos.is_none() {
            tracing::info!(
                name = %req.name, %internal, external = attempt.external_port,
                lease_secs = attempt.lease_secs, protocol = gw.protocol().label(), "port mapped"
            );
        }
        if req.name == "pubky_tls" {
            self.address.set_pubky_tls_port(attempt.external_port);
        }
        let h = Held {
            req: req.clone(),
            attempt,
            internal,
            generation: gw.generation(),
            renewed: Instant::now(),
            state: MappingState {
                name: req.name.clone(),
                internal: internal.to_string(),
                external_port: attempt.external_port,
                lease_secs: attempt.lease_secs,
                renewed_secs: crate::clock::now_secs(),
                renewals: pos.map_or(0, |i| held[i].state.renewals + 1),
            },
        };
        match pos {
            Some(i) => held[i] = h,
            None => held.push(h),
        }
        Ok(())
    }

    /// Asks for the mapping until the pure step says done or give up.
    async fn negotiate(
        &self,
        gw: &Router,
        req: &PortRequest,
        internal: SocketAddr,
        mut attempt: Attempt,
    ) -> Result<Attempt, String> {
        loop {
            let outcome = gw
                .add(
                    attempt.external_port,
                    internal,
                    attempt.lease_secs,
                    &self.settings.description,
                )
                .await;
            if outcome != AddOutcome::Mapped {
                tracing::debug!(
                    port = attempt.external_port,
                    ?outcome,
                    protocol = gw.protocol().label(),
                    "mapping request"
                );
            }
            match after_add(req, attempt, outcome, self.settings.alternative_ports) {
                Next::Done(a) => return Ok(a),
                Next::Retry(a) => attempt = a,
                Next::GiveUp(e) => return Err(e),
            }
        }
    }

    /// Deletes our mappings (bounded in time so a vanished router cannot hold up the stop).
    /// Removes `held` at the router (each bounded in time).
    async fn unmap(gw: &Router, held: Vec<Held>) {
        for h in held {
            let port = h.attempt.external_port;
            match gw.remove(port, h.internal).await {
                Ok(()) => tracing::info!(port, protocol = gw.protocol().label(), "mapping removed"),
                Err(e) => tracing::warn!(port, "port mapping: could not remove the mapping: {e}"),
            }
        }
    }

    async fn remove_all(&self, gateway: Option<Router>, held: Vec<Held>) {
        let Some(gw) = gateway else {
            self.update(|st| st.state = "stopped".into());
            return;
        };
        Self::unmap(&gw, held).await;
        self.update(|st| {
            st.state = "stopped".into();
            st.mappings.clear();
        });
    }
}
