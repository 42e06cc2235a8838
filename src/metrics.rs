//! Metrics: counters, gauges and histograms the server updates as it works (plain atomics,
//! nothing on the request path allocates or locks), rendered as Prometheus text by
//! `GET /metrics` on the metrics listener (`http::operator::metrics`). The series named after the
//! reference homeserver keep its names and its `otel_scope_name` label so existing
//! dashboards work; device health series are prefixed `pubky_edge_`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The label the reference homeserver's exporter puts on each of its series.
const SCOPE: &str = "otel_scope_name=\"pubky_homeserver\"";

/// What a request was for, as a small fixed label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    StorageRead,
    StorageWrite,
    Events,
    Auth,
    Admin,
    Other,
}

impl RouteClass {
    const ALL: [RouteClass; 6] = [
        RouteClass::StorageRead,
        RouteClass::StorageWrite,
        RouteClass::Events,
        RouteClass::Auth,
        RouteClass::Admin,
        RouteClass::Other,
    ];
    fn label(self) -> &'static str {
        match self {
            RouteClass::StorageRead => "storage_read",
            RouteClass::StorageWrite => "storage_write",
            RouteClass::Events => "events",
            RouteClass::Auth => "auth",
            RouteClass::Admin => "admin",
            RouteClass::Other => "other",
        }
    }
}

/// A fixed-bucket histogram of millisecond values.
pub struct Histogram {
    bounds: &'static [u64],
    /// Bucket by whole milliseconds, as the reference records its series (0.4 ms is in
    /// `le="0"`); our own series bucket the exact value.
    whole_ms: bool,
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in microseconds, so sub-millisecond requests still add up.
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            whole_ms: false,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// A histogram of one of the reference's series: its buckets, whole milliseconds.
    fn reference(bounds: &'static [u64]) -> Histogram {
        Histogram {
            whole_ms: true,
            ..Histogram::new(bounds)
        }
    }

    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let at = if self.whole_ms { us / 1000 * 1000 } else { us };
        for (b, le) in self.buckets.iter().zip(self.bounds) {
            if at <= le.saturating_mul(1000) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, le) in self.buckets.iter().zip(self.bounds) {
            let n = b.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

const LATENCY_MS: &[u64] = &[1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
const STREAM_LIFETIME_MS: &[u64] = &[10, 100, 1000, 10000, 100000];
/// The OpenTelemetry default boundaries, which the reference's query histograms use.
const QUERY_MS: &[u64] = &[
    0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000,
];

/// Labels of `storage_request_count_total`, each as an index.
#[derive(Debug, Clone, Copy)]
pub struct StorageRequest {
    /// 0 = path, 1 = legacy
    pub addressing: usize,
    /// 0 = absent, 1 = matching, 2 = other
    pub host_header: usize,
    /// 0 = false, 1 = true
    pub host_query: usize,
    /// 0 = none, 1 = cookie, 2 = grant
    pub auth: usize,
}

pub struct Metrics {
    requests: Vec<AtomicU64>,
    latency: Vec<Histogram>,
    rate_limited: AtomicU64,
    signups: AtomicU64,
    storage_requests: Vec<AtomicU64>,
    events_query: Histogram,
    stream_query: Histogram,
    stream_lifetime: Histogram,
    streams_active: AtomicI64,
    pub(crate) streams_lagged: AtomicU64,
    /// Live streams that fell half of `events.max_lag` behind.
    pub(crate) streams_half_behind: AtomicU64,
    /// Event records read by the feed and the streams' scans.
    events_examined: AtomicU64,
    streams_refused: AtomicU64,
    dht_last_publish: AtomicU64,
    /// A standby's distance behind its primary (on either box).
    standby_lag_events: AtomicU64,
    standby_lag_seconds: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let n = RouteClass::ALL.len();
        Metrics {
            requests: (0..n * 5).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..n).map(|_| Histogram::new(LATENCY_MS)).collect(),
            rate_limited: AtomicU64::new(0),
            signups: AtomicU64::new(0),
            storage_requests: (0..36).map(|_| AtomicU64::new(0)).collect(),
            events_query: Histogram::reference(QUERY_MS),
            stream_query: Histogram::reference(QUERY_MS),
            stream_lifetime: Histogram::reference(STREAM_LIFETIME_MS),
            streams_active: AtomicI64::new(0),
            streams_lagged: AtomicU64::new(0),
            streams_half_behind: AtomicU64::new(0),
            events_examined: AtomicU64::new(0),
            streams_refused: AtomicU64::new(0),
            dht_last_publish: AtomicU64::new(0),
            standby_lag_events: AtomicU64::new(0),
            standby_lag_seconds: AtomicU64::new(0),
        }
    }

    /// One finished request: its class, status and time spent in the handler.
    pub fn request(&self, class: RouteClass, status: u16, took: Duration) {
        let i = RouteClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        let s = usize::from((status / 100).clamp(1, 5)) - 1;
        self.requests[i * 5 + s].fetch_add(1, Ordering::Relaxed);
        self.latency[i].observe(took);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    pub fn signup(&self) {
        self.signups.fetch_add(1, Ordering::Relaxed);
    }
    pub fn storage_request(&self, r: StorageRequest) {
        let i = ((r.addressing * 3 + r.host_header) * 2 + r.host_query) * 3 + r.auth;
        if let Some(c) = self.storage_requests.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub fn events_query(&self, d: Duration) {
        self.events_query.observe(d);
    }
    pub fn stream_query(&self, d: Duration) {
        self.stream_query.observe(d);
    }
    /// `n` event records were read to answer the feed or a stream.
    pub fn events_examined(&self, n: u64) {
        self.events_examined.fetch_add(n, Ordering::Relaxed);
    }
    pub fn stream_opened(&self) {
        self.streams_active.fetch_add(1, Ordering::Relaxed);
    }
    pub fn stream_closed(&self, lifetime: Duration) {
        self.streams_active.fetch_sub(1, Ordering::Relaxed);
        self.stream_lifetime.observe(lifetime);
    }
    /// A live stream fell half of `events.max_lag` behind (once per time it does).
    pub fn stream_half_behind(&self) {
        self.streams_half_behind.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_lagged(&self) {
        self.streams_lagged.fetch_add(1, Ordering::Relaxed);
    }
    pub fn stream_refused(&self) {
        self.streams_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub fn streams_active(&self) -> i64 {
        self.streams_active.load(Ordering::Relaxed)
    }

    /// Called by the DHT publisher after each successful publish (Unix seconds).
    pub fn set_dht_last_publish(&self, unix_secs: u64) {
        self.dht_last_publish.store(unix_secs, Ordering::Relaxed);
    }

    /// How far the standby is behind its primary: events, and seconds since it last held
    /// everything (set by the follower on a standby, by the feed on its primary).
    pub fn set_standby_lag(&self, events: u64, seconds: u64) {
        self.standby_lag_events.store(events, Ordering::Relaxed);
        self.standby_lag_seconds.store(seconds, Ordering::Relaxed);
    }

    /// The whole exposition. `device` carries the gauges read at scrape time.
    // Longer than 80 lines because it is the list of series, one entry each, in output order.
    pub fn render(&self, device: &Device) -> String {
        let mut o = String::with_capacity(8192);
        let g = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        g(
            &mut o,
            "signup_count_total",
            "counter",
            "Successful signups",
        );
        let n = self.signups.load(Ordering::Relaxed);
        let _ = writeln!(o, "signup_count_total{{{SCOPE}}} {n}");
        g(
            &mut o,
            "storage_request_count_total",
            "counter",
            "Storage requests by addressing and auth",
        );
        for (i, c) in self.storage_requests.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let auth = ["none", "cookie", "grant"][i % 3];
            let query = ["false", "true"][(i / 3) % 2];
            let header = ["absent", "matching", "other"][(i / 6) % 3];
            let mode = ["path", "legacy"][(i / 18) % 2];
            let _ = writeln!(o, "storage_request_count_total{{addressing_mode=\"{mode}\",auth_method=\"{auth}\",{SCOPE},pubky_host_header=\"{header}\",pubky_host_query=\"{query}\"}} {n}");
        }
        g(
            &mut o,
            "events_db_query_duration_ms",
            "histogram",
            "/events/ query time",
        );
        self.events_query
            .render(&mut o, "events_db_query_duration_ms", SCOPE);
        g(
            &mut o,
            "event_stream_db_query_duration_ms",
            "histogram",
            "Event stream batch query time",
        );
        self.stream_query
            .render(&mut o, "event_stream_db_query_duration_ms", SCOPE);
        g(
            &mut o,
            "event_stream_connection_duration_ms",
            "histogram",
            "Event stream lifetime",
        );
        self.stream_lifetime
            .render(&mut o, "event_stream_connection_duration_ms", SCOPE);
        g(
            &mut o,
            "event_stream_active_connections",
            "gauge",
            "Open event streams",
        );
        let _ = writeln!(
            o,
            "event_stream_active_connections{{{SCOPE}}} {}",
            self.streams_active()
        );
        g(
            &mut o,
            "event_stream_broadcast_lagged_count_total",
            "counter",
            "Live subscribers disconnected for falling behind",
        );
        let n = self.streams_lagged.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "event_stream_broadcast_lagged_count_total{{{SCOPE}}} {n}"
        );
        g(
            &mut o,
            "event_stream_broadcast_half_full_count_total",
            "counter",
            "Live subscribers that fell half of events.max_lag behind",
        );
        let n = self.streams_half_behind.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "event_stream_broadcast_half_full_count_total{{{SCOPE}}} {n}"
        );

        g(
            &mut o,
            "pubky_edge_http_requests_total",
            "counter",
            "Requests by route class and status class",
        );
        for (i, class) in RouteClass::ALL.iter().enumerate() {
            for s in 0..5 {
                let n = self.requests[i * 5 + s].load(Ordering::Relaxed);
                let _ = writeln!(
                    o,
                    "pubky_edge_http_requests_total{{route=\"{}\",status=\"{}xx\"}} {n}",
                    class.label(),
                    s + 1
                );
            }
        }
        g(
            &mut o,
            "pubky_edge_http_request_duration_ms",
            "histogram",
            "Handler time by route class (event streams: until the stream starts)",
        );
        for (i, class) in RouteClass::ALL.iter().enumerate() {
            let labels = format!("route=\"{}\"", class.label());
            self.latency[i].render(&mut o, "pubky_edge_http_request_duration_ms", &labels);
        }
        let gauges: [(&str, &str, &str, u64); 16] = [
            (
                "pubky_edge_rate_limited_total",
                "counter",
                "Requests answered 429",
                self.rate_limited.load(Ordering::Relaxed),
            ),
            (
                "pubky_edge_event_records_examined_total",
                "counter",
                "Event records read to answer the feed and the event streams",
                self.events_examined.load(Ordering::Relaxed),
            ),
            (
                "pubky_edge_event_streams_refused_total",
                "counter",
                "Event streams refused because the cap was reached",
                self.streams_refused.load(Ordering::Relaxed),
            ),
            (
                "pubky_edge_active_connections",
                "gauge",
                "Open client connections",
                device.connections,
            ),
            (
                "pubky_edge_connections_refused_total",
                "counter",
                "Client connections answered 503 and closed (cap or per-address share)",
                device.connections_refused,
            ),
            (
                "pubky_edge_connections_refused_per_ip_total",
                "counter",
                "Client connections refused because their address held its share",
                device.connections_refused_per_ip,
            ),
            (
                "pubky_edge_event_streams",
                "gauge",
                "Open event streams (client and admin)",
                self.streams_active().max(0) as u64,
            ),
            (
                "pubky_edge_process_resident_memory_bytes",
                "gauge",
                "Resident set size of the server process",
                device.rss_bytes,
            ),
            (
                "pubky_edge_store_disk_bytes",
                "gauge",
                "Bytes the data directory occupies on disk",
                device.store_bytes,
            ),
            (
                "pubky_edge_disk_free_bytes",
                "gauge",
                "Free bytes on the data directory's file system (for unprivileged users)",
                device.disk_free_bytes,
            ),
            (
                "pubky_edge_users",
                "gauge",
                "Accounts on this homeserver",
                device.users,
            ),
            (
                "pubky_edge_backup_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last successful backup (0 = never)",
                device.backup_last_success,
            ),
            (
                "pubky_edge_backup_problem",
                "gauge",
                "1 when the last backup failed or the last good one is over two days old",
                device.backup_problem,
            ),
            (
                "pubky_edge_dht_last_publish_timestamp_seconds",
                "gauge",
                "Unix time of the last successful DHT publish (0 = never)",
                self.dht_last_publish.load(Ordering::Relaxed),
            ),
            (
                "pubky_edge_standby_lag_events",
                "gauge",
                "Events of the primary's log the standby does not hold yet (0 without a standby)",
                self.standby_lag_events.load(Ordering::Relaxed),
            ),
            (
                "pubky_edge_standby_lag_seconds",
                "gauge",
                "Seconds since the standby last held the primary's whole log (0 when it does)",
                self.standby_lag_seconds.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in gauges {
            g(&mut o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
        self.render_addresses(&mut o, device);
        render_update(&mut o, &device.update);
        render_tunnel(&mut o, device);
        o
    }

    /// The two views of the public address, and whether they disagree (a NAT in front of
    /// the router).
    fn render_addresses(&self, o: &mut String, device: &Device) {
        let name = "pubky_edge_public_address_info";
        let _ = writeln!(o, "# HELP {name} The public address as the router names it (source=router) and as the DHT's nodes saw it (source=dht)\n# TYPE {name} gauge");
        for (source, ip) in [("router", device.router_ip), ("dht", device.dht_seen_ip)] {
            if let Some(ip) = ip {
                let _ = writeln!(o, "{name}{{source=\"{source}\",address=\"{ip}\"}} 1");
            }
        }
        let name = "pubky_edge_nat_in_front_of_router";
        let _ = writeln!(o, "# HELP {name} 1 when the DHT's nodes see another public address than the router names\n# TYPE {name} gauge\n{name} {}", u8::from(device.nat_in_front));
        if let Some(f) = device.dht_firewalled {
            let name = "pubky_edge_dht_firewalled";
            let _ = writeln!(o, "# HELP {name} 1 when the DHT port was not reachable inbound at the last publish\n# TYPE {name} gauge\n{name} {}", u8::from(f));
        }
    }
}

/// Gauges read at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Device {
    pub connections: u64,
    pub connections_refused: u64,
    pub connections_refused_per_ip: u64,
    pub rss_bytes: u64,
    pub store_bytes: u64,
    pub disk_free_bytes: u64,
    pub users: u64,
    /// Unix time of the last good backup, 0 if none.
    pub backup_last_success: u64,
    /// 1 when backups are set up and the last failed or is stale.
    pub backup_problem: u64,
    /// The public address the router names, and the one the DHT's nodes saw.
    pub router_ip: Option<std::net::IpAddr>,
    pub dht_seen_ip: Option<std::net::IpAddr>,
    /// Whether the DHT port was unreachable inbound at the last publish.
    pub dht_firewalled: Option<bool>,
    /// The two addresses differ: a NAT the router does not know of sits in front of it.
    pub nat_in_front: bool,
    /// This box's relay link, when it has a relay: up, and clients it brought.
    pub relay_link: Option<(bool, u64)>,
    /// The running version, what is available, how the last update went.
    pub update: UpdateGauges,
    /// The boxes this relay serves (its report, up to 10 s old).
    pub relayed: Vec<RelayedBox>,
}

/// One box a relay serves, as the metrics show it.
#[derive(Debug, Default, Clone)]
pub struct RelayedBox {
    pub key: String,
    pub port: u16,
    pub linked: bool,
    pub open: u64,
    pub forwarded: u64,
    pub bytes: u64,
    pub refused: u64,
}

/// The relay rung from both sides: this box's link, and each box this relay serves.
/// The update state, as the gauges show it.
#[derive(Debug, Default, Clone)]
pub struct UpdateGauges {
    pub running: String,
    /// `None`: the installed binary.
    pub slot: Option<String>,
    pub available: Option<String>,
    pub held: bool,
    /// The last update: from, to, outcome, when (seconds).
    pub last: Option<(String, String, String, u64)>,
}

fn render_update(o: &mut String, u: &UpdateGauges) {
    let name = "pubky_edge_version_info";
    let slot = u.slot.as_deref().unwrap_or("installed");
    let _ = writeln!(o, "# HELP {name} The version this box runs, and where from (slot a, b, or the installed binary)\n# TYPE {name} gauge\n{name}{{version=\"{}\",slot=\"{slot}\"}} 1", u.running);
    let name = "pubky_edge_update_available_info";
    let _ = writeln!(
        o,
        "# HELP {name} A newer release the last look at the channel found\n# TYPE {name} gauge"
    );
    if let Some(v) = &u.available {
        let _ = writeln!(o, "{name}{{version=\"{v}\"}} 1");
    }
    let name = "pubky_edge_update_held";
    let _ = writeln!(o, "# HELP {name} 1 while the household holds automatic updates\n# TYPE {name} gauge\n{name} {}", u8::from(u.held));
    if let Some((from, to, outcome, at)) = &u.last {
        let name = "pubky_edge_update_last_timestamp_seconds";
        let _ = writeln!(o, "# HELP {name} When the last update ended, by its outcome (updated, rolled_back, switched_by_hand)\n# TYPE {name} gauge\n{name}{{from=\"{from}\",to=\"{to}\",outcome=\"{outcome}\"}} {at}");
    }
}

fn render_tunnel(o: &mut String, device: &Device) {
    if let Some((up, clients)) = device.relay_link {
        let name = "pubky_edge_relay_link_up";
        let _ = writeln!(o, "# HELP {name} 1 while the link to this box's relay (tunnel.via) is up\n# TYPE {name} gauge\n{name} {}", u8::from(up));
        let name = "pubky_edge_relay_link_clients_total";
        let _ = writeln!(o, "# HELP {name} Client connections that reached this box through its relay\n# TYPE {name} counter\n{name} {clients}");
    }
    if device.relayed.is_empty() {
        return;
    }
    type Field = fn(&RelayedBox) -> u64;
    let families: [(&str, &str, &str, Field); 5] = [
        (
            "pubky_edge_relayed_box_linked",
            "gauge",
            "1 while the box's link to this relay is up",
            |b| u64::from(b.linked),
        ),
        (
            "pubky_edge_relayed_box_open_connections",
            "gauge",
            "Client connections being forwarded to the box",
            |b| b.open,
        ),
        (
            "pubky_edge_relayed_box_connections_total",
            "counter",
            "Client connections forwarded to the box",
            |b| b.forwarded,
        ),
        (
            "pubky_edge_relayed_box_bytes_total",
            "counter",
            "Bytes forwarded for the box, both directions",
            |b| b.bytes,
        ),
        (
            "pubky_edge_relayed_box_refused_total",
            "counter",
            "Clients turned away (box not linked, or at its connection cap)",
            |b| b.refused,
        ),
    ];
    for (name, kind, help, field) in families {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for b in &device.relayed {
            let _ = writeln!(
                o,
                "{name}{{box=\"{}\",port=\"{}\"}} {}",
                b.key,
                b.port,
                field(b)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names_and_labels() {
        let m = Metrics::new();
        m.signup();
        m.signup();
        m.request(RouteClass::StorageRead, 200, Duration::from_micros(1500));
        m.storage_request(StorageRequest {
            addressing: 1,
            host_header: 2,
            host_query: 0,
            auth: 2,
        });
        m.set_dht_last_publish(1_700_000_000);
        let out = m.render(&Device::default());
        assert!(out.contains("signup_count_total{otel_scope_name=\"pubky_homeserver\"} 2\n"));
        assert!(out
            .contains("pubky_edge_http_requests_total{route=\"storage_read\",status=\"2xx\"} 1\n"));
        assert!(out.contains(
            "pubky_edge_http_request_duration_ms_bucket{route=\"storage_read\",le=\"1\"} 0\n"
        ));
        assert!(out.contains(
            "pubky_edge_http_request_duration_ms_bucket{route=\"storage_read\",le=\"5\"} 1\n"
        ));
        assert!(out.contains("addressing_mode=\"legacy\",auth_method=\"grant\""));
        assert!(out.contains("pubky_host_header=\"other\",pubky_host_query=\"false\"} 1"));
        assert!(out.contains("pubky_edge_dht_last_publish_timestamp_seconds 1700000000\n"));
        assert!(out.contains("pubky_edge_nat_in_front_of_router 0\n"));
        assert!(!out.contains("pubky_edge_public_address_info{"));
    }

    #[test]
    fn the_relay_rung_is_exported_from_both_sides() {
        let quiet = Metrics::new().render(&Device::default());
        assert!(!quiet.contains("relay"), "{quiet}");
        let device = Device {
            relay_link: Some((true, 42)),
            relayed: vec![RelayedBox {
                key: "boxkey".into(),
                port: 7443,
                linked: true,
                open: 2,
                forwarded: 9,
                bytes: 1234,
                refused: 1,
            }],
            ..Device::default()
        };
        let out = Metrics::new().render(&device);
        for line in [
            "pubky_edge_relay_link_up 1\n",
            "pubky_edge_relay_link_clients_total 42\n",
            "pubky_edge_relayed_box_linked{box=\"boxkey\",port=\"7443\"} 1\n",
            "pubky_edge_relayed_box_open_connections{box=\"boxkey\",port=\"7443\"} 2\n",
            "pubky_edge_relayed_box_connections_total{box=\"boxkey\",port=\"7443\"} 9\n",
            "pubky_edge_relayed_box_bytes_total{box=\"boxkey\",port=\"7443\"} 1234\n",
            "pubky_edge_relayed_box_refused_total{box=\"boxkey\",port=\"7443\"} 1\n",
        ] {
            assert!(out.contains(line), "{line}: {out}");
        }
    }

    #[test]
    fn both_views_of_the_address_are_exported() {
        let device = Device {
            router_ip: Some("11.0.0.1".parse().unwrap()),
            dht_seen_ip: Some("12.0.0.1".parse().unwrap()),
            dht_firewalled: Some(true),
            nat_in_front: true,
            ..Device::default()
        };
        let out = Metrics::new().render(&device);
        for line in [
            "pubky_edge_public_address_info{source=\"router\",address=\"11.0.0.1\"} 1\n",
            "pubky_edge_public_address_info{source=\"dht\",address=\"12.0.0.1\"} 1\n",
            "pubky_edge_nat_in_front_of_router 1\n",
            "pubky_edge_dht_firewalled 1\n",
        ] {
            assert!(out.contains(line), "{line}: {out}");
        }
    }

    /// The reference's query histograms: OpenTelemetry's default buckets, whole
    /// milliseconds (so existing Grafana panels read them the same way).
    #[test]
    fn reference_histograms_bucket_as_the_reference_does() {
        let m = Metrics::new();
        m.events_query(Duration::from_micros(400));
        m.events_query(Duration::from_micros(5_900));
        m.stream_half_behind();
        let out = m.render(&Device::default());
        let bucket = |le: &str| {
            let name = "events_db_query_duration_ms_bucket";
            format!("{name}{{otel_scope_name=\"pubky_homeserver\",le=\"{le}\"}}")
        };
        assert!(out.contains(&format!("{} 1\n", bucket("0"))), "{out}");
        assert!(out.contains(&format!("{} 2\n", bucket("10"))));
        assert!(out.contains(&format!("{} 2\n", bucket("7500"))));
        assert!(out.contains(&format!("{} 2\n", bucket("+Inf"))));
        let half =
            "event_stream_broadcast_half_full_count_total{otel_scope_name=\"pubky_homeserver\"} 1";
        assert!(out.contains(half));
    }
}
