//! The route table: the one list of paths and methods the server answers. docs/api.yaml
//! is checked against it by a test, so the two cannot drift apart.

/// What a request asks for, once its path and method matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    GetVm,
    PowerOff,
    ListDimms,
    GetDimm,
    ListPoison,
    AddPoison,
    ClearPoison,
    GetHealth,
    SetHealth,
    SetShutdownState,
    GetSecurity,
    SetSecurity,
    GetFirmware,
    SetFirmware,
    GetArs,
    SetArs,
    GetEvents,
    Exec,
}

/// One (method, path template) pair. Templates are relative to [`crate::types::API_PREFIX`];
/// `{index}` matches one path segment, the DIMM number.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub endpoint: Endpoint,
}

pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/vm", endpoint: Endpoint::GetVm },
    Route { method: "PUT", path: "/vm/power-off", endpoint: Endpoint::PowerOff },
    Route { method: "GET", path: "/dimms", endpoint: Endpoint::ListDimms },
    Route { method: "GET", path: "/dimms/{index}", endpoint: Endpoint::GetDimm },
    Route { method: "GET", path: "/dimms/{index}/poison", endpoint: Endpoint::ListPoison },
    Route { method: "GET", path: "/dimms/{index}/health", endpoint: Endpoint::GetHealth },
    Route { method: "PUT", path: "/dimms/{index}/health", endpoint: Endpoint::SetHealth },
    Route { method: "PUT", path: "/dimms/{index}/shutdown-state", endpoint: Endpoint::SetShutdownState },
    Route { method: "GET", path: "/dimms/{index}/security", endpoint: Endpoint::GetSecurity },
    Route { method: "PUT", path: "/dimms/{index}/security", endpoint: Endpoint::SetSecurity },
    Route { method: "GET", path: "/dimms/{index}/firmware", endpoint: Endpoint::GetFirmware },
    Route { method: "PUT", path: "/dimms/{index}/firmware", endpoint: Endpoint::SetFirmware },
    Route { method: "POST", path: "/poison", endpoint: Endpoint::AddPoison },
    Route { method: "DELETE", path: "/poison", endpoint: Endpoint::ClearPoison },
    Route { method: "GET", path: "/ars", endpoint: Endpoint::GetArs },
    Route { method: "PUT", path: "/ars", endpoint: Endpoint::SetArs },
    Route { method: "GET", path: "/events", endpoint: Endpoint::GetEvents },
    Route { method: "POST", path: "/exec", endpoint: Endpoint::Exec },
];

/// The outcome of looking a request up in [`ROUTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// `index` is the raw `{index}` segment, when the template has one.
    Found {
        endpoint: Endpoint,
        index: Option<&'a str>,
    },
    /// The path exists but not with this method; `allow` lists the methods it has.
    WrongMethod {
        allow: Vec<&'static str>,
    },
    NotFound,
}

/// Finds the route for `method` and `path` (relative to the API prefix, no query).
pub fn lookup<'a>(method: &str, path: &'a str) -> Lookup<'a> {
    let mut allow = Vec::new();
    for route in ROUTES {
        let Some(index) = match_template(route.path, path) else {
            continue;
        };
        if route.method == method {
            return Lookup::Found { endpoint: route.endpoint, index };
        }
        allow.push(route.method);
    }
    if allow.is_empty() {
        Lookup::NotFound
    } else {
        Lookup::WrongMethod { allow }
    }
}

/// `Some(captured {index})` when `path` has the template's shape.
fn match_template<'a>(template: &str, path: &'a str) -> Option<Option<&'a str>> {
    let mut want = template.split('/');
    let mut have = path.split('/');
    let mut index = None;
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(index),
            (Some("{index}"), Some(seg)) if !seg.is_empty() => index = Some(seg),
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_routes_and_captures_the_index() {
        assert_eq!(lookup("GET", "/vm"), Lookup::Found { endpoint: Endpoint::GetVm, index: None });
        assert_eq!(lookup("PUT", "/dimms/3/health"), Lookup::Found { endpoint: Endpoint::SetHealth, index: Some("3") });
        assert_eq!(lookup("GET", "/dimms/x"), Lookup::Found { endpoint: Endpoint::GetDimm, index: Some("x") });
    }

    #[test]
    fn wrong_method_lists_the_allowed_ones() {
        assert_eq!(lookup("PATCH", "/dimms/0/health"), Lookup::WrongMethod { allow: vec!["GET", "PUT"] });
        assert_eq!(lookup("GET", "/poison"), Lookup::WrongMethod { allow: vec!["POST", "DELETE"] });
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in ["/", "", "/vm/", "/dimms//poison", "/dimms/0/poison/1", "/vmx", "/dimms/"] {
            assert_eq!(lookup("GET", path), Lookup::NotFound, "{path}");
        }
    }
}
