//! Which addresses are globally reachable. The tables follow the IANA IPv4 and IPv6
//! Special-Purpose Address Registries (RFC 6890 and its updates), plus multicast, the
//! limited broadcast address, and IPv6 space outside global unicast (`2000::/3`), which
//! IANA has not allocated for use on the internet.
//!
//! Two choices are stricter than the registries' "globally reachable" column, on purpose:
//! the whole of `192.0.0.0/24` and `2001::/23` (IETF protocol assignments) is refused,
//! although a few anycast addresses inside them (PCP, TURN, AS112) are global: no API is
//! served there; and NAT64's well-known prefix `64:ff9b::/96` is refused although the
//! registry marks it global, because its addresses are translated to IPv4 addresses that
//! may be private.
//!
//! Metadata services are a separate list ([`METADATA`]): some sit at public addresses
//! (Azure's `168.63.129.16`), the others inside a refused range; listing them gives them a
//! class of their own, which the allow-list opens only by naming the address exactly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not globally reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::/128`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64.0.0/10` (RFC 6598).
    SharedCgnat,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `192.0.0.0/24`, `2001::/23` but Teredo and benchmarking.
    ProtocolAssignment,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// `240.0.0.0/4`, and IPv6 outside `2000::/3` not otherwise named.
    Reserved,
    /// `255.255.255.255`.
    Broadcast,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10` (deprecated).
    SiteLocal,
    /// `64:ff9b::/96`, `64:ff9b:1::/48`.
    Nat64,
    /// `2002::/16`, and its relay anycast `192.88.99.0/24`.
    SixToFour,
    /// `2001::/32`.
    Teredo,
    /// `::ffff:0:0/96`.
    Ipv4Mapped,
    /// `100::/64`.
    DiscardOnly,
    /// A cloud metadata service ([`METADATA`]).
    Metadata,
    /// An address and port this service itself listens on.
    OwnListener,
}

impl AddressClass {
    /// The class as a tenant may be told it: `a private network address`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified (\"this network\") address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private network address",
            Self::SharedCgnat => "a shared (carrier-grade NAT) address",
            Self::LinkLocal => "a link-local address",
            Self::ProtocolAssignment => "an IETF protocol assignment address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Reserved => "a reserved address",
            Self::Broadcast => "the broadcast address",
            Self::Multicast => "a multicast address",
            Self::UniqueLocal => "a unique-local (private IPv6) address",
            Self::SiteLocal => "a site-local address",
            Self::Nat64 => "a NAT64 address",
            Self::SixToFour => "a 6to4 address",
            Self::Teredo => "a Teredo address",
            Self::Ipv4Mapped => "an IPv4-mapped IPv6 address",
            Self::DiscardOnly => "a discard-only address",
            Self::Metadata => "a cloud metadata service address",
            Self::OwnListener => "this service's own address",
        }
    }

    /// A stable name for logs and metrics: `private`, `loopback`…
    pub fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedCgnat => "shared",
            Self::LinkLocal => "link_local",
            Self::ProtocolAssignment => "protocol_assignment",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
            Self::Broadcast => "broadcast",
            Self::Multicast => "multicast",
            Self::UniqueLocal => "unique_local",
            Self::SiteLocal => "site_local",
            Self::Nat64 => "nat64",
            Self::SixToFour => "6to4",
            Self::Teredo => "teredo",
            Self::Ipv4Mapped => "ipv4_mapped",
            Self::DiscardOnly => "discard_only",
            Self::Metadata => "metadata",
            Self::OwnListener => "own_listener",
        }
    }
}

/// Cloud metadata services, which hand out the host's credentials: AWS (IPv4 and IPv6,
/// and the ECS and EKS credential endpoints), Google Cloud, Azure (IMDS, and the wire
/// server at a public address), Oracle, DigitalOcean, OpenStack (169.254.169.254), Alibaba
/// Cloud and Tencent Cloud.
pub const METADATA: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 0, 23)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)),
];

/// `(network, prefix length, class)`; the first match wins.
const V4: &[(u32, u8, AddressClass)] = &[
    (0xffff_ffff, 32, AddressClass::Broadcast),
    (0x0000_0000, 8, AddressClass::Unspecified),
    (0x0a00_0000, 8, AddressClass::Private),
    (0x6440_0000, 10, AddressClass::SharedCgnat),
    (0x7f00_0000, 8, AddressClass::Loopback),
    (0xa9fe_0000, 16, AddressClass::LinkLocal),
    (0xac10_0000, 12, AddressClass::Private),
    (0xc000_0200, 24, AddressClass::Documentation),
    (0xc000_0000, 24, AddressClass::ProtocolAssignment),
    (0xc058_6300, 24, AddressClass::SixToFour),
    (0xc0a8_0000, 16, AddressClass::Private),
    (0xc612_0000, 15, AddressClass::Benchmarking),
    (0xc633_6400, 24, AddressClass::Documentation),
    (0xcb00_7100, 24, AddressClass::Documentation),
    (0xe000_0000, 4, AddressClass::Multicast),
    (0xf000_0000, 4, AddressClass::Reserved),
];

const V6: &[(u128, u8, AddressClass)] = &[
    (0, 128, AddressClass::Unspecified),
    (1, 128, AddressClass::Loopback),
    (0xffff_0000_0000, 96, AddressClass::Ipv4Mapped),
    (
        0x0064_ff9b_0000_0000_0000_0000_0000_0000,
        96,
        AddressClass::Nat64,
    ),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        AddressClass::Nat64,
    ),
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        AddressClass::DiscardOnly,
    ),
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        32,
        AddressClass::Teredo,
    ),
    (
        0x2001_0002_0000_0000_0000_0000_0000_0000,
        48,
        AddressClass::Benchmarking,
    ),
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        AddressClass::Documentation,
    ),
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        23,
        AddressClass::ProtocolAssignment,
    ),
    (
        0x2002_0000_0000_0000_0000_0000_0000_0000,
        16,
        AddressClass::SixToFour,
    ),
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        AddressClass::Documentation,
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        AddressClass::UniqueLocal,
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        AddressClass::LinkLocal,
    ),
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        AddressClass::SiteLocal,
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        AddressClass::Multicast,
    ),
];

fn in_v4(ip: u32, net: u32, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

fn in_v6(ip: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

/// Why `ip` is not globally reachable, or `None` when it is. Metadata services come first.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    if METADATA.contains(&ip) {
        return Some(AddressClass::Metadata);
    }
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            V4.iter()
                .find(|(net, len, _)| in_v4(bits, *net, *len))
                .map(|(_, _, class)| *class)
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let named = V6
                .iter()
                .find(|(net, len, _)| in_v6(bits, *net, *len))
                .map(|(_, _, class)| *class);
            // Global unicast is 2000::/3; the rest of the space is reserved by the IETF.
            named.or_else(|| (!in_v6(bits, 0x2000 << 112, 3)).then_some(AddressClass::Reserved))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> Option<AddressClass> {
        classify(text.parse().expect("an address"))
    }

    #[test]
    fn every_special_purpose_ipv4_block_is_refused_with_its_class() {
        use AddressClass::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.254", SharedCgnat),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("169.254.1.1", LinkLocal),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.0.0.1", ProtocolAssignment),
            ("192.0.0.170", ProtocolAssignment),
            ("192.0.2.55", Documentation),
            ("192.88.99.1", SixToFour),
            ("192.168.1.1", Private),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.251", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("255.255.255.255", Broadcast),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_ipv4_addresses_next_to_the_special_blocks_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "203.0.112.255",
            "223.255.255.255",
            "140.82.112.3",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_special_purpose_ipv6_block_is_refused_with_its_class() {
        use AddressClass::*;
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Ipv4Mapped),
            ("::ffff:8.8.8.8", Ipv4Mapped),
            ("::127.0.0.1", Reserved),
            ("64:ff9b::a00:1", Nat64),
            ("64:ff9b::808:808", Nat64),
            ("64:ff9b:1::1", Nat64),
            ("100::1", DiscardOnly),
            ("2001::1", Teredo),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Teredo),
            ("2001:2::1", Benchmarking),
            ("2001:db8::1", Documentation),
            ("2001:1::1", ProtocolAssignment),
            ("2001:10::1", ProtocolAssignment),
            ("2001:1ff::1", ProtocolAssignment),
            ("2002:7f00:1::1", SixToFour),
            ("3fff::1", Documentation),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", SiteLocal),
            ("ff02::1", Multicast),
            ("4000::1", Reserved),
            ("5f00::1", Reserved),
            ("1000::1", Reserved),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn global_unicast_ipv6_is_allowed() {
        for ip in [
            "2001:200::1",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "3ffe::1",
            "2003::1",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn metadata_services_have_their_own_class_even_at_public_addresses() {
        for ip in [
            "169.254.169.254",
            "168.63.129.16",
            "100.100.100.200",
            "169.254.170.2",
            "fd00:ec2::254",
        ] {
            assert_eq!(class(ip), Some(AddressClass::Metadata), "{ip}");
        }
        assert_eq!(class("168.63.129.17"), None);
    }
}
