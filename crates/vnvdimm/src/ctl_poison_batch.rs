//! `vnvdimm ctl poison add-batch --file FILE`: many poison ranges from a file (or `-` for
//! stdin), one per line, in the same addressing as `poison add`:
//!
//! ```text
//! # comments and blank lines are skipped
//! dimm=0 offset=0x1000 length=4K
//! spa=0x140002000 length=512
//! ```
//!
//! Every line is checked before anything is sent. The ranges then go as `POST /poison`
//! batches (`{"ranges": [...]}`) small enough for the API's 64 KiB body limit; the VMM
//! validates each batch whole, so a refused batch records nothing of its own, and the
//! error says how many ranges earlier batches had recorded.

use std::io::{BufRead, Write};
use std::path::Path;

use nvdimm_model::config::parse_size;
use serde_json::json;
use thiserror::Error;
use vnvdimm_control::types::{Bytes, ClearPoisonRequest, PoisonBatchRequest};
use vnvdimm_control::ApiClient;

/// Ranges per request: a range is at most ~110 bytes of JSON, so 400 stay well inside the
/// API's 64 KiB body limit.
pub const RANGES_PER_REQUEST: usize = 400;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchFileError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("no ranges in the file (each line: dimm=N offset=BYTES length=BYTES, or spa=ADDR length=BYTES)")]
    Empty,
}

/// Parses the whole file; the first bad line is the error.
pub fn parse(text: &str) -> Result<Vec<ClearPoisonRequest>, BatchFileError> {
    let mut ranges = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let line = index + 1;
        ranges.push(parse_line(content).map_err(|message| BatchFileError::Line { line, message })?);
    }
    match ranges.is_empty() {
        true => Err(BatchFileError::Empty),
        false => Ok(ranges),
    }
}

fn parse_line(content: &str) -> Result<ClearPoisonRequest, String> {
    let mut range = ClearPoisonRequest::default();
    let mut have_length = false;
    for word in content.split_whitespace() {
        let (key, value) = word.split_once('=').ok_or_else(|| format!("`{word}` is not key=value"))?;
        let bytes = || parse_size(value).map_err(|e| format!("{key}={value}: {e}"));
        match key {
            "dimm" => range.dimm = Some(value.parse().map_err(|_| format!("dimm={value}: not a DIMM number"))?),
            "offset" => range.offset = Some(Bytes(bytes()?)),
            "spa" => range.spa = Some(Bytes(bytes()?)),
            "length" => {
                range.length = Bytes(bytes()?);
                have_length = true;
            }
            _ => return Err(format!("unknown key `{key}` (use dimm, offset, spa, length)")),
        }
    }
    match (range.dimm.is_some(), range.offset.is_some(), range.spa.is_some(), have_length) {
        (_, _, _, false) => Err("length= is missing".into()),
        (true, true, false, true) | (false, false, true, true) => Ok(range),
        _ => Err("give either dimm= with offset=, or spa= alone".into()),
    }
}

/// Reads FILE (`-` = stdin).
pub fn read(path: &Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        for line in std::io::stdin().lock().lines() {
            text.push_str(&line?);
            text.push('\n');
        }
        return Ok(text);
    }
    std::fs::read_to_string(path)
}

/// Sends `ranges` in batches; prints one JSON summary. Err holds the message for exit 1.
pub fn send(client: &ApiClient, ranges: Vec<ClearPoisonRequest>, notify: bool, out: &mut dyn Write) -> Result<(), String> {
    let total = ranges.len();
    let mut recorded = 0;
    let batches: Vec<&[ClearPoisonRequest]> = ranges.chunks(RANGES_PER_REQUEST).collect();
    let last = batches.len() - 1;
    for (i, batch) in batches.iter().enumerate() {
        // Notify once, with the last batch, so the guest rescans when all are in.
        let request = PoisonBatchRequest { ranges: batch.to_vec(), notify: notify && i == last };
        let answer = client.post("/poison", &request).map_err(|e| {
            format!("{e}; {recorded} of {total} ranges were recorded before (lines of earlier batches)")
        })?;
        if !answer.is_success() {
            let why = answer.error_message().map(str::to_string).unwrap_or_else(|| answer.body.to_string());
            let first = i * RANGES_PER_REQUEST;
            return Err(format!(
                "batch of ranges {}..{} refused: {why} (HTTP {}); the {recorded} ranges before it were recorded, \
                 none of this batch or after",
                first + 1,
                first + batch.len(),
                answer.status
            ));
        }
        recorded += batch.len();
    }
    let summary = json!({ "ranges_added": recorded, "requests": batches.len(), "notified": notify });
    let _ = writeln!(out, "{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_addressings_comments_and_sizes_parse() {
        let ranges = parse("# bad blocks\n\ndimm=0 offset=0x1000 length=4K\n  spa=0x140002000 length=512 # tail\n").unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!((ranges[0].dimm, ranges[0].offset, ranges[0].length), (Some(0), Some(Bytes(4096)), Bytes(4096)));
        assert_eq!((ranges[1].spa, ranges[1].dimm, ranges[1].length), (Some(Bytes(0x1_4000_2000)), None, Bytes(512)));
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_is_returned() {
        let cases = [
            ("dimm=0 offset=0\n", "line 1: length= is missing"),
            ("dimm=0 offset=0 length=4K\ndimm=0 length=4K\n", "line 2: give either dimm= with offset=, or spa= alone"),
            ("spa=1 dimm=0 offset=0 length=1\n", "line 1: give either"),
            ("dimm=x offset=0 length=1\n", "line 1: dimm=x: not a DIMM number"),
            ("dimm=0 offset=0 length=lots\n", "line 1: length=lots:"),
            ("dimm 0\n", "line 1: `dimm` is not key=value"),
            ("dimm=0 offset=0 size=1\n", "line 1: unknown key `size`"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
        assert_eq!(parse("# nothing\n\n"), Err(BatchFileError::Empty));
    }

    #[test]
    fn the_biggest_batch_fits_the_api_body_limit() {
        let widest = ClearPoisonRequest {
            dimm: None,
            offset: None,
            spa: Some(Bytes(u64::MAX)),
            length: Bytes(u64::MAX),
        };
        let batch = PoisonBatchRequest { ranges: vec![widest; RANGES_PER_REQUEST], notify: true };
        let body = serde_json::to_vec(&batch).unwrap();
        assert!(body.len() < vnvdimm_control::http::MAX_BODY, "{} bytes", body.len());
    }
}
