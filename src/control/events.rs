//! The `events` stream's lines: the pipeline's table events ([`TableEvent`]) made into
//! [`EventRow`]s, with names for ports and networks and a wall-clock time.
//!
//! An event carries the pipeline's monotonic time of the batch or tick that made it,
//! turned into the time of day from one reading of both clocks taken when the
//! dataplane started: the stream's times never step back when the system clock is
//! set (they keep to the clock as it was at start instead).

use super::protocol::EventRow;
use super::server::conntrack_row;
use switchyard_core::pipeline::events::{MacRefusal, NeighborTo};
use switchyard_core::pipeline::{DomainId, Pipeline, PortId, TableChange, TableEvent, Timestamp};

/// A time `ns` nanoseconds after the Unix epoch as RFC 3339 in UTC with
/// microseconds: `2026-12-01T04:51:24.123456Z`.
pub fn rfc3339(ns: u64) -> String {
    let days = ns / 1_000_000_000 / 86_400;
    let (y, m, day) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{}Z", super::render::time_of_day(ns))
}

/// The proleptic Gregorian date of day `z` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The names events refer to, copied when a stream starts and again whenever the
/// instance's ports or networks change (see `live::events`).
#[derive(Debug, Clone)]
pub struct Names {
    ports: Vec<String>,
    /// The network of each port.
    port_networks: Vec<DomainId>,
    networks: Vec<String>,
}

impl Names {
    pub fn of(p: &Pipeline) -> Names {
        Names {
            ports: p.ports().iter().map(|s| s.name.clone()).collect(),
            port_networks: p.ports().iter().map(|s| s.domain).collect(),
            networks: (0..p.domain_count())
                .map(|d| {
                    p.domain(DomainId(d as u16))
                        .map_or_else(String::new, |s| s.name.clone())
                })
                .collect(),
        }
    }

    fn port(&self, id: PortId) -> String {
        // A port removed since (a vacant slot has no name) is named by its number.
        self.ports
            .get(id.index())
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("port{}", id.0))
    }

    fn network(&self, id: DomainId) -> String {
        self.networks
            .get(id.index())
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("network{}", id.0))
    }

    /// The network of port `id`.
    fn network_of(&self, id: PortId) -> Option<String> {
        self.port_networks.get(id.index()).map(|&d| self.network(d))
    }
}

/// The row of one table event; `wall_ns` gives the wall-clock time of a pipeline
/// time (see [`Handle::wall_ns`](crate::dataplane::Handle::wall_ns)).
pub fn event_row(e: &TableEvent, names: &Names, wall_ns: impl Fn(Timestamp) -> u64) -> EventRow {
    let mut r = EventRow::new(rfc3339(wall_ns(e.at)), e.change.kind().id());
    match e.change {
        TableChange::MacLearned { domain, mac, port }
        | TableChange::MacAged { domain, mac, port } => {
            r.network = Some(names.network(domain));
            r.port = Some(names.port(port));
            r.mac = Some(mac.to_string());
        }
        TableChange::MacMoved {
            domain,
            mac,
            from,
            to,
        } => {
            r.network = Some(names.network(domain));
            r.port = Some(names.port(to));
            r.from_port = Some(names.port(from));
            r.mac = Some(mac.to_string());
        }
        TableChange::MacRefused {
            domain,
            mac,
            port,
            why,
        } => {
            r.network = Some(names.network(domain));
            r.port = Some(names.port(port));
            r.mac = Some(mac.to_string());
            r.reason = Some(
                match why {
                    MacRefusal::TableFull => "table_full",
                    MacRefusal::NetworkFull => "network_full",
                    MacRefusal::Pinned { owner } => {
                        r.owner_port = Some(names.port(owner));
                        "pinned"
                    }
                }
                .into(),
            );
        }
        TableChange::Neighbor(n) => {
            r.network = Some(names.network(n.domain));
            r.ip = Some(n.ip.to_string());
            if !n.mac.is_zero() {
                r.mac = Some(n.mac.to_string());
            }
            r.old_state = n.from.map(|s| s.to_string().to_lowercase());
            r.state = Some(match n.to {
                NeighborTo::State(s) => s.to_string().to_lowercase(),
                NeighborTo::Failed => "failed".into(),
                NeighborTo::Evicted => "evicted".into(),
                NeighborTo::Expired => "expired".into(),
                NeighborTo::Flushed => "flushed".into(),
            });
        }
        TableChange::ConnNew(c) | TableChange::ConnAssured(c) => {
            r.network = Some(names.network(c.zone[0]));
            r.reply_network = Some(names.network(c.zone[1]));
            r.conntrack = Some(conntrack_row(
                &c,
                c.expires.saturating_sub(e.at.0) / 1_000_000_000,
            ));
        }
        TableChange::ConnDestroyed(c, why) => {
            r.network = Some(names.network(c.zone[0]));
            r.reply_network = Some(names.network(c.zone[1]));
            r.conntrack = Some(conntrack_row(&c, 0));
            r.reason = Some(why.id().into());
        }
        TableChange::PortDown { port } => {
            r.network = names.network_of(port);
            r.port = Some(names.port(port));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789012.
        assert_eq!(
            rfc3339(951_827_696_789_012_345),
            "2000-02-29T12:34:56.789012Z"
        );
        assert_eq!(
            rfc3339(1_796_101_012_063_658_000),
            "2026-12-01T04:56:52.063658Z"
        );
    }
}
