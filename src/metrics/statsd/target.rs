//! The collector address as configured: parsing `host:port`, and the order in
//! which resolved addresses are tried. Pure; the resolving itself happens in
//! `collector`.

use std::net::SocketAddr;

/// A collector address as given: a literal socket address or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `1.2.3.4:8125` or `[::1]:8125`: nothing to resolve.
    Addr(SocketAddr),
    /// `graphite:8125`: resolved in the background.
    Name(String, u16),
}

impl Target {
    /// Parses `host:port`, `ipv4:port` or `[ipv6]:port`.
    pub(crate) fn parse(s: &str) -> Result<Target, &'static str> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Target::Addr(a));
        }
        let (host, port) = s.rsplit_once(':').ok_or("expected HOST:PORT")?;
        let port: u16 = port
            .parse()
            .map_err(|_| "the port must be a number from 1 to 65535")?;
        if port == 0 {
            return Err("the port must be a number from 1 to 65535");
        }
        if host.is_empty() {
            return Err("the host is empty");
        }
        if host.starts_with('[') || host.contains(':') {
            return Err("an IPv6 address must be written as [ADDR]:PORT");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err("the host name has characters a DNS name cannot have");
        }
        Ok(Target::Name(host.to_string(), port))
    }
}

/// Orders resolved addresses: IPv4 first, each family in resolver order, no duplicates.
pub(crate) fn order_addrs(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for a in addrs {
        let list = if a.is_ipv4() { &mut v4 } else { &mut v6 };
        if !list.contains(&a) {
            list.push(a);
        }
    }
    v4.extend(v6);
    v4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("127.0.0.1:8125"),
            Ok(Target::Addr("127.0.0.1:8125".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("[::1]:9"),
            Ok(Target::Addr("[::1]:9".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("graphite:8125"),
            Ok(Target::Name("graphite".into(), 8125))
        );
        assert_eq!(
            Target::parse("statsd.monitoring.svc.cluster.local:8125"),
            Ok(Target::Name(
                "statsd.monitoring.svc.cluster.local".into(),
                8125
            ))
        );
        for bad in [
            "graphite",
            "graphite:",
            ":8125",
            "graphite:0",
            "graphite:65536",
            "::1:8125",
            "[::1]",
            "a b:1",
            "h:x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv4_first() {
        let a: Vec<SocketAddr> = ["[::1]:1", "127.0.0.1:1", "[::1]:1", "10.0.0.1:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let want: Vec<SocketAddr> = ["127.0.0.1:1", "10.0.0.1:1", "[::1]:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(order_addrs(a), want);
    }
}
