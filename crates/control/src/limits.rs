//! What one client may cost the API server: how many connections are served at once and
//! how long each part of a request may take. The defaults are what `vnvdimm run` uses;
//! tests pass shorter ones to [`crate::ApiServer::start_with`].

use std::time::Duration;

use crate::http::Deadlines;

/// Connections served at once by default. Each costs one descriptor and its buffers; a
/// control API has a handful of clients, so this only stops a runaway or hostile one.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// Default time for the request headers, for the body, and for writing the answer. A
/// real client sends a request in one write; this only bounds one that does not.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; one more is answered `503` and closed at once.
    pub max_connections: usize,
    pub deadlines: Deadlines,
}

impl Default for ServerLimits {
    fn default() -> Self {
        let d = DEFAULT_DEADLINE;
        ServerLimits { max_connections: DEFAULT_MAX_CONNECTIONS, deadlines: Deadlines { head: d, body: d, write: d } }
    }
}
