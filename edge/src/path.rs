//! How the Worker reads a request's path: `/t/{tenant}/{route}` names the
//! tenant in the path; any other path is a route whose tenant comes from
//! the `X-Tenant-Id` header or the host (the server's rules, `model::Routing`).

/// The tenant segment of the path, if the path has one, and the route
/// after it (without its leading slash).
pub fn split(path: &str) -> (Option<&str>, &str) {
    match path.strip_prefix("/t/") {
        Some(rest) => match rest.split_once('/') {
            Some((tenant, route)) => (Some(tenant), route),
            None => (Some(rest), ""),
        },
        None => (None, path.trim_start_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn the_tenant_comes_from_the_path_prefix_only() {
        assert_eq!(split("/t/acme/query"), (Some("acme"), "query"));
        assert_eq!(split("/t/acme/changes/ack"), (Some("acme"), "changes/ack"));
        assert_eq!(split("/t/acme"), (Some("acme"), ""));
        assert_eq!(split("/t/Bad_Id/query"), (Some("Bad_Id"), "query"));
        assert_eq!(split("/query"), (None, "query"));
        assert_eq!(split("/liveness"), (None, "liveness"));
        assert_eq!(split("/"), (None, ""));
    }
}
