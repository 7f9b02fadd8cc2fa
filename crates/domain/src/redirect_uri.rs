//! Redirect URI matching: exact string comparison (RFC 9700 §2.1, §4.1.3),
//! with the one exception RFC 8252 §7.3 makes for native apps: a loopback
//! `http` redirect URI matches on any port.

use url::Url;

/// `127.0.0.1`, `[::1]` — the loopback IP literals RFC 8252 §7.3 names.
/// `localhost` is deliberately not treated as loopback (RFC 8252 §8.3: it
/// can be resolved to something else); it must match exactly.
fn is_loopback_ip(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// Is `requested` (as sent, unparsed) one of the `registered` URIs?
pub fn matches(registered: &[Url], requested: &str) -> Option<Url> {
    let parsed = Url::parse(requested).ok()?;
    // The parser normalises (case of the host, `/../`, default ports…); a
    // request that only matches after normalisation is not an exact match.
    if parsed.as_str() != requested {
        return None;
    }
    for r in registered {
        if r.as_str() == requested {
            return Some(parsed);
        }
        if parsed.scheme() == "http"
            && r.scheme() == "http"
            && is_loopback_ip(r)
            && is_loopback_ip(&parsed)
        {
            let mut without_port = parsed.clone();
            let _ = without_port.set_port(r.port());
            if without_port.as_str() == r.as_str() {
                return Some(parsed);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(v: &[&str]) -> Vec<Url> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn exact_match_only() {
        let r = reg(&[
            "https://app.example.com/callback",
            "io.element.app:/callback",
        ]);
        assert!(matches(&r, "https://app.example.com/callback").is_some());
        assert!(matches(&r, "io.element.app:/callback").is_some());
        for bad in [
            "https://APP.example.com/callback",
            "https://app.example.com/Callback",
            "https://app.example.com/callback/",
            "https://app.example.com/callback?x=1",
            "https://app.example.com/callback#frag",
            "https://app.example.com/other/../callback",
            "https://app.example.com/%2e%2e/callback",
            "https://evil@app.example.com/callback",
            "https://app.example.com:8443/callback",
            "http://app.example.com/callback",
            "https://аpp.example.com/callback",
            "https://app.example.com.evil/callback",
            "",
            "not a url",
        ] {
            assert!(matches(&r, bad).is_none(), "{bad} must not match");
        }
    }

    #[test]
    fn loopback_ips_match_any_port_but_nothing_else() {
        let r = reg(&[
            "http://127.0.0.1/cb",
            "http://[::1]:1234/cb",
            "http://localhost/cb",
        ]);
        assert!(matches(&r, "http://127.0.0.1:53124/cb").is_some());
        assert!(matches(&r, "http://127.0.0.1/cb").is_some());
        assert!(matches(&r, "http://[::1]:8080/cb").is_some());
        assert!(
            matches(&r, "http://127.0.0.1:53124/cb?x=1").is_none(),
            "extra query"
        );
        assert!(
            matches(&r, "http://127.0.0.1:53124/cb/extra").is_none(),
            "extra path"
        );
        assert!(
            matches(&r, "http://localhost:5000/cb").is_none(),
            "localhost is exact-match only"
        );
        assert!(matches(&r, "http://localhost/cb").is_some());
        assert!(
            matches(&r, "https://127.0.0.1:53124/cb").is_none(),
            "scheme must be the same"
        );
    }
}
