//! The QEMU arguments that give a guest the agent's serial port.

use std::ffi::OsString;
use std::path::Path;

/// `-chardev socket,...,server=on,wait=off -serial chardev:ID`: the next serial port
/// (ttyS2 when the console and the harness's result port come first) becomes a Unix
/// socket QEMU listens on; QEMU does not wait for a client, and output written while no
/// client is connected is dropped (the client pings to resynchronise).
pub fn serial_socket_args(socket: &Path, id: &str) -> Vec<OsString> {
    let mut chardev = OsString::from(format!("socket,id={id},server=on,wait=off,path="));
    // QEMU option values escape ',' as ",,".
    chardev.push(socket.to_string_lossy().replace(',', ",,"));
    vec![
        "-chardev".into(),
        chardev,
        "-serial".into(),
        format!("chardev:{id}").into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_name_the_socket_and_escape_commas() {
        let a = serial_socket_args(Path::new("/run/a,b/agent.sock"), "vnvagent");
        assert_eq!(
            a,
            vec![
                OsString::from("-chardev"),
                "socket,id=vnvagent,server=on,wait=off,path=/run/a,,b/agent.sock".into(),
                "-serial".into(),
                "chardev:vnvagent".into(),
            ]
        );
    }
}
