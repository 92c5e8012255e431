//! Where deliveries may go. An endpoint's URL must be `https` (or `http`
//! with WEBHOOK_ALLOW_PRIVATE_TARGETS), and no address it resolves to may
//! be loopback, private, link-local (cloud metadata lives there) or
//! otherwise not on the internet: checked when the endpoint is created
//! and again by the resolver of every connection, so a name that resolves
//! elsewhere later (DNS rebinding) is refused all the same.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// How long a URL's host may take to resolve when an endpoint is created
/// (within the request's own deadline).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest URL accepted.
pub const MAX_URL_BYTES: usize = 2048;

/// Whether `ip` is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Carrier-grade NAT, and 192.0.0.0/24 (IETF protocol assignments).
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // Benchmarking (198.18.0.0/15) and reserved (240.0.0.0/4).
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local (fc00::/7, AWS' metadata fd00:ec2::254 among them)
        // and link-local (fe80::/10).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // NAT64 (64:ff9b::/96) reaches IPv4 addresses, private ones too.
        || (first == 0x64 && ip.segments()[1] == 0xff9b)
        // Documentation (2001:db8::/32).
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// Checks an endpoint URL's form: scheme, host, length.
pub fn parse_url(text: &str, allow_private: bool) -> Result<Url, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!("url: at most {MAX_URL_BYTES} bytes"));
    }
    let url = Url::parse(text).map_err(|err| format!("url: not a URL ({err})"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err("url: must be https".to_owned()),
        _ => return Err("url: must be https".to_owned()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("url: needs a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url: must not hold credentials".to_owned());
    }
    Ok(url)
}

/// The host of `url` when it is an IP address.
fn ip_host(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Resolves `url`'s host and refuses it if any address is not public
/// (unless private targets are allowed): at creation and on update.
pub async fn check_resolves_publicly(url: &Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let addresses: Vec<IpAddr> = match ip_host(url) {
        Some(ip) => vec![ip],
        None => {
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup = tokio::net::lookup_host((host, port));
            tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
                .await
                .map_err(|_| format!("url: {host} did not resolve within {RESOLVE_TIMEOUT:?}"))?
                .map_err(|err| format!("url: cannot resolve {host}: {err}"))?
                .map(|address| address.ip())
                .collect()
        }
    };
    match addresses.iter().find(|ip| !is_public(**ip)) {
        Some(ip) => Err(format!(
            "url: resolves to {ip}, a loopback, private or link-local address \
             (set WEBHOOK_ALLOW_PRIVATE_TARGETS=true to allow it)"
        )),
        None => Ok(()),
    }
}

/// Before each attempt: an IP literal is not resolved, so the resolver
/// below never sees it.
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), String> {
    match ip_host(url) {
        Some(ip) if !allow_private && !is_public(ip) => {
            Err(format!("refused: {ip} is not a public address"))
        }
        _ => Ok(()),
    }
}

/// The delivery client's resolver: the system's, refusing every name that
/// resolves to an address that is not public.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|err| -> Box<dyn std::error::Error + Send + Sync> { Box::new(err) })?
                .collect();
            if let Some(address) = addresses.iter().find(|address| !is_public(address.ip())) {
                let refusal =
                    format!("refused: {host} resolves to {}, not a public address", address.ip());
                return Err(refusal.into());
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The resolver the delivery client uses.
pub fn resolver(allow_private: bool) -> Option<Arc<PublicOnly>> {
    (!allow_private).then_some(Arc::new(PublicOnly))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[test]
    fn urls_must_be_https_unless_private_targets_are_allowed() {
        assert!(parse_url("https://hooks.example.com/deployql", false).is_ok());
        assert!(parse_url("http://hooks.example.com/deployql", false).is_err());
        assert!(parse_url("http://127.0.0.1:9000/", true).is_ok());
        assert!(parse_url("ftp://example.com/", true).is_err());
        assert!(parse_url("https://user:pw@example.com/", false).is_err());
        assert!(parse_url("not a url", false).is_err());
        assert!(check_literal(&parse_url("https://127.0.0.1/", false).unwrap(), false).is_err());
        assert!(check_literal(&parse_url("https://[::1]:8443/", false).unwrap(), false).is_err());
        assert!(check_literal(&parse_url("https://127.0.0.1/", false).unwrap(), true).is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let url = parse_url("https://localhost:8443/hook", false).unwrap();
        let refusal = check_resolves_publicly(&url, false).await.unwrap_err();
        assert!(refusal.contains("127.0.0.1") || refusal.contains("::1"), "{refusal}");
        assert!(check_resolves_publicly(&url, true).await.is_ok());
    }
}
