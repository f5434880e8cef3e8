//! Shared by the api_* tests: a control API server on a temporary socket, serving a
//! FakeBackend over a real (ephemeral) NvdimmPlatform, and the real client.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tempfile::TempDir;
use vnvdimm_control::fake::FakeBackend;
use vnvdimm_control::{ApiClient, ApiResponse, ApiServer, ApiServerHandle};

pub const GIB: u64 = 1 << 30;
/// DIMM windows of the default platform the FakeBackend builds.
pub const DIMM0_SPA: u64 = 4 * GIB;
pub const DIMM1_SPA: u64 = 5 * GIB;

pub struct Vm {
    pub backend: Arc<FakeBackend>,
    pub client: ApiClient,
    pub socket: PathBuf,
    pub server: Option<ApiServerHandle>,
    pub dir: TempDir,
}

pub fn start() -> Vm {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let backend = Arc::new(FakeBackend::with_default_platform());
    let server = ApiServer::start(&socket, backend.clone()).unwrap();
    Vm { client: ApiClient::new(&socket), backend, socket, server: Some(server), dir }
}

impl Vm {
    pub fn get(&self, path: &str) -> ApiResponse {
        self.client.get(path).unwrap()
    }

    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.client.request(method, path, body.as_ref()).unwrap();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.body
    }

    /// Sends a request that must fail with `status`; returns the error message.
    pub fn fails(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> String {
        let r = self.client.request(method, path, body.as_ref()).unwrap();
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        r.error_message().unwrap_or_else(|| panic!("no error message in {}", r.body)).to_string()
    }

    /// Everything a bad request must leave alone: poison, health, ARS rate, event count.
    pub fn snapshot(&self) -> Value {
        let dimms = self.get("/dimms").body;
        let health: Vec<Value> = (0..2).map(|i| self.get(&format!("/dimms/{i}/health")).body).collect();
        let events = self.get("/events").body["events"].as_array().unwrap().len();
        serde_json::json!({ "dimms": dimms, "health": health, "ars": self.get("/ars").body["rate_bytes_per_sec"], "events": events })
    }
}

/// Runs `vnvdimm ctl --api-socket SOCKET ARGS...` in-process: (exit code, stdout, stderr).
pub fn ctl(socket: &std::path::Path, args: &[&str]) -> (u8, String, String) {
    let mut argv = vec!["vnvdimm".to_string(), "ctl".to_string(), "--api-socket".to_string()];
    argv.push(socket.display().to_string());
    argv.extend(args.iter().map(|s| s.to_string()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = vnvdimm::cli::run(argv, &mut out, &mut err);
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}
