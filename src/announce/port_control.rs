//! A NAT-PMP or PCP client for the router at the default gateway: one UDP exchange per
//! request, retransmitted from 250 ms doubling (RFC 6886 §3.1; PCP's own 3 s first wait is
//! too slow for a ladder) until the configured timeout. It remembers what the mappings'
//! renewals and deletions need (PCP's nonces) and the server's epoch, and counts the
//! router's restarts seen in it: a mapping made before the last one is gone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::Async;

use super::mapping::{epoch_lost, AddOutcome, External, Protocol};
use super::{natpmp, pcp};

/// First retransmission wait (RFC 6886 §3.1).
const FIRST_WAIT: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Known {
    /// The last epoch read and when.
    epoch: Option<(u32, Instant)>,
    /// Restarts of the router seen in its epoch.
    generation: u64,
    /// PCP: the nonce of each internal port's mapping.
    nonces: HashMap<u16, pcp::Nonce>,
    /// PCP: the external address the last mapping named.
    external: Option<IpAddr>,
}

/// A router that answered NAT-PMP or PCP.
#[derive(Clone)]
pub struct PortControl {
    protocol: Protocol,
    gateway: SocketAddr,
    timeout: Duration,
    known: Arc<Mutex<Known>>,
}

impl PortControl {
    /// Asks the default gateway (NAT-PMP: its external address; PCP: an ANNOUNCE); the
    /// error is a sentence for the report.
    pub async fn find(protocol: Protocol, timeout: Duration) -> Result<PortControl, String> {
        let gw =
            default_gateway().ok_or_else(|| "no default route, so no router to ask".to_string())?;
        Self::at(
            protocol,
            SocketAddr::new(IpAddr::V4(gw), natpmp::SERVER_PORT),
            timeout,
        )
        .await
    }

    /// Asks the router at `gateway` as [`find`](Self::find) does (PCP over IPv6 goes to the
    /// IPv6 default gateway, for a firewall pinhole).
    pub async fn at(
        protocol: Protocol,
        gateway: SocketAddr,
        timeout: Duration,
    ) -> Result<PortControl, String> {
        let pc = PortControl {
            protocol,
            gateway,
            timeout,
            known: Arc::default(),
        };
        pc.external().await?;
        Ok(pc)
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn addr(&self) -> SocketAddr {
        self.gateway
    }

    /// Restarts of the router seen so far; a mapping made at an older count is gone.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes an epoch read from any answer.
    fn saw_epoch(&self, epoch: u32) {
        let mut k = self.lock();
        tracing::trace!(protocol = self.protocol.label(), epoch, "router epoch");
        if let Some((previous, at)) = k.epoch {
            if epoch_lost(previous, at.elapsed(), epoch) {
                k.generation += 1;
                tracing::warn!(
                    protocol = self.protocol.label(),
                    previous,
                    epoch,
                    "the router restarted (its epoch went back): its mappings are gone"
                );
            }
        }
        k.epoch = Some((epoch, Instant::now()));
    }

    /// The external address, read without changing anything: NAT-PMP asks for it; PCP has
    /// no such request, so this sends an ANNOUNCE (the router is alive, and its epoch) and
    /// gives the address the last mapping's answer named. Every answer's epoch is noted.
    /// `Err` when the router stopped answering.
    pub async fn external(&self) -> Result<External, String> {
        if self.protocol == Protocol::Pcp {
            let r = self
                .exchange(
                    None,
                    |ip| pcp::announce_request(ip).to_vec(),
                    |p| pcp::parse(p, pcp::ANNOUNCE, None),
                )
                .await?;
            let pcp::Response::Announced { epoch } = r else {
                return Err(pcp_error(r));
            };
            self.saw_epoch(epoch);
            return Ok(self
                .lock()
                .external
                .map_or(External::Unknown, External::Address));
        }
        let r = self
            .exchange(
                None,
                |_| natpmp::external_request().to_vec(),
                |p| natpmp::parse(p, natpmp::EXTERNAL),
            )
            .await?;
        match r {
            natpmp::Response::External { epoch, ip } => {
                self.saw_epoch(epoch);
                Ok(if ip.is_unspecified() {
                    External::NoneNamed
                } else {
                    External::Address(IpAddr::V4(ip))
                })
            }
            // Network failure: the router has no public address (RFC 6886 §3.5).
            natpmp::Response::Failed { code: 3 } => Ok(External::NoneNamed),
            r => Err(natpmp_error(r)),
        }
    }

    /// Maps TCP `internal` (the request is sent from its address, which is what both
    /// protocols map), or renews it; `lease_secs` 0 is not asked for (it would delete).
    pub async fn map(&self, internal: SocketAddr, suggested: u16, lease_secs: u32) -> AddOutcome {
        match self.request(internal, suggested, lease_secs.max(1)).await {
            // A lifetime of 0 in an answer to a request for more is no mapping at all.
            Ok((_, 0)) | Ok((0, _)) => AddOutcome::Refused(format!(
                "the router answered {} without a mapping",
                self.protocol.label()
            )),
            Ok((external_port, lease_secs)) => AddOutcome::Granted {
                external_port,
                lease_secs,
            },
            Err(e) => AddOutcome::Refused(e),
        }
    }

    /// Deletes the mapping of TCP `internal` (a request with lifetime 0).
    pub async fn unmap(&self, internal: SocketAddr) -> Result<(), String> {
        let pcp_unmapped =
            self.protocol == Protocol::Pcp && !self.lock().nonces.contains_key(&internal.port());
        if pcp_unmapped {
            return Ok(());
        }
        self.request(internal, 0, 0).await.map(|_| ())
    }

    /// One mapping request for TCP `internal` in the router's protocol; the answer's
    /// (external port, lifetime).
    async fn request(
        &self,
        internal: SocketAddr,
        suggested: u16,
        lease: u32,
    ) -> Result<(u16, u32), String> {
        let port = internal.port();
        if self.protocol == Protocol::Pcp {
            let nonce = *self.lock().nonces.entry(port).or_insert_with(|| {
                let mut n = [0u8; 12];
                getrandom::fill(&mut n).expect("OS randomness");
                n
            });
            let r = self
                .exchange(
                    Some(internal.ip()),
                    |ip| pcp::map_request(ip, &nonce, port, suggested, lease).to_vec(),
                    |p| pcp::parse(p, pcp::MAP, Some(&nonce)),
                )
                .await?;
            let pcp::Response::Mapped {
                epoch,
                lifetime_secs,
                external_port,
                external_ip,
                ..
            } = r
            else {
                return Err(pcp_error(r));
            };
            self.saw_epoch(epoch);
            if lease != 0 {
                self.lock().external = Some(external_ip).filter(|ip| !ip.is_unspecified());
            }
            return Ok((external_port, lifetime_secs));
        }
        let r = self
            .exchange(
                Some(internal.ip()),
                |_| natpmp::map_request(port, suggested, lease).to_vec(),
                |p| {
                    natpmp::parse(p, natpmp::MAP_TCP).filter(|r| {
                        !matches!(r, natpmp::Response::Mapped { internal_port, .. } if *internal_port != port)
                    })
                },
            )
            .await?;
        let natpmp::Response::Mapped {
            epoch,
            external_port,
            lifetime_secs,
            ..
        } = r
        else {
            return Err(natpmp_error(r));
        };
        self.saw_epoch(epoch);
        Ok((external_port, lifetime_secs))
    }

    /// Sends `request(local ip)` from `from` (any address when `None`) and waits for an
    /// answer `accept` takes, resending at 250 ms, 500 ms, 1 s… until the timeout.
    async fn exchange<T>(
        &self,
        from: Option<IpAddr>,
        request: impl Fn(IpAddr) -> Vec<u8>,
        accept: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<T, String> {
        let gw = self.gateway;
        let any = match gw {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let bind = SocketAddr::new(from.unwrap_or(any), 0);
        let sock = UdpSocket::bind(bind).map_err(|e| format!("UDP socket on {bind}: {e}"))?;
        sock.connect(gw)
            .map_err(|e| format!("no route to {gw}: {e}"))?;
        let local = sock.local_addr().map_err(|e| e.to_string())?.ip();
        let sock = Async::new(sock).map_err(|e| e.to_string())?;
        let packet = request(local);
        let deadline = Instant::now() + self.timeout;
        let mut wait = FIRST_WAIT;
        let mut buf = [0u8; 1100];
        loop {
            sock.send(&packet)
                .await
                .map_err(|e| format!("sending to {gw}: {e}"))?;
            let until = (Instant::now() + wait).min(deadline);
            loop {
                let got = smol::future::or(async { Some(sock.recv(&mut buf).await) }, async {
                    smol::Timer::at(until).await;
                    None
                })
                .await;
                match got {
                    None => break,
                    Some(Ok(n)) => {
                        if let Some(answer) = accept(&buf[..n]) {
                            return Ok(answer);
                        }
                    }
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Err(format!(
                            "the router refused ({gw}: nothing listens for {})",
                            self.protocol.label()
                        ));
                    }
                    Some(Err(e)) => return Err(format!("receiving from {gw}: {e}")),
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no {} answer from {gw} within {:?}",
                    self.protocol.label(),
                    self.timeout
                ));
            }
            wait = wait.saturating_mul(2);
        }
    }
}

/// What a PCP answer that is not the one asked for says.
fn pcp_error(r: pcp::Response) -> String {
    match r {
        pcp::Response::Failed { code } => pcp::result_text(code),
        pcp::Response::NatPmpOnly => "the router speaks NAT-PMP, not PCP".into(),
        _ => "an unexpected answer".into(),
    }
}

/// What a NAT-PMP answer that is not the one asked for says.
fn natpmp_error(r: natpmp::Response) -> String {
    match r {
        natpmp::Response::Failed { code } => natpmp::result_text(code),
        _ => "an unexpected answer".into(),
    }
}

impl std::fmt::Display for PortControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.protocol.label(), self.gateway)
    }
}

/// The IPv4 default gateway, from the kernel's routing table (where NAT-PMP and PCP
/// requests go).
pub fn default_gateway() -> Option<Ipv4Addr> {
    parse_default_route(&std::fs::read_to_string("/proc/net/route").ok()?)
}

/// The gateway of the first default route in `/proc/net/route` text: destination 0, the
/// RTF_GATEWAY flag, addresses as host-order hex.
fn parse_default_route(table: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| u32::from_str_radix(f.get(i)?, 16).ok();
        let (dest, gw, flags) = (hex(1)?, hex(2)?, hex(3)?);
        let up_via_gateway = flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
        // The kernel prints the address as a native integer whose bytes in memory are in
        // network order.
        (dest == 0 && up_via_gateway).then(|| Ipv4Addr::from(gw.to_ne_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_gateway_is_read_from_the_routing_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00004DC0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t014DA8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_default_route(table),
            Some(Ipv4Addr::new(192, 168, 77, 1))
        );
        let no_default = "Iface\tDestination\tGateway\tFlags\neth0\t00004DC0\t00000000\t0001\n";
        assert_eq!(parse_default_route(no_default), None);
    }
}
