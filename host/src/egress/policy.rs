//! The egress policy: which resolved addresses an outbound connection made for a tenant
//! may reach.

use super::address::{AddressClass, classify};
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::RwLock;

/// One entry of the operator's allow-list: a network, and optionally the one port it is
/// opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowRule {
    pub net: IpNet,
    pub port: Option<u16>,
}

impl AllowRule {
    fn matches(&self, addr: SocketAddr) -> bool {
        self.net.contains(&addr.ip()) && self.port.is_none_or(|p| p == addr.port())
    }

    /// Whether the rule names exactly one address (`/32`, `/128`): only such a rule opens a
    /// metadata service.
    fn names_exactly(&self, ip: IpAddr) -> bool {
        self.net.prefix_len() == self.net.max_prefix_len() && self.net.addr() == ip
    }
}

/// `10.20.0.0/16` or `10.20.0.0/16:443`, `[fd00::/8]:443`.
impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.net) {
            (None, net) => write!(f, "{net}"),
            (Some(port), IpNet::V4(net)) => write!(f, "{net}:{port}"),
            (Some(port), IpNet::V6(net)) => write!(f, "[{net}]:{port}"),
        }
    }
}

/// Why an allow-list entry does not parse. Quotes the entry: the allow-list holds no
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowRuleError {
    #[error(
        "`{0}` is not an address range; write a CIDR, optionally with a port: 10.20.0.0/16, 127.0.0.1/32:8080, fd00::/8, [fd00::/8]:443"
    )]
    Syntax(String),
    #[error("`{entry}` has a port that is not a number from 1 to 65535")]
    Port { entry: String },
    #[error("`{entry}` has bits set after its prefix; did you mean `{suggestion}`?")]
    HostBits { entry: String, suggestion: String },
}

impl FromStr for AllowRule {
    type Err = AllowRuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let entry = text.trim();
        let syntax = || AllowRuleError::Syntax(entry.to_owned());
        // `[v6 or v6/len]:port`, `[v6]`, `v4[/len][:port]`, `v6[/len]`.
        let (address, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(syntax)?;
            match after {
                "" => (inside, None),
                _ => (inside, Some(after.strip_prefix(':').ok_or_else(syntax)?)),
            }
        } else if entry.matches(':').count() == 1 {
            let (address, port) = entry.split_once(':').ok_or_else(syntax)?;
            (address, Some(port))
        } else {
            (entry, None)
        };
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                AllowRuleError::Port {
                    entry: entry.to_owned(),
                }
            })?),
        };
        let net = if address.contains('/') {
            IpNet::from_str(address).map_err(|_| syntax())?
        } else {
            IpNet::from(IpAddr::from_str(address).map_err(|_| syntax())?)
        };
        if net.trunc() != net {
            let suggestion = Self {
                net: net.trunc(),
                port,
            };
            return Err(AllowRuleError::HostBits {
                entry: entry.to_owned(),
                suggestion: suggestion.to_string(),
            });
        }
        Ok(Self { net, port })
    }
}

/// An address the policy refused, and why. The address is for the operator's log only:
/// [`Refusal`]'s `Display` names the class, never the address, so that a tenant cannot map
/// internal names through error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} is not allowed by the egress policy", class.describe())]
pub struct Refusal {
    pub class: AddressClass,
    pub address: SocketAddr,
}

/// What outbound connections made for tenants may reach.
#[derive(Debug)]
pub struct EgressPolicy {
    /// `false` for the service's own clients (credential stores), which the operator
    /// configures: then every address is allowed.
    enforced: bool,
    allow: Vec<AllowRule>,
    /// With a forward proxy, leave the check of names to it (the host checks only
    /// destinations given as addresses).
    proxy_enforces: bool,
    /// Where this service listens: refused whatever `allow` says.
    own: RwLock<Vec<SocketAddr>>,
}

impl EgressPolicy {
    /// The policy of a service: globally reachable addresses, plus `allow`.
    pub fn new(allow: Vec<AllowRule>) -> Self {
        Self {
            enforced: true,
            allow,
            proxy_enforces: false,
            own: RwLock::default(),
        }
    }

    /// The policy of the local commands (`junction invoke`, `junction test`): loopback is
    /// allowed too, since the developer runs them against their own machine.
    pub fn local(mut allow: Vec<AllowRule>) -> Self {
        allow.extend(Self::loopback());
        Self::new(allow)
    }

    /// The rules opening loopback, IPv4 and IPv6.
    pub fn loopback() -> [AllowRule; 2] {
        [
            AllowRule {
                net: IpNet::new_assert(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8).trunc(),
                port: None,
            },
            AllowRule {
                net: IpNet::from(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
                port: None,
            },
        ]
    }

    /// No restriction: for the clients of the operator's own configuration (credential
    /// stores), which are not made on a tenant's behalf.
    pub fn unrestricted() -> Self {
        Self {
            enforced: false,
            ..Self::new(Vec::new())
        }
    }

    /// With a forward proxy that resolves names itself (and must then enforce the policy):
    /// the host checks only destinations given as addresses.
    pub fn with_proxy_enforcing(mut self, enforces: bool) -> Self {
        self.proxy_enforces = enforces;
        self
    }

    pub fn is_enforced(&self) -> bool {
        self.enforced
    }

    pub fn proxy_enforces(&self) -> bool {
        self.proxy_enforces
    }

    /// Records an address this service listens on (its API, its metrics): refused from now
    /// on whatever the allow-list says.
    pub fn add_own_listener(&self, address: SocketAddr) {
        if let Ok(mut own) = self.own.write() {
            own.push(address);
        }
    }

    /// Whether `ip:port` reaches one of this service's own listeners. A listener on an
    /// unspecified address (`0.0.0.0`, `::`) is reached through every address of the
    /// machine: loopback, and any address a socket can be bound to here.
    fn is_own_listener(&self, ip: IpAddr, port: u16) -> bool {
        let Ok(own) = self.own.read() else {
            // A poisoned lock: refuse rather than guess.
            return true;
        };
        own.iter().filter(|l| l.port() == port).any(|l| {
            if l.ip().is_unspecified() {
                ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind((ip, 0)).is_ok()
            } else {
                l.ip().to_canonical() == ip
            }
        })
    }

    /// Whether an outbound connection may reach `address`.
    pub fn check(&self, address: SocketAddr) -> Result<(), Refusal> {
        if !self.enforced {
            return Ok(());
        }
        let refuse = |class| Err(Refusal { class, address });
        let ip = address.ip();
        let canonical = ip.to_canonical();
        // Whatever the allow-list says: an IPv4-mapped address (it reaches the IPv4
        // address on a dual-stack socket: no resolver hands one out, a URL naming one is
        // dodging the IPv4 rules), and the unspecified address (a connection to 0.0.0.0 or
        // `::` reaches this machine).
        if canonical != ip {
            return refuse(AddressClass::Ipv4Mapped);
        }
        if ip.is_unspecified() {
            return refuse(AddressClass::Unspecified);
        }
        if self.is_own_listener(ip, address.port()) {
            return refuse(AddressClass::OwnListener);
        }
        match classify(ip) {
            None => Ok(()),
            Some(AddressClass::Metadata) => {
                if self
                    .allow
                    .iter()
                    .any(|r| r.matches(address) && r.names_exactly(ip))
                {
                    Ok(())
                } else {
                    refuse(AddressClass::Metadata)
                }
            }
            Some(class) => {
                if !self.allow.iter().any(|r| r.matches(address)) {
                    return refuse(class);
                }
                // A NAT64 address opened by the operator is translated to the IPv4 address
                // it embeds: that one must be allowed too (a metadata service, a private
                // address, this service behind the translator).
                match nat64_embedded(ip) {
                    Some(v4) => self
                        .check(SocketAddr::new(IpAddr::V4(v4), address.port()))
                        .map_err(|r| Refusal { address, ..r }),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The IPv4 address a NAT64 address of the well-known prefix (`64:ff9b::/96`) embeds.
fn nat64_embedded(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let bits = u128::from(v6);
    (bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000)
        .then(|| std::net::Ipv4Addr::from(u32::try_from(bits & 0xffff_ffff).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> AllowRule {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn allow_entries_are_cidrs_with_an_optional_port() {
        assert_eq!(rule("10.20.0.0/16").to_string(), "10.20.0.0/16");
        assert_eq!(rule(" 10.20.0.0/16:443 ").to_string(), "10.20.0.0/16:443");
        assert_eq!(rule("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(rule("127.0.0.1:8080").to_string(), "127.0.0.1/32:8080");
        assert_eq!(rule("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(rule("::1").to_string(), "::1/128");
        assert_eq!(rule("[fd00::/8]:443").to_string(), "[fd00::/8]:443");
        assert_eq!(rule("[::1]:8080").to_string(), "[::1/128]:8080");
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "10.0.0/8",
            "[::1",
            "[::1]x",
            "fd00::/8:443",
            "10.0.0.0/8:https",
        ] {
            assert!(bad.parse::<AllowRule>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "10.0.0.0/8:0".parse::<AllowRule>(),
            Err(AllowRuleError::Port {
                entry: "10.0.0.0/8:0".into()
            })
        );
        assert_eq!(
            "10.20.1.0/16".parse::<AllowRule>(),
            Err(AllowRuleError::HostBits {
                entry: "10.20.1.0/16".into(),
                suggestion: "10.20.0.0/16".into()
            })
        );
    }

    #[test]
    fn the_default_policy_allows_only_global_addresses() {
        let policy = EgressPolicy::new(Vec::new());
        assert_eq!(policy.check(addr("140.82.112.3:443")), Ok(()));
        assert_eq!(policy.check(addr("[2606:4700::1111]:443")), Ok(()));
        let refused = policy
            .check(addr("10.1.2.3:80"))
            .expect_err("a private address");
        assert_eq!(refused.class, AddressClass::Private);
        assert_eq!(
            refused.to_string(),
            "a private network address is not allowed by the egress policy"
        );
        assert!(!refused.to_string().contains("10.1.2.3"));
        assert_eq!(
            policy
                .check(addr("[::ffff:127.0.0.1]:80"))
                .map_err(|r| r.class),
            Err(AddressClass::Ipv4Mapped)
        );
    }

    #[test]
    fn allowed_ranges_open_only_their_addresses_and_ports() {
        let policy = EgressPolicy::new(vec![rule("10.20.0.0/16"), rule("127.0.0.1/32:8080")]);
        assert_eq!(policy.check(addr("10.20.9.9:5432")), Ok(()));
        assert!(policy.check(addr("10.21.0.1:80")).is_err());
        assert_eq!(policy.check(addr("127.0.0.1:8080")), Ok(()));
        assert_eq!(
            policy.check(addr("127.0.0.1:8081")).map_err(|r| r.class),
            Err(AddressClass::Loopback)
        );
        assert!(policy.check(addr("127.0.0.2:8080")).is_err());
    }

    #[test]
    fn a_metadata_service_is_opened_only_by_naming_it_exactly() {
        let broad = EgressPolicy::new(vec![rule("169.254.0.0/16"), rule("168.63.0.0/16")]);
        assert_eq!(broad.check(addr("169.254.1.1:80")), Ok(()));
        for metadata in ["169.254.169.254:80", "168.63.129.16:80"] {
            assert_eq!(
                broad.check(addr(metadata)).map_err(|r| r.class),
                Err(AddressClass::Metadata),
                "{metadata}"
            );
        }
        let exact = EgressPolicy::new(vec![rule("169.254.169.254/32")]);
        assert_eq!(exact.check(addr("169.254.169.254:80")), Ok(()));
    }

    #[test]
    fn the_services_own_listeners_are_refused_whatever_the_allow_list_says() {
        let policy = EgressPolicy::local(vec![rule("0.0.0.0/0"), rule("::/0")]);
        policy.add_own_listener(addr("127.0.0.1:7480"));
        assert_eq!(
            policy.check(addr("127.0.0.1:7480")).map_err(|r| r.class),
            Err(AddressClass::OwnListener)
        );
        assert_eq!(
            policy
                .check(addr("[::ffff:127.0.0.1]:7480"))
                .map_err(|r| r.class),
            Err(AddressClass::Ipv4Mapped)
        );
        // Every unspecified form reaches the machine itself.
        for unspecified in ["0.0.0.0:7480", "[::]:7480", "[::ffff:0.0.0.0]:7480"] {
            assert!(policy.check(addr(unspecified)).is_err(), "{unspecified}");
        }
        assert_eq!(policy.check(addr("127.0.0.1:7481")), Ok(()));

        let everywhere = EgressPolicy::local(Vec::new());
        everywhere.add_own_listener(addr("0.0.0.0:9090"));
        for own in ["127.0.0.1:9090", "127.8.0.1:9090", "[::1]:9090"] {
            assert_eq!(
                everywhere.check(addr(own)).map_err(|r| r.class),
                Err(AddressClass::OwnListener),
                "{own}"
            );
        }
        assert_eq!(everywhere.check(addr("127.0.0.1:9091")), Ok(()));
    }

    #[test]
    fn ipv6_opened_broadly_does_not_open_ipv4_through_mapped_or_nat64_forms() {
        let policy = EgressPolicy::new(vec![rule("::/0")]);
        for mapped in [
            "[::ffff:169.254.169.254]:80",
            "[::ffff:10.0.0.1]:80",
            "[::ffff:8.8.8.8]:80",
        ] {
            assert_eq!(
                policy.check(addr(mapped)).map_err(|r| r.class),
                Err(AddressClass::Ipv4Mapped),
                "{mapped}"
            );
        }
        // NAT64 opened: the embedded IPv4 address is checked as IPv4.
        assert_eq!(policy.check(addr("[64:ff9b::808:808]:443")), Ok(()));
        for (embedded, class) in [
            ("[64:ff9b::a9fe:a9fe]:80", AddressClass::Metadata),
            ("[64:ff9b::a00:1]:80", AddressClass::Private),
            ("[64:ff9b::7f00:1]:80", AddressClass::Loopback),
        ] {
            assert_eq!(
                policy.check(addr(embedded)).map_err(|r| r.class),
                Err(class),
                "{embedded}"
            );
        }
    }

    #[test]
    fn the_operators_own_clients_are_unrestricted() {
        let policy = EgressPolicy::unrestricted();
        assert_eq!(policy.check(addr("127.0.0.1:8200")), Ok(()));
        assert_eq!(policy.check(addr("169.254.169.254:80")), Ok(()));
    }
}
