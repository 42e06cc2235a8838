//! Talking to the household router over UPnP IGD: discovery, the external address, adding,
//! listing and removing TCP port mappings. Each call is `igd-next`'s blocking client run in
//! `smol::unblock`, and answers come back in the terms of `mapping` (no igd-next types leak
//! to the port mapper).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use igd_next::{Gateway, PortMappingProtocol, SearchOptions};
use smol::future::FutureExt;

use super::mapping::AddOutcome;

/// Router table entries read when looking for our mapping.
const MAX_LISTED: u32 = 128;

/// What the router says about its external address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum External {
    Address(IpAddr),
    /// It answered, with an error or an empty address.
    NoneNamed,
}

/// A router found on the LAN.
#[derive(Debug, Clone)]
pub struct Router {
    gw: Gateway,
}

impl std::fmt::Display for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.gw.fmt(f)
    }
}

impl Router {
    /// SSDP discovery; the error is a sentence for the report.
    pub async fn search(timeout: Duration) -> Result<Router, String> {
        let found = smol::unblock(move || {
            igd_next::search_gateway(SearchOptions {
                timeout: Some(timeout),
                single_search_timeout: Some(timeout),
                ..Default::default()
            })
        })
        .await;
        found.map(|gw| Router { gw }).map_err(|e| match e {
            igd_next::SearchError::IoError(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                format!("nothing answered within {timeout:?}; is UPnP on in the router?")
            }
            e => e.to_string(),
        })
    }

    /// The address of the router's control endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.gw.addr
    }

    /// The external address; `Err` when the router stopped answering.
    pub async fn external(&self) -> Result<External, String> {
        let g = self.gw.clone();
        match smol::unblock(move || g.get_external_ip()).await {
            Ok(ip) if !ip.is_unspecified() => Ok(External::Address(ip)),
            Ok(_) => Ok(External::NoneNamed),
            Err(igd_next::GetExternalIpError::RequestError(
                igd_next::RequestError::ErrorCode(..) | igd_next::RequestError::InvalidResponse(_),
            )) => Ok(External::NoneNamed),
            Err(e) => Err(e.to_string()),
        }
    }

    /// AddPortMapping (TCP); `lease_secs` 0 = permanent.
    pub async fn add(
        &self,
        external_port: u16,
        internal: SocketAddr,
        lease_secs: u32,
        description: &str,
    ) -> AddOutcome {
        let (g, desc) = (self.gw.clone(), description.to_string());
        smol::unblock(move || {
            g.add_port(
                PortMappingProtocol::TCP,
                external_port,
                internal,
                lease_secs,
                &desc,
            )
        })
        .await
        .into()
    }

    /// DeletePortMapping (TCP), bounded in time so a vanished router cannot hold up a stop.
    pub async fn remove(&self, external_port: u16) -> Result<(), String> {
        let g = self.gw.clone();
        smol::unblock(move || {
            g.remove_port(PortMappingProtocol::TCP, external_port)
                .map_err(|e| e.to_string())
        })
        .or(async {
            smol::Timer::after(Duration::from_secs(3)).await;
            Err("the router did not answer within 3 s".into())
        })
        .await
    }

    /// Whether the router still lists our mapping of `external_port` (read-only, so renewals
    /// stay at half-life). A router that cannot list mappings is trusted until the renewal.
    pub async fn still_mapped(&self, external_port: u16, internal: SocketAddr) -> bool {
        use igd_next::GetGenericPortMappingEntryError as E;
        let g = self.gw.clone();
        smol::unblock(move || {
            for i in 0..MAX_LISTED {
                match g.get_generic_port_mapping_entry(i) {
                    Ok(e)
                        if e.external_port == external_port
                            && e.protocol == PortMappingProtocol::TCP =>
                    {
                        return e.internal_client == internal.ip().to_string()
                            && e.internal_port == internal.port();
                    }
                    Ok(_) => {}
                    Err(E::SpecifiedArrayIndexInvalid) => return false,
                    Err(_) => return true,
                }
            }
            true
        })
        .await
    }
}

/// The local address the router should forward to: the listener's own when it is a specific
/// address, else the source address of the route to the router (a UDP `connect` sends
/// nothing).
pub fn local_ip_towards(listen_ip: IpAddr, router: SocketAddr) -> Option<IpAddr> {
    if !listen_ip.is_unspecified() {
        return Some(listen_ip);
    }
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    probe.connect(router).ok()?;
    Some(probe.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_listener_address_is_used_as_is() {
        let ip: IpAddr = "192.168.1.5".parse().unwrap();
        assert_eq!(
            local_ip_towards(ip, "192.168.1.1:5000".parse().unwrap()),
            Some(ip)
        );
    }
}
