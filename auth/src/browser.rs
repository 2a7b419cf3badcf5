//! Which hosts and origins a server answers, so that a web page in
//! someone's browser cannot drive it: the server's HTTP guard
//! ([`crate::http::guard`]) and the edge Worker ask the same questions.

use std::net::IpAddr;

/// Which hosts and origins the server answers.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    /// Origins (`https://app.example.com`) whose pages may call the server;
    /// a page the server itself serves may always. `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Host names the server answers besides IP addresses, `localhost` and
    /// the base domain with its subdomains.
    pub allowed_hosts: Vec<String>,
    pub base_domain: Option<String>,
}

impl Browser {
    /// Whether `host` (a `Host` header: name or address, maybe a port)
    /// names this server. IP addresses always do: a rebinding attack needs
    /// a name.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host).to_ascii_lowercase();
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() || name == "localhost" {
            return true;
        }
        let name = name.trim_end_matches('.');
        if let Some(base) = self.base_domain.as_deref().map(|b| b.trim_matches('.').to_ascii_lowercase())
            && !base.is_empty()
            && (name == base || name.strip_suffix(&base).is_some_and(|rest| rest.ends_with('.')))
        {
            return true;
        }
        self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether a page of `origin` may call the server reached as `host`.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let same = origin
            .split_once("://")
            .is_some_and(|(_, authority)| host.is_some_and(|h| authority.eq_ignore_ascii_case(h)));
        same || self.allowed_origins.iter().any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split_once(']').map_or(host, |(v6, _)| &host[..v6.len() + 2]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => name,
        _ => host,
    }
}

/// Why a request of `method` with this `Content-Type` is refused, if it
/// is: a POST, PUT or PATCH must say its body is JSON, which no form and no
/// "simple" cross-origin request can.
pub fn json_refusal(method: &str, content_type: Option<&str>) -> Option<String> {
    if !matches!(method, "POST" | "PUT" | "PATCH") {
        return None;
    }
    let content_type = content_type.unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return None;
    }
    let given = if content_type.is_empty() { "none".to_owned() } else { format!("{content_type:?}") };
    Some(format!("{method} requests take JSON: send Content-Type: application/json (this one has {given})"))
}

/// A CORS preflight's answer headers for an allowed origin (besides
/// `Access-Control-Allow-Origin` and `Vary`).
pub const PREFLIGHT_HEADERS: [(&str, &str); 3] = [
    ("access-control-allow-methods", "GET, POST, DELETE, HEAD, OPTIONS"),
    ("access-control-allow-headers", "authorization, content-type, accept, x-tenant-id"),
    ("access-control-max-age", "600"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_this_servers_names_and_addresses() {
        let b = Browser { base_domain: Some("db.example.com".into()), allowed_hosts: vec!["tidelake.internal".into()], ..Default::default() };
        for yes in ["127.0.0.1:7432", "[::1]:7432", "10.1.2.3", "localhost:7432", "acme.db.example.com", "db.example.com:443", "TIDELAKE.internal:80"] {
            assert!(b.host_allowed(yes), "{yes}");
        }
        for no in ["evil.example", "rebind.attacker.net:7432", "xdb.example.com", "db.example.com.evil.net", "localhost.evil.net"] {
            assert!(!b.host_allowed(no), "{no}");
        }
    }

    #[test]
    fn origins_are_the_same_one_or_listed() {
        let b = Browser { allowed_origins: vec!["https://app.example.com/".into()], ..Default::default() };
        assert!(b.origin_allowed("http://127.0.0.1:7432", Some("127.0.0.1:7432")));
        assert!(b.origin_allowed("https://app.example.com", Some("127.0.0.1:7432")));
        assert!(!b.origin_allowed("http://127.0.0.1:9999", Some("127.0.0.1:7432")));
        assert!(!b.origin_allowed("null", Some("127.0.0.1:7432")));
        assert!(!b.origin_allowed("https://evil.example", None));
    }
}
