//! What an outbound webhook may reach (issue 20, finding 8). An operator names the URL, so a
//! delivery is a request the service makes on someone else's behalf: it must not become a way
//! into the service's own network (SSRF).
//!
//! - Every address of the IANA IPv4 and IPv6 Special-Purpose Address Registries is refused, and
//!   every IPv6 address outside global unicast; IPv4-mapped and NAT64 addresses are judged by
//!   the IPv4 address they carry ([`is_internal`]).
//! - A name is resolved once per connection, by a resolver that drops refused addresses (and
//!   fails when none is left), so the address checked is the address connected to: a name that
//!   resolves elsewhere a second time (DNS rebinding) gains nothing. An IP literal is judged
//!   before the request is made.
//! - Redirects are never followed; no proxy is used (it would resolve the name itself).
//! - An answer is read no further than [`MAX_ANSWER_BYTES`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{RequestBuilder, Url};

/// How much of a receiver's answer is read (and kept with the attempt).
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the URL is not an http(s) URL with a host")]
    BadUrl,
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("the URL resolves to a private, loopback or otherwise internal address ({0})")]
    Private(IpAddr),
    #[error("every address of {0} is private, loopback or otherwise internal")]
    OnlyInternal(String),
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

#[expect(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16, len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// The IANA IPv4 Special-Purpose Address Registry, every block of it, globally reachable or not
/// (none is a place for a webhook), and multicast.
pub(crate) const IPV4_REFUSED: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "\"this network\", RFC 791"),
    (v4(10, 0, 0, 0, 8), "private use, RFC 1918"),
    (v4(100, 64, 0, 0, 10), "shared address space (CGNAT), RFC 6598"),
    (v4(127, 0, 0, 0, 8), "loopback, RFC 1122"),
    (v4(169, 254, 0, 0, 16), "link local (cloud metadata), RFC 3927"),
    (v4(172, 16, 0, 0, 12), "private use, RFC 1918"),
    (
        v4(192, 0, 0, 0, 24),
        "IETF protocol assignments (DS-Lite, NAT64 discovery…), RFC 6890",
    ),
    (v4(192, 0, 2, 0, 24), "documentation TEST-NET-1, RFC 5737"),
    (v4(192, 31, 196, 0, 24), "AS112-v4, RFC 7535"),
    (v4(192, 52, 193, 0, 24), "AMT, RFC 7450"),
    (v4(192, 88, 99, 0, 24), "deprecated 6to4 relay anycast, RFC 7526"),
    (v4(192, 168, 0, 0, 16), "private use, RFC 1918"),
    (v4(192, 175, 48, 0, 24), "direct delegation AS112 service, RFC 7534"),
    (v4(198, 18, 0, 0, 15), "benchmarking, RFC 2544"),
    (v4(198, 51, 100, 0, 24), "documentation TEST-NET-2, RFC 5737"),
    (v4(203, 0, 113, 0, 24), "documentation TEST-NET-3, RFC 5737"),
    (v4(224, 0, 0, 0, 4), "multicast, RFC 5771"),
    (v4(240, 0, 0, 0, 4), "reserved, RFC 1112"),
    (v4(255, 255, 255, 255, 32), "limited broadcast, RFC 919 and RFC 8190"),
];

/// IPv4-mapped addresses: judged by the IPv4 address they carry.
pub(crate) const IPV4_MAPPED: Ipv6Net = v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96);
/// The NAT64 well-known prefix (RFC 6052): a NAT64 gateway connects to the IPv4 address in the
/// low 32 bits, so it is judged by that address.
pub(crate) const NAT64_WELL_KNOWN: Ipv6Net = v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96);
/// Only global unicast is routed on the internet (IANA IPv6 Address Space registry).
const GLOBAL_UNICAST: Ipv6Net = v6(0x2000, 0, 0, 0, 0, 0, 0, 0, 3);

/// The IANA IPv6 Special-Purpose Address Registry and the other blocks a webhook must not reach.
/// Embedded IPv4 is judged only for the two forms above; for the others below the whole block is
/// refused: 2001::/23 with its globally reachable exceptions (anycast, AMT, AS112, ORCHIDv2),
/// which no webhook receiver uses; 6to4 and IPv4-compatible addresses, deprecated.
pub(crate) const IPV6_REFUSED: &[(Ipv6Net, &str)] = &[
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 128), "unspecified, RFC 4291"),
    (v6(0, 0, 0, 0, 0, 0, 0, 1, 128), "loopback, RFC 4291"),
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 96), "IPv4-compatible (deprecated), RFC 4291"),
    (v6(0, 0, 0, 0, 0xffff, 0, 0, 0, 96), "IPv4-translated, RFC 2765"),
    (
        v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0, 48),
        "local-use IPv4/IPv6 translation, RFC 8215",
    ),
    (v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64), "discard-only, RFC 6666"),
    (v6(0x100, 0, 0, 1, 0, 0, 0, 0, 64), "dummy IPv6 prefix, RFC 9780"),
    (
        v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 23),
        "IETF protocol assignments (Teredo, benchmarking…), RFC 2928",
    ),
    (v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32), "documentation, RFC 3849"),
    (
        v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16),
        "6to4 (deprecated), RFC 3056 and RFC 7526",
    ),
    (
        v6(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0, 48),
        "direct delegation AS112 service, RFC 7534",
    ),
    (v6(0x3fff, 0, 0, 0, 0, 0, 0, 0, 20), "documentation, RFC 9637"),
    (
        v6(0x5f00, 0, 0, 0, 0, 0, 0, 0, 16),
        "segment routing (SRv6) SIDs, RFC 9602",
    ),
    (v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7), "unique local, RFC 4193"),
    (v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10), "link-local unicast, RFC 4291"),
    (v6(0xfec0, 0, 0, 0, 0, 0, 0, 0, 10), "site-local (deprecated), RFC 3879"),
    (v6(0xff00, 0, 0, 0, 0, 0, 0, 0, 8), "multicast, RFC 4291"),
];

/// True for an address a webhook must not reach: any special-purpose address (the tables above),
/// any IPv6 address outside global unicast, and a mapped or NAT64 address of any such IPv4.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => IPV4_REFUSED.iter().any(|(net, _)| net.contains(&v4)),
        IpAddr::V6(v6) => {
            if IPV4_MAPPED.contains(&v6) || NAT64_WELL_KNOWN.contains(&v6) {
                let [.., a, b, c, d] = v6.octets();
                return is_internal(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
            }
            !GLOBAL_UNICAST.contains(&v6) || IPV6_REFUSED.iter().any(|(net, _)| net.contains(&v6))
        }
    }
}

/// Resolves names with the operating system's resolver (what reqwest does by default).
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The resolver the client connects with: what `inner` answers, less every refused address
/// (unless private addresses are allowed).
struct Filtering {
    inner: Arc<dyn Resolve>,
    allow_private: bool,
}

impl Resolve for Filtering {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let resolving = self.inner.resolve(name);
        let allow_private = self.allow_private;
        Box::pin(async move {
            let allowed: Vec<SocketAddr> = resolving
                .await?
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(TargetError::OnlyInternal(host)) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client of outbound webhooks, with the rules above; with `allow_private`
/// (`webhooks.allow_private_targets`, for development and tests) any address may be reached,
/// but redirects are still not followed.
#[derive(Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    resolver: Arc<dyn Resolve>,
    allow_private: bool,
}

impl GuardedClient {
    /// A client over the operating system's resolver.
    pub fn new(allow_private: bool, timeout: Duration) -> GuardedClient {
        GuardedClient::with_resolver(Arc::new(SystemResolver), allow_private, timeout)
    }

    /// A client over another resolver (tests give names the answers they need).
    pub(crate) fn with_resolver(resolver: Arc<dyn Resolve>, allow_private: bool, timeout: Duration) -> GuardedClient {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .dns_resolver(Arc::new(Filtering {
                inner: resolver.clone(),
                allow_private,
            }))
            .build()
            .expect("a plain HTTP client builds");
        GuardedClient {
            client,
            resolver,
            allow_private,
        }
    }

    /// A POST to `url`, if it is an http(s) URL whose host, when an IP address, may be reached.
    /// A name is judged when it is resolved to connect.
    pub fn post(&self, url: &str) -> Result<RequestBuilder, TargetError> {
        let (url, literal) = parse(url)?;
        if let Some(ip) = literal.filter(|ip| !self.allow_private && is_internal(*ip)) {
            return Err(TargetError::Private(ip));
        }
        Ok(self.client.post(url))
    }

    /// Refuses a URL that is not http(s) or resolves to any refused address: when an endpoint is
    /// registered, so a mistake is told at once (every delivery is checked again, as it connects).
    pub async fn check(&self, url: &str) -> Result<(), TargetError> {
        let (url, literal) = parse(url)?;
        if self.allow_private {
            return Ok(());
        }
        let addrs: Vec<IpAddr> = match literal {
            Some(ip) => vec![ip],
            None => {
                let host = url.host_str().ok_or(TargetError::BadUrl)?;
                let name: Name = host.parse().map_err(|_| TargetError::BadUrl)?;
                self.resolver
                    .resolve(name)
                    .await
                    .map_err(|_| TargetError::Unresolvable)?
                    .map(|a| a.ip())
                    .collect()
            }
        };
        if addrs.is_empty() {
            return Err(TargetError::Unresolvable);
        }
        match addrs.into_iter().find(|ip| is_internal(*ip)) {
            Some(ip) => Err(TargetError::Private(ip)),
            None => Ok(()),
        }
    }
}

/// An http(s) URL with a host, and that host if it is an IP address.
fn parse(url: &str) -> Result<(Url, Option<IpAddr>), TargetError> {
    let url = Url::parse(url).map_err(|_| TargetError::BadUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::BadUrl);
    }
    // The URL parser writes IP hosts in their canonical form (IPv6 in brackets), whatever form
    // they were given in (`2130706433`, `0x7f.1`…).
    let host = url.host_str().ok_or(TargetError::BadUrl)?;
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse().ok();
    Ok((url, literal))
}

/// Reads at most `limit` bytes of an answer's body, dropping the rest unread; with the error
/// that ended the reading early, if one did.
pub(crate) async fn read_at_most(mut response: reqwest::Response, limit: usize) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            Ok(None) => break,
            Err(err) => return (body, Some(err)),
        }
    }
    (body, None)
}

/// An error with its causes: reqwest's own message alone does not say why a connection failed.
pub(crate) fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn internal(ip: &str) -> bool {
        is_internal(ip.parse().unwrap())
    }

    /// The last address of a block.
    fn last_v4(net: &Ipv4Net) -> Ipv4Addr {
        net.broadcast()
    }

    #[test]
    fn every_ipv4_block_is_refused_in_every_form() {
        for (net, why) in IPV4_REFUSED {
            let middle = Ipv4Addr::from(u32::from(net.network()) / 2 + u32::from(last_v4(net)) / 2);
            for ip in [net.network(), middle, last_v4(net)] {
                let [a, b, c, d] = ip.octets();
                let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
                for form in [
                    IpAddr::V4(ip),
                    IpAddr::V6(ip.to_ipv6_mapped()),
                    IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
                    IpAddr::V6(ip.to_ipv6_compatible()),
                    IpAddr::V6(Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1)),
                ] {
                    assert!(is_internal(form), "{form} ({ip} in {net}, {why})");
                }
            }
        }
    }

    #[test]
    fn every_ipv6_block_is_refused() {
        for (net, why) in IPV6_REFUSED {
            let first = u128::from(net.network());
            let last = u128::from(net.broadcast());
            for ip in [first, first / 2 + last / 2, last] {
                let ip = Ipv6Addr::from(ip);
                assert!(is_internal(IpAddr::V6(ip)), "{ip} in {net}, {why}");
            }
        }
    }

    #[test]
    fn the_registries_blocks_are_all_listed() {
        // Issue 20's list, by prefix: each must be in a table (or judged by its embedded IPv4).
        for block in [
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.31.196.0/24",
            "192.52.193.0/24",
            "192.88.99.0/24",
            "192.168.0.0/16",
            "192.175.48.0/24",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "240.0.0.0/4",
            "255.255.255.255/32",
        ] {
            let block: Ipv4Net = block.parse().unwrap();
            assert!(IPV4_REFUSED.iter().any(|(net, _)| net.contains(&block)), "{block}");
        }
        for block in [
            "::/128",
            "::1/128",
            "::/96",
            "64:ff9b:1::/48",
            "100::/64",
            "2001::/23",
            "2001:db8::/32",
            "2002::/16",
            "2620:4f:8000::/48",
            "fc00::/7",
            "fe80::/10",
            "fec0::/10",
            "ff00::/8",
        ] {
            let block: Ipv6Net = block.parse().unwrap();
            assert!(IPV6_REFUSED.iter().any(|(net, _)| net.contains(&block)), "{block}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_by_its_address() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::198.18.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(internal(ip), "{ip}");
        }
        for ip in ["::ffff:93.184.215.14", "64:ff9b::93.184.215.14", "64:ff9b::8.8.8.8"] {
            assert!(!internal(ip), "{ip}");
        }
    }

    #[test]
    fn public_addresses_next_to_the_blocks_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2620:4f:8001::1",
            "2a00:1450:4007::1",
            "3ffe:ffff::1",
        ] {
            assert!(!internal(ip), "{ip}");
        }
        for ip in ["4000::1", "1::1", "8000::1", "::2"] {
            assert!(internal(ip), "{ip}: outside global unicast");
        }
    }

    /// A resolver with fixed answers that counts its calls.
    struct Fixed {
        answers: Mutex<Vec<IpAddr>>,
        calls: AtomicUsize,
    }

    impl Resolve for Fixed {
        fn resolve(&self, _: Name) -> Resolving {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let addrs: Vec<SocketAddr> = self
                .answers
                .lock()
                .unwrap()
                .iter()
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    fn fixed(answers: &[&str]) -> Arc<Fixed> {
        Arc::new(Fixed {
            answers: Mutex::new(answers.iter().map(|a| a.parse().unwrap()).collect()),
            calls: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn the_connecting_resolver_drops_refused_addresses() {
        let resolver = Filtering {
            inner: fixed(&["10.0.0.1", "93.184.215.14", "::1", "2606:4700::1111"]),
            allow_private: false,
        };
        let addrs: Vec<IpAddr> = resolver
            .resolve("mixed.test".parse().unwrap())
            .await
            .unwrap()
            .map(|a| a.ip())
            .collect();
        assert_eq!(
            addrs,
            [
                "93.184.215.14".parse::<IpAddr>().unwrap(),
                "2606:4700::1111".parse().unwrap()
            ]
        );
        let resolver = Filtering {
            inner: fixed(&["127.0.0.1", "169.254.169.254"]),
            allow_private: false,
        };
        let err = resolver.resolve("internal.test".parse().unwrap()).await.err().unwrap();
        assert!(err.to_string().contains("internal.test"), "{err}");
    }

    #[tokio::test]
    async fn a_name_is_judged_by_the_address_the_client_connects_to() {
        // A listener on loopback, and a name that (now) resolves to it: a rebinding name.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        let resolver = fixed(&["127.0.0.1"]);
        let client = GuardedClient::with_resolver(resolver.clone(), false, Duration::from_secs(5));
        let err = client
            .post(&format!("http://rebound.test:{port}/hook"))
            .unwrap()
            .send()
            .await
            .unwrap_err();
        assert!(describe(&err).contains("internal"), "{}", describe(&err));
        assert_eq!(
            resolver.calls.load(Ordering::SeqCst),
            1,
            "resolved once, by the connection"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "the internal address was connected to"
        );

        // Literals never reach a resolver: they are judged before the request is built.
        for literal in ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]"] {
            assert!(matches!(
                client.post(&format!("http://{literal}:{port}/hook")),
                Err(TargetError::Private(_))
            ));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_allowed_name_is_reached_on_the_port_of_its_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap();
        });
        // The resolver answers port 0, as the system's does; the URL's port is the one used.
        let client = GuardedClient::with_resolver(fixed(&["127.0.0.1"]), true, Duration::from_secs(5));
        let response = client
            .post(&format!("http://receiver.test:{port}/hook"))
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(read_at_most(response, 1).await.0, b"o");
    }

    #[tokio::test]
    async fn targets_are_checked_before_any_request() {
        let client = GuardedClient::new(false, Duration::from_secs(5));
        assert!(matches!(
            client.check("ftp://example.org/x").await,
            Err(TargetError::BadUrl)
        ));
        assert!(matches!(client.check("not a url").await, Err(TargetError::BadUrl)));
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::1]:9/hook",
            "http://localhost:9/hook",
            "http://2130706433:9/hook",
            "http://0x7f.1:9/hook",
        ] {
            assert!(matches!(client.check(url).await, Err(TargetError::Private(_))), "{url}");
        }
        let allowing = GuardedClient::new(true, Duration::from_secs(5));
        assert!(allowing.check("http://127.0.0.1:9/hook").await.is_ok());
        assert!(matches!(allowing.check("not a url").await, Err(TargetError::BadUrl)));
        // A name with one internal address among public ones is refused when registered.
        let mixed = GuardedClient::with_resolver(fixed(&["93.184.215.14", "10.0.0.1"]), false, Duration::from_secs(5));
        assert!(matches!(
            mixed.check("https://mixed.test/hook").await,
            Err(TargetError::Private(_))
        ));
    }
}
