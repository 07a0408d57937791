//! Where the relay may post (SPEC 13: no SSRF through push): `https://` URLs whose every
//! address is public. Checked when a user subscribes, and again when a message is sent, by the
//! resolver the HTTP client connects through ([`GuardedResolver`]): the addresses checked are
//! the ones connected to, so a DNS answer that changes between the check and the connection
//! (rebinding) cannot move the request to an internal address. Redirects are not followed.
//!
//! `push_allow_private_endpoints` lifts every rule but the URL's shape (tests, closed networks).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::Url;

/// How names become addresses: [`SystemLookup`] in production; a test passes in its own (a
/// name that turns internal between subscribe and send, as DNS rebinding does).
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// The resolver refused a name: one of its addresses is internal. The sender finds it in a
/// failed request's error chain and drops the message (it is not a network error to retry).
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to an internal address: not sent")]
pub struct InternalAddress {
    pub host: String,
}

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Parses and checks a URL the relay would post to; the problem, for a 400, otherwise.
/// Without `allow_private`: `https` only, no credentials in it, and a host that is not an
/// internal address literal (names are checked when resolved).
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err("must be an https:// URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials".into());
    }
    let Some(host) = url.host() else { return Err("must have a host".into()) };
    if allow_private {
        return Ok(url);
    }
    let ip = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal") {
                return Err("must not point to this machine or an internal network".into());
            }
            None
        }
    };
    if let Some(ip) = ip {
        if !is_public(ip) {
            return Err("must not point to a loopback, private, link-local or other internal address".into());
        }
    }
    Ok(url)
}

/// Resolves `url`'s host now and checks every address (at subscribe time, for a clear 400).
pub async fn check_resolves_public(url: &Url, allow_private: bool, lookup: &dyn Lookup) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
    let addrs = lookup.lookup(name.to_string()).await.map_err(|e| format!("cannot resolve {name}: {e}"))?;
    if addrs.is_empty() {
        return Err(format!("{name} has no address"));
    }
    if addrs.iter().any(|ip| !is_public(*ip)) {
        return Err("resolves to a loopback, private, link-local or other internal address".into());
    }
    Ok(())
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local (cloud metadata
/// at 169.254.169.254 included), shared (CGNAT), unspecified, broadcast, multicast,
/// documentation, benchmarking, reserved, unique-local or site-local; IPv6 forms that carry an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // IPv4-compatible (deprecated) ::a.b.c.d
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded_v4(s[6], s[7]));
    }
    // NAT64 64:ff9b::/96
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4 2002::/16 carries the IPv4 address in its next 32 bits.
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard-only 100::/64
}

/// The HTTP client's resolver: resolves with `lookup`, and refuses a name any of whose
/// addresses is internal (unless private endpoints are allowed) with [`InternalAddress`]. The
/// client connects only to the addresses returned here.
#[derive(Clone)]
pub struct GuardedResolver {
    pub allow_private: bool,
    pub lookup: Arc<dyn Lookup>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let ips = lookup.lookup(host.clone()).await?;
            if !allow_private && ips.iter().any(|ip| !is_public(*ip)) {
                return Err(Box::new(InternalAddress { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        let refused = [
            "https://127.0.0.1/push",
            "https://169.254.169.254/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[::]/",
            "https://[fe80::1]/",
            "https://[fd00:ec2::254]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:c0a8:101::1]/",
            "https://localhost/",
            "https://push.localhost/",
            "http://push.example.com/",
            "ftp://push.example.com/",
            "https://user:pw@push.example.com/",
            "not a url",
        ];
        for url in refused {
            assert!(check_url(url, false).is_err(), "{url} should be refused");
        }
        for url in ["https://fcm.googleapis.com/fcm/send/x", "https://8.8.8.8/", "https://[2606:4700::1111]/"] {
            assert!(check_url(url, false).is_ok(), "{url} should pass");
        }
        assert!(check_url("http://127.0.0.1:8080/push", true).is_ok(), "allowed by the setting");
        assert!(check_url("ftp://127.0.0.1/", true).is_err(), "but only http(s)");
    }
}
