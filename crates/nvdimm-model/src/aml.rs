//! AML for the NVDIMM root device and its DIMMs (the NVDIMM SSDT).
//!
//! `\_SB.NVDR` (`ACPI0012`) forwards every `_DSM` call of the root and of each DIMM to the
//! host through the mailbox described in `mailbox.rs`: `NCAL` writes the request, rings
//! the doorbell with a sequence number and polls the completion word. `NEVT` turns the
//! mailbox's notification counters into `Notify` calls. The DIMM label methods
//! (`_LSI`/`_LSR`/`_LSW`) are built on the Intel functions 4/5/6 through the same path.
//! See docs/acpi-tables.md for the ASL this produces.

mod ops;

use acpi_tables::aml::{
    Acquire, Add, And, Arg, BufferData, Concat, DeRefOf, Device, Else, Equal, Field,
    FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, GreaterThan, If, Index, LessEqual,
    LessThan, Local, Method, MethodCall, Mid, Mutex, Name, NotEqual, Notify, ObjectType, OpRegion,
    OpRegionSpace, Package, Path, Release, Return, Scope, SizeOf, Store, Subtract, ToBuffer,
    ToInteger, While, ONE, ZERO,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;

use crate::config::PlatformConfig;
use crate::dsm::INTEL_UUID;
use crate::layout::PlatformLayout;
use crate::mailbox;
use crate::nfit;

pub use ops::Raw;
use ops::{refs, Increment, LAnd, Stall};

pub const SIGNATURE: [u8; 4] = *b"SSDT";
/// Revision 2 gives 64-bit AML integers, needed for mailbox and SPA addresses above 4 GiB.
pub const REVISION: u8 = 2;
pub const OEM_TABLE_ID: [u8; 8] = *b"VNVDIMM ";
pub const OEM_REVISION: u32 = 1;

/// Absolute path of the NVDIMM root device.
pub const ROOT_PATH: &str = "\\_SB_.NVDR";
/// Microseconds per poll of the completion word (ACPI allows at most 100 per `Stall`).
pub const POLL_STALL_US: u8 = 10;
/// What `NCAL` returns when the host never answers: status 4 (hardware error), as a u32.
pub const TIMEOUT_STATUS: u32 = 4;
/// Input buffer fields (name, bytes), smallest first; the last covers `MAX_INPUT`.
/// Most inputs are a few words; only label writes (Intel F6) are large.
pub const INPUT_TIERS: [(&str, usize); 2] = [("IBSM", 64), ("IBUF", mailbox::MAX_INPUT)];
/// Output buffer fields (name, bytes), smallest first; the last covers `MAX_OUTPUT`.
/// SMART (132 bytes) and short ARS status answers fit the middle tier.
pub const OUTPUT_TIERS: [(&str, usize); 3] = [("OBSM", 64), ("OBMD", 256), ("OBUF", mailbox::MAX_OUTPUT)];

/// ObjectType() results used to validate `_DSM` Arg3.
const OBJ_BUFFER: u8 = 3;
const OBJ_PACKAGE: u8 = 4;
const STA_PRESENT_ENABLED_SHOWN_OK: u8 = 0x0f;
const ROOT_NOTIFY_FIT_CHANGED: u8 = 0x80;
const ROOT_NOTIFY_NEW_ERRORS: u8 = 0x81;
const DIMM_NOTIFY_HEALTH: u8 = 0x81;
const INTEL_LABEL_SIZE: u8 = 4;
const INTEL_LABEL_READ: u8 = 5;
const INTEL_LABEL_WRITE: u8 = 6;

/// Generation knobs. The KVM VMM uses the defaults (`build_ssdt`); the TCG backend adds
/// a kick port; tests shorten the poll limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsdtOptions {
    /// Polls of `POLL_STALL_US` each before `NCAL` gives up on the host.
    pub poll_limit: u32,
    /// Whether the root device gets a `_FIT` method returning the NFIT body.
    pub fit_method: bool,
    /// An I/O port NCAL writes one byte to right after ringing the doorbell. Under QEMU
    /// TCG the doorbell is plain RAM that no store can trap; a port write can (QEMU's
    /// `isa-debugcon` forwards it to a socket the host's poller waits on), so the host
    /// wakes at once instead of polling. Only a wake-up hint: the doorbell slot stays
    /// the truth, and a lost kick costs one polling period.
    pub kick_port: Option<u16>,
}

impl Default for SsdtOptions {
    fn default() -> Self {
        SsdtOptions {
            poll_limit: mailbox::AML_POLL_LIMIT,
            fit_method: true,
            kick_port: None,
        }
    }
}

/// ACPI name of the DIMM device at `index` (NV00..NV1F).
pub fn dimm_device_name(index: usize) -> String {
    format!("NV{index:02X}")
}

/// Name of the mailbox field holding DIMM `index`'s health-notification count:
/// `HRxx` raised (host), `HSxx` seen (AML).
fn dimm_counter_field(kind: char, index: usize) -> String {
    format!("H{kind}{index:02X}")
}

fn p(name: &str) -> Path {
    Path::new(name)
}

fn root(member: &str) -> Path {
    Path::new(&format!("{ROOT_PATH}.{member}"))
}

fn name4(name: &str) -> [u8; 4] {
    name.as_bytes()
        .try_into()
        .expect("ACPI names are 4 characters")
}

/// The complete SSDT holding `\_SB.NVDR` and its DIMM children (header included, checksummed).
pub fn build_ssdt(config: &PlatformConfig, layout: &PlatformLayout) -> Vec<u8> {
    build_ssdt_with(config, layout, &SsdtOptions::default())
}

/// `build_ssdt` with explicit generation options (tests shorten the poll limit).
pub fn build_ssdt_with(
    config: &PlatformConfig,
    layout: &PlatformLayout,
    options: &SsdtOptions,
) -> Vec<u8> {
    let device = root_device(config, layout, options);
    let scope = Raw::of(&Scope::new(p("\\_SB_"), vec![&device]));
    let mut table = Sdt::new(
        SIGNATURE,
        36,
        REVISION,
        nfit::OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    table.append_slice(&scope.0);
    table.as_slice().to_vec()
}

fn root_device(config: &PlatformConfig, layout: &PlatformLayout, options: &SsdtOptions) -> Raw {
    let mut items = vec![
        Raw::of(&Name::new(p("_HID"), &"ACPI0012")),
        sta_method(),
        Raw::of(&Mutex::new(p("MLCK"), 0)),
        Raw::of(&OpRegion::new(
            p("NMBX"),
            OpRegionSpace::SystemMemory,
            &layout.mailbox,
            &mailbox::MAILBOX_SIZE,
        )),
        mailbox_field(config.dimms.len()),
    ];
    items.extend(buffer_fields());
    items.extend([
        Raw::of(&OpRegion::new(
            p("NDBL"),
            OpRegionSpace::SystemMemory,
            &layout.doorbell,
            &4u8,
        )),
        Raw::of(&Field::new(
            p("NDBL"),
            FieldAccessType::DWord,
            FieldLockRule::NoLock,
            FieldUpdateRule::Preserve,
            vec![FieldEntry::Named(name4("DBEL"), 32)],
        )),
    ]);
    if let Some(port) = options.kick_port {
        items.push(Raw::of(&OpRegion::new(p("NKIK"), OpRegionSpace::SystemIO, &port, &1u8)));
        items.push(Raw::of(&Field::new(
            p("NKIK"),
            FieldAccessType::Byte,
            FieldLockRule::NoLock,
            FieldUpdateRule::Preserve,
            vec![FieldEntry::Named(name4("KICK"), 8)],
        )));
    }
    items.extend([
        Raw::of(&Name::new(p("SEQN"), &ZERO)),
        ebuf_method(),
        dinp_method(),
        lsta_method(),
        ncal_method(options.poll_limit, options.kick_port.is_some()),
        Raw::of(&Method::new(
            p("_DSM"),
            4,
            true,
            vec![&Return::new(&MethodCall::new(
                p("NCAL"),
                vec![
                    &ZERO,
                    &Arg(0),
                    &Arg(1),
                    &Arg(2),
                    &MethodCall::new(p("DINP"), vec![&Arg(3)]),
                ],
            ))],
        )),
    ]);
    if options.fit_method {
        let body = BufferData::new(nfit::structures(config, layout));
        items.push(Raw::of(&Method::new(
            p("_FIT"),
            0,
            false,
            vec![&Return::new(&body)],
        )));
    }
    for (index, dimm) in config.dimms.iter().enumerate() {
        items.push(dimm_device(index, dimm.handle, dimm.label_size > 0));
    }
    items.push(nevt_method(config.dimms.len()));
    Raw::of(&Device::new(p("NVDR"), refs(&items)))
}

fn sta_method() -> Raw {
    Raw::of(&Method::new(
        p("_STA"),
        0,
        false,
        vec![&Return::new(&STA_PRESENT_ENABLED_SHOWN_OK)],
    ))
}

/// Field names over the mailbox, at the offsets `mailbox.rs` defines.
fn mailbox_field(dimms: usize) -> Raw {
    use mailbox::*;
    let named = |name: &str, bytes: usize| FieldEntry::Named(name4(name), bytes * 8);
    let mut entries = vec![
        named("HDLE", 4),
        named("REVN", 4),
        named("FUNC", 4),
        named("ILEN", 4),
        named("UUID", 16),
        named("OLEN", 4),
        named("CMPL", 4),
    ];
    // The doorbell slot (between CMPL and the counters) is reached through its own region, NDBL.
    const _: () = assert!(
        COMPLETION + 4 <= NOTIFY_ROOT_FIT_RAISED
            && NOTIFY_ROOT_ERRORS_RAISED == NOTIFY_ROOT_FIT_RAISED + 4
            && NOTIFY_ROOT_FIT_SEEN == NOTIFY_ROOT_ERRORS_RAISED + 4
            && NOTIFY_ROOT_ERRORS_SEEN == NOTIFY_ROOT_FIT_SEEN + 4
            && NOTIFY_DIMM_RAISED == NOTIFY_ROOT_ERRORS_SEEN + 4
    );
    entries.push(FieldEntry::Reserved((NOTIFY_ROOT_FIT_RAISED - COMPLETION - 4) * 8));
    for name in ["FITR", "ERRR", "FITS", "ERRS"] {
        entries.push(named(name, 4));
    }
    for index in 0..dimms {
        entries.push(named(&dimm_counter_field('R', index), 4));
    }
    entries.push(FieldEntry::Reserved((NOTIFY_DIMM_SEEN - NOTIFY_DIMM_RAISED - 4 * dimms) * 8));
    for index in 0..dimms {
        entries.push(named(&dimm_counter_field('S', index), 4));
    }
    Raw::of(&Field::new(
        p("NMBX"),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        entries,
    ))
}

/// One buffer field per tier over the same mailbox bytes, each in its own `Field`
/// (ASL offsets cannot go backwards). ACPICA moves a whole field unit on every store
/// or read, whatever the length of the data, so NCAL picks the smallest tier that
/// holds the call's input or output; QWord access halves the accesses again. Under
/// TCG each access costs about a microsecond of guest time.
fn buffer_fields() -> Vec<Raw> {
    let tier = |name: &str, at: usize, bytes: usize| {
        Raw::of(&Field::new(
            p("NMBX"),
            FieldAccessType::QWord,
            FieldLockRule::NoLock,
            FieldUpdateRule::Preserve,
            vec![FieldEntry::Reserved(at * 8), FieldEntry::Named(name4(name), bytes * 8)],
        ))
    };
    let mut fields: Vec<Raw> = INPUT_TIERS
        .iter()
        .map(|&(name, bytes)| tier(name, mailbox::INPUT, bytes))
        .collect();
    fields.extend(OUTPUT_TIERS.iter().map(|&(name, bytes)| tier(name, mailbox::OUTPUT, bytes)));
    fields
}

/// `If (Local <= tier) { action(tier) } Else { ... }` over `tiers`, smallest first;
/// the last (full-size) tier is the final Else.
fn by_tier(length: &Local, tiers: &[(&str, usize)], action: &dyn Fn(&str) -> Raw) -> Vec<Raw> {
    match tiers {
        [] => vec![],
        [(name, _)] => vec![action(name)],
        [(name, bytes), rest @ ..] => {
            let bytes = *bytes as u32;
            let smaller = action(name);
            let larger = by_tier(length, rest, action);
            vec![
                Raw::of(&If::new(&LessEqual::new(length, &bytes), vec![&smaller])),
                Raw::of(&Else::new(refs(&larger))),
            ]
        }
    }
}

/// EBUF(): a zero-length Buffer. `Buffer(0){}` is not accepted by every interpreter;
/// a zero-length Mid() of a one-byte buffer is.
fn ebuf_method() -> Raw {
    let one_byte = BufferData::new(vec![0]);
    Raw::of(&Method::new(
        p("EBUF"),
        0,
        false,
        vec![&Return::new(&Mid::new(&one_byte, &ZERO, &ZERO, &ZERO))],
    ))
}

/// DINP(Arg3 of _DSM): the Buffer inside a Package, else an empty Buffer. Guards each
/// step separately because AML evaluates both operands of LAnd.
fn dinp_method() -> Raw {
    let first = Index::new(&ZERO, &Arg(0), &ZERO);
    let take = Raw::of(&If::new(
        &Equal::new(&ObjectType::new(&Local(0)), &OBJ_BUFFER),
        vec![&Return::new(&Local(0))],
    ));
    let element = Raw::of(&Store::new(&Local(0), &DeRefOf::new(&first)));
    let non_empty = Raw::of(&If::new(
        &GreaterThan::new(&SizeOf::new(&Arg(0)), &ZERO),
        vec![&element, &take],
    ));
    let is_package = Raw::of(&If::new(
        &Equal::new(&ObjectType::new(&Arg(0)), &OBJ_PACKAGE),
        vec![&non_empty],
    ));
    Raw::of(&Method::new(
        p("DINP"),
        1,
        true,
        vec![
            &is_package,
            &Return::new(&MethodCall::new(p("EBUF"), vec![])),
        ],
    ))
}

/// LSTA(intel status word) -> _LSx status: 0 success, 1 failure, 2 invalid input,
/// 3 locked (Intel extended status bit 16 with success). Linux maps 3 to -EACCES and any
/// other non-zero value to -EIO.
fn lsta_method() -> Raw {
    let low = Raw::of(&Store::new(
        &Local(0),
        &And::new(&ZERO, &Arg(0), &0xffffu16),
    ));
    let locked = Raw::of(&If::new(
        &And::new(&ZERO, &Arg(0), &0x1_0000u32),
        vec![&Return::new(&3u8)],
    ));
    let ok = Raw::of(&If::new(
        &Equal::new(&Local(0), &ZERO),
        vec![&locked, &Return::new(&ZERO)],
    ));
    let invalid = Raw::of(&If::new(
        &Equal::new(&Local(0), &3u8),
        vec![&Return::new(&2u8)],
    ));
    Raw::of(&Method::new(
        p("LSTA"),
        1,
        false,
        vec![&low, &ok, &invalid, &Return::new(&ONE)],
    ))
}

/// SEQN = (SEQN & 0xFFFF) + 1
fn next_sequence() -> Raw {
    let seqn = p("SEQN");
    Raw::of(&Add::new(&seqn, &And::new(&ZERO, &seqn, &0xffffu16), &ONE))
}

/// NCAL(handle, uuid, revision, function, input) -> output Buffer. See mailbox.rs.
fn ncal_method(poll_limit: u32, kick: bool) -> Raw {
    let max_input = mailbox::MAX_INPUT as u32;
    let max_output = mailbox::MAX_OUTPUT as u32;
    let timeout_buffer = BufferData::new(TIMEOUT_STATUS.to_le_bytes().to_vec());
    let (cmpl, seqn) = (p("CMPL"), p("SEQN"));
    let not_done = NotEqual::new(&cmpl, &seqn);
    let store_input = by_tier(&Local(0), &INPUT_TIERS, &|name| {
        Raw::of(&Store::new(&p(name), &Arg(4)))
    });
    let read_output = by_tier(&Local(2), &OUTPUT_TIERS, &|name| {
        Raw::of(&Mid::new(&p(name), &ZERO, &Local(2), &Local(3)))
    });
    let mut body = vec![
        Raw::of(&Acquire::new(p("MLCK"), 0xffff)),
        // Never 0 (the host ignores a zero doorbell) and never the current completion
        // word, which may be left over from before a reboot: either would look answered.
        next_sequence(),
        Raw::of(&If::new(&Equal::new(&seqn, &cmpl), vec![&next_sequence()])),
        Raw::of(&Store::new(&p("HDLE"), &Arg(0))),
        Raw::of(&Store::new(&p("REVN"), &Arg(2))),
        Raw::of(&Store::new(&p("FUNC"), &Arg(3))),
        Raw::of(&If::new(
            &Equal::new(&ObjectType::new(&Arg(1)), &OBJ_BUFFER),
            vec![&Store::new(&p("UUID"), &Arg(1))],
        )),
        Raw::of(&Else::new(vec![&Store::new(&p("UUID"), &ZERO)])),
        Raw::of(&Store::new(&Local(0), &SizeOf::new(&Arg(4)))),
        Raw::of(&Store::new(&p("ILEN"), &Local(0))),
        // An oversized input is not copied; the host sees the length and answers "invalid input".
        Raw::of(&If::new(
            &LAnd(
                &GreaterThan::new(&Local(0), &ZERO),
                &LessEqual::new(&Local(0), &max_input),
            ),
            refs(&store_input),
        )),
        // The completion word is not cleared: a polling host serves whenever doorbell !=
        // completion, so clearing it would make the host serve this request twice.
        Raw::of(&Store::new(&p("DBEL"), &p("SEQN"))),
    ];
    if kick {
        body.push(Raw::of(&Store::new(&p("KICK"), &ONE)));
    }
    body.extend([
        Raw::of(&Store::new(&Local(1), &ZERO)),
        Raw::of(&While::new(
            &LAnd(&not_done, &LessThan::new(&Local(1), &poll_limit)),
            vec![&Stall(POLL_STALL_US), &Increment(&Local(1))],
        )),
        Raw::of(&If::new(
            &not_done,
            vec![&Release::new(p("MLCK")), &Return::new(&timeout_buffer)],
        )),
        Raw::of(&Store::new(&Local(2), &p("OLEN"))),
        Raw::of(&If::new(
            &GreaterThan::new(&Local(2), &max_output),
            vec![&Store::new(&Local(2), &max_output)],
        )),
    ]);
    // Local3 = Mid(OBxx, 0, Local2) from the smallest tier holding Local2 bytes.
    body.extend(read_output);
    body.extend([Raw::of(&Release::new(p("MLCK"))), Raw::of(&Return::new(&Local(3)))]);
    Raw::of(&Method::new(p("NCAL"), 5, true, refs(&body)))
}

/// NEVT(): called by the platform's event device when the host raised notifications.
/// For each counter pair: `Local0 = raised; If (Local0 != seen) { seen = Local0;
/// Notify (...) }`. The guest writes only the seen words, so a raise that lands while
/// NEVT runs is never lost: it shows as a difference next time.
fn nevt_method(dimms: usize) -> Raw {
    let mut body = Vec::new();
    let mut check = |raised: &str, seen: &str, target: Path, code: u8| {
        body.push(Raw::of(&Store::new(&Local(0), &p(raised))));
        body.push(Raw::of(&If::new(
            &NotEqual::new(&Local(0), &p(seen)),
            vec![&Store::new(&p(seen), &Local(0)), &Notify::new(&target, &code)],
        )));
    };
    check("FITR", "FITS", p(ROOT_PATH), ROOT_NOTIFY_FIT_CHANGED);
    check("ERRR", "ERRS", p(ROOT_PATH), ROOT_NOTIFY_NEW_ERRORS);
    for index in 0..dimms {
        check(
            &dimm_counter_field('R', index),
            &dimm_counter_field('S', index),
            root(&dimm_device_name(index)),
            DIMM_NOTIFY_HEALTH,
        );
    }
    Raw::of(&Method::new(p("NEVT"), 0, true, refs(&body)))
}

/// `\_SB.NVDR.NCAL(handle, Intel UUID, 1, function, input)`.
fn intel_call<'a>(
    handle: &'a u32,
    uuid: &'a BufferData,
    function: &'a u8,
    input: &'a dyn Aml,
) -> MethodCall<'a> {
    MethodCall::new(root("NCAL"), vec![handle, uuid, &ONE, function, input])
}

/// Mid(ToBuffer(value), 0, 4): the low 32 bits of an Integer as 4 little-endian bytes.
fn dword_bytes(arg: u8) -> Raw {
    Raw::of(&Mid::new(
        &ToBuffer::new(&ZERO, &Arg(arg)),
        &ZERO,
        &4u8,
        &ZERO,
    ))
}

fn status_of_output() -> Raw {
    let word = Mid::new(&Local(0), &ZERO, &4u8, &ZERO);
    Raw::of(&MethodCall::new(
        root("LSTA"),
        vec![&ToInteger::new(&ZERO, &word)],
    ))
}

fn dimm_device(index: usize, handle: u32, labels: bool) -> Raw {
    let mut items = vec![
        Raw::of(&Name::new(p("_ADR"), &handle)),
        sta_method(),
        Raw::of(&Method::new(
            p("_DSM"),
            4,
            true,
            vec![&Return::new(&MethodCall::new(
                root("NCAL"),
                vec![
                    &handle,
                    &Arg(0),
                    &Arg(1),
                    &Arg(2),
                    &MethodCall::new(root("DINP"), vec![&Arg(3)]),
                ],
            ))],
        )),
    ];
    if labels {
        items.extend([lsi_method(handle), lsr_method(handle), lsw_method(handle)]);
    }
    Raw::of(&Device::new(p(&dimm_device_name(index)), refs(&items)))
}

/// _LSI() -> Package{status, label area size, max transfer} from Intel function 4.
/// The lock bit is left out: with _LSx Linux learns about locking from _LSR/_LSW.
fn lsi_method(handle: u32) -> Raw {
    let uuid = BufferData::new(INTEL_UUID.to_vec());
    let ebuf = MethodCall::new(root("EBUF"), vec![]);
    let word = |at: u8| {
        Raw::of(&ToInteger::new(
            &ZERO,
            &Mid::new(&Local(0), &at, &4u8, &ZERO),
        ))
    };
    let (w0, w1, w2) = (word(0), word(4), word(8));
    let body = vec![
        Raw::of(&Store::new(
            &Local(0),
            &intel_call(&handle, &uuid, &INTEL_LABEL_SIZE, &ebuf),
        )),
        Raw::of(&Store::new(
            &Local(1),
            &Package::new(vec![&ONE, &ZERO, &ZERO]),
        )),
        Raw::of(&Store::new(&Local(2), &SizeOf::new(&Local(0)))),
        Raw::of(&Store::new(&Local(3), &ONE)),
        Raw::of(&If::new(
            &LessEqual::new(&4u8, &Local(2)),
            vec![&Store::new(
                &Local(3),
                &MethodCall::new(root("LSTA"), vec![&And::new(&ZERO, &w0, &0xffffu16)]),
            )],
        )),
        Raw::of(&If::new(
            &LessEqual::new(&12u8, &Local(2)),
            vec![
                &Store::new(&Index::new(&ZERO, &Local(1), &ONE), &w1),
                &Store::new(&Index::new(&ZERO, &Local(1), &2u8), &w2),
            ],
        )),
        // A success status without the two sizes is a broken answer.
        Raw::of(&Else::new(vec![&If::new(
            &Equal::new(&Local(3), &ZERO),
            vec![&Store::new(&Local(3), &ONE)],
        )])),
        Raw::of(&Store::new(&Index::new(&ZERO, &Local(1), &ZERO), &Local(3))),
        Raw::of(&Return::new(&Local(1))),
    ];
    Raw::of(&Method::new(p("_LSI"), 0, true, refs(&body)))
}

/// _LSR(offset, length) -> Package{status, Buffer} from Intel function 5
/// (input offset u32, length u32; output status u32 then the data).
fn lsr_method(handle: u32) -> Raw {
    let uuid = BufferData::new(INTEL_UUID.to_vec());
    let (offset, length) = (dword_bytes(0), dword_bytes(1));
    let input = Concat::new(&ZERO, &offset, &length);
    let data_len = Subtract::new(&ZERO, &Local(2), &4u8);
    let data = Mid::new(&Local(0), &4u8, &data_len, &ZERO);
    let body = vec![
        Raw::of(&Store::new(
            &Local(0),
            &intel_call(&handle, &uuid, &INTEL_LABEL_READ, &input),
        )),
        Raw::of(&Store::new(&Local(1), &Package::new(vec![&ONE, &ZERO]))),
        Raw::of(&Store::new(
            &Index::new(&ZERO, &Local(1), &ONE),
            &MethodCall::new(root("EBUF"), vec![]),
        )),
        Raw::of(&Store::new(&Local(2), &SizeOf::new(&Local(0)))),
        Raw::of(&If::new(
            &LessEqual::new(&4u8, &Local(2)),
            vec![
                &Store::new(&Index::new(&ZERO, &Local(1), &ZERO), &status_of_output()),
                &Store::new(&Index::new(&ZERO, &Local(1), &ONE), &data),
            ],
        )),
        Raw::of(&Return::new(&Local(1))),
    ];
    Raw::of(&Method::new(p("_LSR"), 2, true, refs(&body)))
}

/// _LSW(offset, length, Buffer) -> Integer status from Intel function 6
/// (input offset u32, length u32, data; output status u32).
fn lsw_method(handle: u32) -> Raw {
    let uuid = BufferData::new(INTEL_UUID.to_vec());
    let (offset, length) = (dword_bytes(0), dword_bytes(1));
    let header = Concat::new(&ZERO, &offset, &length);
    let input = Concat::new(&ZERO, &header, &Arg(2));
    let body = vec![
        Raw::of(&Store::new(
            &Local(0),
            &intel_call(&handle, &uuid, &INTEL_LABEL_WRITE, &input),
        )),
        Raw::of(&If::new(
            &LessEqual::new(&4u8, &SizeOf::new(&Local(0))),
            vec![&Return::new(&status_of_output())],
        )),
        Raw::of(&Return::new(&ONE)),
    ];
    Raw::of(&Method::new(p("_LSW"), 3, true, refs(&body)))
}

#[cfg(test)]
mod tests;
