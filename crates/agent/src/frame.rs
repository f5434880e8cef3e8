//! The agent's line protocol (`images/vnv-agent`, docs/guest-agent.md): encoding requests
//! and turning the byte stream from the guest into events, whatever else is on the line.

use thiserror::Error;

use crate::codec::{base64_decode, base64_encode, crc32};

/// Protocol version the agent announces in its READY line.
pub const PROTOCOL_VERSION: u32 = 1;

/// Lines longer than this without a newline are noise; the parser drops them so a
/// peer that never sends `\n` cannot make it grow without bound.
const MAX_LINE: usize = 64 * 1024;
/// A response claiming more output than this is treated as corrupt.
pub const MAX_OUTPUT: usize = 64 * 1024 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("response {id} was cut off by another frame before its end marker")]
    Truncated { id: u64 },
    #[error("response {id} is not valid base64 ({detail})")]
    BadBase64 { id: u64, detail: String },
    #[error("response {id} announced {expected} bytes of output but carried {got}")]
    Length {
        id: u64,
        expected: usize,
        got: usize,
    },
    #[error("response {id} output checksum {got:08x} differs from the announced {expected:08x}")]
    Checksum { id: u64, expected: u32, got: u32 },
    #[error("response {id} announces {len} bytes of output, more than the {MAX_OUTPUT} accepted")]
    TooLarge { id: u64, len: usize },
}

/// Something the guest said.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The agent (re)started. `release` is the guest's `uname -r`.
    Ready {
        version: u32,
        release: String,
    },
    Pong {
        id: u64,
    },
    /// A command finished (its status is the shell's: 0-255, 128+N after signal N).
    Response {
        id: u64,
        status: i32,
        output: Vec<u8>,
    },
    /// A response arrived damaged; the command did run.
    Corrupt(FrameError),
    /// The agent refused a request without running anything.
    Rejected {
        id: u64,
        reason: String,
    },
    Bye {
        id: u64,
    },
}

pub fn exec_request(id: u64, command: &str, timeout_secs: u64) -> Vec<u8> {
    let b64 = base64_encode(command.as_bytes());
    // The leading newline ends whatever partial line the guest's reader holds.
    format!(
        "\nVNVA1 EXEC {id} {timeout_secs} {:08x} {b64}\n",
        crc32(b64.as_bytes())
    )
    .into_bytes()
}

pub fn ping_request(id: u64) -> Vec<u8> {
    format!("\nVNVA1 PING {id}\n").into_bytes()
}

pub fn kill_request(id: u64) -> Vec<u8> {
    format!("\nVNVA1 KILL {id}\n").into_bytes()
}

pub fn quit_request(id: u64) -> Vec<u8> {
    format!("\nVNVA1 QUIT {id}\n").into_bytes()
}

struct Pending {
    id: u64,
    status: i32,
    len: usize,
    crc: u32,
    text: Vec<u8>,
}

/// Incremental parser: feed it bytes as they arrive, in chunks of any size.
#[derive(Default)]
pub struct Parser {
    line: Vec<u8>,
    overlong: bool,
    pending: Option<Pending>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8], events: &mut Vec<Event>) {
        for &b in bytes {
            if b == b'\n' {
                if !self.overlong {
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, events);
                }
                self.line.clear();
                self.overlong = false;
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            } else {
                self.overlong = true;
            }
        }
    }

    fn line_done(&mut self, line: &[u8], events: &mut Vec<Event>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // A marker may follow noise on the same line (a printk without newline).
        let marker = find_last(line, b"@@VNVA-").and_then(|at| parse_marker(&line[at..]));
        match (marker, self.pending.as_mut()) {
            (None, Some(p)) => {
                if line
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"+/= \t".contains(c))
                {
                    p.text.extend_from_slice(line);
                } else {
                    // Noise inside a response: keep it, so the checksum rejects the frame
                    // rather than silently returning the output without those bytes.
                    p.text.push(b'*');
                }
            }
            (None, None) => {}
            (Some(Marker::End { id }), Some(p)) if p.id == id => {
                if let Some(p) = self.pending.take() {
                    events.push(finish(p));
                }
            }
            (Some(Marker::End { .. }), _) => {}
            (
                Some(Marker::Rsp {
                    id,
                    status,
                    len,
                    crc,
                }),
                _,
            ) => {
                self.cut_pending(events);
                if len > MAX_OUTPUT {
                    events.push(Event::Corrupt(FrameError::TooLarge { id, len }));
                } else {
                    self.pending = Some(Pending {
                        id,
                        status,
                        len,
                        crc,
                        text: Vec::new(),
                    });
                }
            }
            (Some(Marker::Other(ev)), _) => {
                self.cut_pending(events);
                events.push(ev);
            }
        }
    }

    fn cut_pending(&mut self, events: &mut Vec<Event>) {
        if let Some(p) = self.pending.take() {
            events.push(Event::Corrupt(FrameError::Truncated { id: p.id }));
        }
    }
}

fn finish(p: Pending) -> Event {
    let id = p.id;
    let output = match base64_decode(&p.text) {
        Ok(o) => o,
        Err(e) => {
            return Event::Corrupt(FrameError::BadBase64 {
                id,
                detail: e.to_string(),
            })
        }
    };
    if output.len() != p.len {
        return Event::Corrupt(FrameError::Length {
            id,
            expected: p.len,
            got: output.len(),
        });
    }
    let got = crc32(&output);
    if got != p.crc {
        return Event::Corrupt(FrameError::Checksum {
            id,
            expected: p.crc,
            got,
        });
    }
    Event::Response {
        id,
        status: p.status,
        output,
    }
}

enum Marker {
    Rsp {
        id: u64,
        status: i32,
        len: usize,
        crc: u32,
    },
    End {
        id: u64,
    },
    Other(Event),
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// `@@VNVA-KIND fields...@@` (anything after the closing `@@` is ignored).
fn parse_marker(s: &[u8]) -> Option<Marker> {
    let s = std::str::from_utf8(s).ok()?;
    let body = s.strip_prefix("@@VNVA-")?;
    let body = &body[..body.find("@@")?];
    let mut f = body.split(' ');
    let kind = f.next()?;
    let mut num = || f.next().and_then(|x| x.parse::<u64>().ok());
    Some(match kind {
        "READY" => {
            let version = u32::try_from(num()?).ok()?;
            let release = body.splitn(3, ' ').nth(2).unwrap_or("").to_string();
            Marker::Other(Event::Ready { version, release })
        }
        "PONG" => Marker::Other(Event::Pong { id: num()? }),
        "BYE" => Marker::Other(Event::Bye { id: num()? }),
        "END" => Marker::End { id: num()? },
        "RSP" => {
            let id = num()?;
            let status = i32::try_from(num()?).ok()?;
            let len = usize::try_from(num()?).ok()?;
            let crc = u32::from_str_radix(f.next()?, 16).ok()?;
            Marker::Rsp {
                id,
                status,
                len,
                crc,
            }
        }
        "ERR" => {
            let id = num()?;
            let reason = body.splitn(3, ' ').nth(2).unwrap_or("").to_string();
            Marker::Other(Event::Rejected { id, reason })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: u64, status: i32, output: &[u8]) -> Vec<u8> {
        let mut s = format!(
            "@@VNVA-RSP {id} {status} {} {:08x}@@\n",
            output.len(),
            crc32(output)
        );
        let b64 = base64_encode(output);
        for chunk in b64.as_bytes().chunks(76) {
            s.push_str(std::str::from_utf8(chunk).unwrap());
            s.push('\n');
        }
        s.push_str(&format!("@@VNVA-END {id}@@\n"));
        s.into_bytes()
    }

    fn parse_in_chunks(bytes: &[u8], chunk: usize) -> Vec<Event> {
        let mut p = Parser::new();
        let mut ev = Vec::new();
        for c in bytes.chunks(chunk) {
            p.push(c, &mut ev);
        }
        ev
    }

    #[test]
    fn frames_survive_noise_and_any_chunking() {
        let out: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut stream = b"\x1b[0m[    2.5] random kernel line\nhalf a li".to_vec();
        stream.extend(b"ne @@VNVA-READY 1 6.1.0-56-amd64@@\r\n");
        stream.extend(b"@@VNVA-PONG 7@@\n@@VNVA-garbage@@\n@@VNVA-END 99@@\n");
        stream.extend(response(8, 3, &out));
        stream.extend(b"\x00\xff\xfe noise\n@@VNVA-ERR 9 bad-checksum@@\n@@VNVA-BYE 10@@\n");
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let ev = parse_in_chunks(&stream, chunk);
            assert_eq!(
                ev,
                vec![
                    Event::Ready {
                        version: 1,
                        release: "6.1.0-56-amd64".into()
                    },
                    Event::Pong { id: 7 },
                    Event::Response {
                        id: 8,
                        status: 3,
                        output: out.clone()
                    },
                    Event::Rejected {
                        id: 9,
                        reason: "bad-checksum".into()
                    },
                    Event::Bye { id: 10 },
                ],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn empty_output_is_a_response() {
        let ev = parse_in_chunks(b"@@VNVA-RSP 1 0 0 00000000@@\n@@VNVA-END 1@@\n", 5);
        assert_eq!(
            ev,
            vec![Event::Response {
                id: 1,
                status: 0,
                output: vec![]
            }]
        );
    }

    #[test]
    fn damaged_responses_are_reported_not_returned() {
        let good = response(5, 0, b"hello world, this is output\n");
        let text = String::from_utf8(good.clone()).unwrap();
        // A kernel message in the middle of the base64 lines.
        let noisy = text.replacen("\n", "\n[ 3.1] nfit ACPI0012:00: noise\n", 1);
        // One base64 character flipped.
        let flipped = text.replacen("aGVs", "aGVt", 1);
        // Cut off by the next response.
        let cut: String = text
            .lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + &String::from_utf8(response(6, 0, b"x")).unwrap();
        let claims_more = text.replacen("@@VNVA-RSP 5 0 28", "@@VNVA-RSP 5 0 29", 1);
        let ev = |s: &str| parse_in_chunks(s.as_bytes(), 3);
        assert!(
            matches!(
                ev(&noisy)[..],
                [Event::Corrupt(FrameError::BadBase64 { id: 5, .. })]
            ),
            "{:?}",
            ev(&noisy)
        );
        assert!(matches!(
            ev(&flipped)[..],
            [Event::Corrupt(FrameError::Checksum { id: 5, .. })]
        ));
        assert!(matches!(
            ev(&cut)[..],
            [
                Event::Corrupt(FrameError::Truncated { id: 5 }),
                Event::Response { id: 6, .. }
            ]
        ));
        assert!(matches!(
            ev(&claims_more)[..],
            [Event::Corrupt(FrameError::Length {
                id: 5,
                expected: 29,
                got: 28
            })]
        ));
        let huge = format!("@@VNVA-RSP 1 0 {} 0@@\n", MAX_OUTPUT + 1);
        assert!(matches!(
            ev(&huge)[..],
            [Event::Corrupt(FrameError::TooLarge { id: 1, .. })]
        ));
    }

    #[test]
    fn an_endless_line_is_dropped_and_parsing_resumes() {
        let mut p = Parser::new();
        let mut ev = Vec::new();
        p.push(&vec![b'x'; MAX_LINE * 3], &mut ev);
        p.push(
            b"@@VNVA-PONG 1@@ still the same overlong line\n@@VNVA-PONG 2@@\n",
            &mut ev,
        );
        assert_eq!(ev, vec![Event::Pong { id: 2 }]);
        assert!(p.line.capacity() <= MAX_LINE * 2);
    }

    #[test]
    fn requests_carry_the_checksum_of_their_base64() {
        let r = String::from_utf8(exec_request(42, "echo 'hi'\nexit 3", 10)).unwrap();
        let fields: Vec<&str> = r.trim().split(' ').collect();
        assert_eq!(&fields[..4], &["VNVA1", "EXEC", "42", "10"]);
        assert_eq!(
            u32::from_str_radix(fields[4], 16).unwrap(),
            crc32(fields[5].as_bytes())
        );
        assert_eq!(
            base64_decode(fields[5].as_bytes()).unwrap(),
            b"echo 'hi'\nexit 3"
        );
        assert!(r.starts_with('\n') && r.ends_with('\n'));
        assert_eq!(ping_request(3), b"\nVNVA1 PING 3\n");
    }
}
