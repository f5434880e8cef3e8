//! Issue 10, point 3: at the descriptor limit tiny_http's accept loop ended for good and
//! the API refused every connection from then on. This runs the server with this test
//! process's descriptors used up (one test in its own binary, because the limit is
//! per process), lets a connection wait in the backlog while accept() fails with
//! EMFILE, then frees the descriptors: the server must answer again.

mod api_support;

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use api_support::start;

fn set_soft_limit(n: u64) -> u64 {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let new = libc::rlimit { rlim_cur: n.min(old.rlim_max), rlim_max: old.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
    }
    old.rlim_cur
}

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[test]
fn the_accept_loop_survives_running_out_of_descriptors() {
    let vm = start();
    assert_eq!(vm.get("/vm").status, 200);
    // That connection's descriptor must be closed before counting, or it would free one later.
    let server = vm.server.as_ref().unwrap();
    for _ in 0..1000 {
        if server.connections() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.connections(), 0, "the first connection is still being served");
    let old = set_soft_limit(open_descriptors() + 64);
    // Use up every descriptor but one, and take that one with a client connection: the
    // server's accept() for it can only fail with EMFILE.
    let mut fillers = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        fillers.push(f);
    }
    drop(fillers.pop());
    let waiting = UnixStream::connect(&vm.socket).expect("one descriptor was left for the client");
    // Time for the accept loop to hit EMFILE (several times); the server must not give up.
    std::thread::sleep(Duration::from_millis(300));
    drop(fillers);
    set_soft_limit(old);
    drop(waiting);
    let answer = vm.client.clone().with_timeout(Duration::from_secs(10)).get("/vm");
    assert_eq!(answer.expect("the API answers again once descriptors are free").status, 200);
}
