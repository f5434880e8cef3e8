//! `vnvdimm test --script FILE`: the user's own scenario. The configured guest boots
//! (`vnvdimm run` with an API socket, a child process), FILE runs on the host with
//! `VNVDIMM_API_SOCKET` set, so `vnvdimm ctl poison|health|exec|events ...` reach the VM,
//! and its exit status is the result. The guest is powered off afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vnvdimm_control::ApiClient;

use super::report::Outcome;

/// How long the VMM has to create its API socket.
const API_WAIT: Duration = Duration::from_secs(120);
/// How long the guest has to power off once the script is done.
const POWER_OFF_WAIT: Duration = Duration::from_secs(60);

pub struct ScriptRun<'a> {
    pub script: &'a Path,
    /// `vnvdimm run` options: backend, memory, CPUs, DIMMs, kernel (the socket is added).
    pub run_args: Vec<String>,
    /// Holds the socket and logs (the `--keep` directory's, or a temporary one).
    pub work: &'a Path,
}

impl ScriptRun<'_> {
    pub fn run(&self) -> Outcome {
        let started = Instant::now();
        let name = format!("script:{}", self.script.file_name().map_or("?".into(), |n| n.to_string_lossy()));
        let result = self.boot_run_stop();
        let (passed, output) = match result {
            Ok((passed, output)) => (passed, output),
            Err(output) => (false, output),
        };
        Outcome { name, passed, time: started.elapsed(), output }
    }

    fn boot_run_stop(&self) -> Result<(bool, String), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the vnvdimm binary: {e}"))?;
        let socket = self.work.join("api.sock");
        let console = self.work.join("console.log");
        let mut vm = self.boot(&exe, &socket, &console)?;
        let script_log = self.work.join("script.log");
        let status = self.run_script(&exe, &socket, &script_log);
        let stop = power_off(&socket, &mut vm);
        let mut output = read(&script_log);
        if let Err(e) = &status {
            output.push_str(&format!("\n{e}\n"));
        }
        if !matches!(status, Ok(true)) || stop.is_err() {
            output.push_str(&format!("\n--- vnvdimm run (console and stderr, last 60 lines) ---\n{}", tail(&read(&console), 60)));
        }
        if let Err(e) = &stop {
            output.push_str(&format!("\n{e}\n"));
        }
        Ok((matches!(status, Ok(true)) && stop.is_ok(), output))
    }

    fn boot(&self, exe: &Path, socket: &Path, console: &Path) -> Result<Child, String> {
        let log = std::fs::File::create(console).map_err(|e| format!("cannot create {}: {e}", console.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("run")
            .args(&self.run_args)
            .arg("--api-socket")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("cannot start {} run: {e}", exe.display()))?;
        let waiting = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("vnvdimm run ended before serving its API ({status}):\n{}", tail(&read(console), 60)));
            }
            if waiting.elapsed() > API_WAIT {
                let _ = child.kill();
                return Err(format!("vnvdimm run did not serve its API within {API_WAIT:?}:\n{}", tail(&read(console), 60)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(child)
    }

    /// Ok(whether FILE exited 0); the script's PATH finds this `vnvdimm` first.
    fn run_script(&self, exe: &Path, socket: &Path, log: &Path) -> Result<bool, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut path = exe.parent().map(Path::to_path_buf).unwrap_or_default().into_os_string();
        if let Some(old) = std::env::var_os("PATH") {
            path.push(":");
            path.push(old);
        }
        let mut command = if is_executable(self.script) { Command::new(self.script) } else {
            let mut sh = Command::new("sh");
            sh.arg(self.script);
            sh
        };
        let status = command
            .env("VNVDIMM_API_SOCKET", socket)
            .env("VNVDIMM_WORK_DIR", self.work)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .status()
            .map_err(|e| format!("cannot run {}: {e}", self.script.display()))?;
        Ok(status.success())
    }
}

/// Powers the guest off through the API and waits for `vnvdimm run` to end; a guest
/// already stopped (the script powered it off) is fine.
fn power_off(socket: &Path, vm: &mut Child) -> Result<(), String> {
    if let Ok(None) = vm.try_wait() {
        let _ = ApiClient::new(socket).with_timeout(Duration::from_secs(30)).request("PUT", "/vm/power-off", None::<&serde_json::Value>);
    }
    let waiting = Instant::now();
    loop {
        match vm.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if waiting.elapsed() < POWER_OFF_WAIT => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = vm.kill();
                let _ = vm.wait();
                return Err(format!("the guest did not power off within {POWER_OFF_WAIT:?}; vnvdimm run was killed"));
            }
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn read(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The DIMMs a script gets when it names none: one sparse 1 GiB DIMM with a label area.
pub fn default_nvdimms(work: &Path) -> Result<Vec<String>, String> {
    let path: PathBuf = work.join("nvdimm0.img");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(1 << 30))
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok(vec![format!("path={},size=1G,label-size=128K", path.display())])
}
