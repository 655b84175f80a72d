//! What one `[LOCAL_PORT:]HOST:PORT` argument of `baton port-forward` asks for, parsed as
//! `ssh -L` and `kubectl port-forward` read theirs: `8080:localhost:80`, `8080:80` (the
//! device's own localhost), `80` (the same port here and there), `0:…` or `:…` (a free port
//! here, chosen by the system), and an IPv6 host in brackets (`8080:[::1]:80`).

use std::{fmt, str::FromStr};

/// One port forwarded: a local port (0: any free one) to a host and port as the device sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub local_port: u16,
    pub host: String,
    pub port: u16,
}

impl FromStr for Mapping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || format!("`{s}` is not [LOCAL_PORT:]HOST:PORT (e.g. 8080:localhost:80, 8080:80 or :5432)");
        let (local, host, port) = match s.split_once('[') {
            // `[LOCAL:][v6]:PORT`: the host is what the brackets hold.
            Some((before, rest)) => {
                let (host, port) = rest.split_once("]:").ok_or_else(usage)?;
                let local = match before {
                    "" => None,
                    b => Some(b.strip_suffix(':').ok_or_else(usage)?),
                };
                (local, host, port)
            }
            None => match s.split(':').collect::<Vec<_>>()[..] {
                [port] => (None, "localhost", port),
                // `LOCAL:PORT` on the device's localhost; `HOST:PORT` on the same port here.
                [local, port] if local.chars().all(|c| c.is_ascii_digit()) => (Some(local), "localhost", port),
                [host, port] => (None, host, port),
                [local, host, port] => (Some(local), host, port),
                _ => return Err(usage()),
            },
        };
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(usage)?;
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || "/[]".contains(c)) {
            return Err(usage());
        }
        let local_port = match local {
            None => port,
            Some("") => 0,
            Some(l) => l.parse().map_err(|_| format!("`{l}` is not a local port (0 to 65535) in `{s}`"))?,
        };
        Ok(Mapping { local_port, host: host.to_owned(), port })
    }
}

impl fmt::Display for Mapping {
    /// The device's side, as `host:port` (`[v6]:port`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> (u16, String, u16) {
        let m: Mapping = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        (m.local_port, m.host, m.port)
    }

    #[test]
    fn mappings_read_as_ssh_and_kubectl_read_them() {
        assert_eq!(parsed("8080:localhost:80"), (8080, "localhost".into(), 80));
        assert_eq!(parsed("8080:10.0.0.7:80"), (8080, "10.0.0.7".into(), 80));
        assert_eq!(parsed("8080:80"), (8080, "localhost".into(), 80));
        assert_eq!(parsed("5432"), (5432, "localhost".into(), 5432));
        assert_eq!(parsed(":5432"), (0, "localhost".into(), 5432));
        assert_eq!(parsed("0:5432"), (0, "localhost".into(), 5432));
        assert_eq!(parsed("0:db.local:5432"), (0, "db.local".into(), 5432));
        assert_eq!(parsed(":db.local:5432"), (0, "db.local".into(), 5432));
        assert_eq!(parsed("8080:[::1]:80"), (8080, "::1".into(), 80));
        assert_eq!(parsed("[::1]:80"), (80, "::1".into(), 80));
        assert_eq!(parsed(":[::1]:80"), (0, "::1".into(), 80));
    }

    #[test]
    fn malformed_mappings_are_refused_saying_what_is_wrong() {
        for bad in
            ["", "x", "8080:", "8080:localhost:", "8080:localhost:0", "8080:localhost:70000", "a:b:c:d", "8080::80"]
        {
            let e = bad.parse::<Mapping>().expect_err(bad);
            assert!(e.contains("[LOCAL_PORT:]HOST:PORT") || e.contains("not a local port"), "{bad}: {e}");
        }
        let e = "99999:localhost:80".parse::<Mapping>().expect_err("local port");
        assert!(e.contains("`99999` is not a local port"), "{e}");
    }

    #[test]
    fn the_device_side_prints_as_host_and_port() {
        assert_eq!(parsed_display("8080:localhost:80"), "localhost:80");
        assert_eq!(parsed_display("8080:[::1]:80"), "[::1]:80");
    }

    fn parsed_display(s: &str) -> String {
        s.parse::<Mapping>().expect("mapping").to_string()
    }
}
