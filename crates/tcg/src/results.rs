//! Parses what the guest's init printed on the results port:
//! `@@VNV-BEGIN name@@`, output, `@@VNV-END name rc=N@@`.

use std::collections::BTreeMap;

/// One step the guest ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub name: String,
    /// Exit status; `None` when the END marker never came (guest died or timed out).
    pub rc: Option<i32>,
    pub output: String,
}

impl StepResult {
    pub fn ok(&self) -> bool {
        self.rc == Some(0)
    }
}

/// All steps in the order they ran, plus the READY/DONE markers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepResults {
    pub steps: Vec<StepResult>,
    /// Guest uptime (seconds) when init started running, from `@@VNV-READY`.
    pub ready_uptime: Option<f64>,
    /// Guest uptime when the script finished, from `@@VNV-DONE`.
    pub done_uptime: Option<f64>,
}

impl StepResults {
    pub fn parse(text: &str) -> Self {
        let text = text.replace("\r\n", "\n");
        let mut results = StepResults::default();
        let mut current: Option<(String, String)> = None;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_end_matches('\n');
            if let Some(rest) = marker(trimmed, "@@VNV-BEGIN ") {
                if let Some((name, output)) = current.take() {
                    results.steps.push(StepResult { name, rc: None, output });
                }
                current = Some((rest.to_string(), String::new()));
            } else if let Some(rest) = marker(trimmed, "@@VNV-END ") {
                let (name, rc) = match rest.rsplit_once(" rc=") {
                    Some((n, rc)) => (n.to_string(), rc.parse().ok()),
                    None => (rest.to_string(), None),
                };
                let mut output = match current.take() {
                    Some((open, output)) if open == name => output,
                    Some((open, output)) => {
                        results.steps.push(StepResult {
                            name: open,
                            rc: None,
                            output,
                        });
                        String::new()
                    }
                    None => String::new(),
                };
                // init prints a newline before END so it starts a line; drop it again.
                if output.ends_with('\n') {
                    output.pop();
                }
                results.steps.push(StepResult { name, rc, output });
            } else if let Some(rest) = marker(trimmed, "@@VNV-READY ") {
                results.ready_uptime = first_number(rest);
            } else if let Some(rest) = marker(trimmed, "@@VNV-DONE ") {
                results.done_uptime = first_number(rest);
            } else if let Some((_, output)) = current.as_mut() {
                output.push_str(line);
            }
        }
        if let Some((name, output)) = current.take() {
            results.steps.push(StepResult { name, rc: None, output });
        }
        results
    }

    /// The last step called `name`.
    pub fn get(&self, name: &str) -> Option<&StepResult> {
        self.steps.iter().rev().find(|s| s.name == name)
    }

    pub fn by_name(&self) -> BTreeMap<&str, &StepResult> {
        self.steps.iter().map(|s| (s.name.as_str(), s)).collect()
    }

    pub fn finished(&self) -> bool {
        self.done_uptime.is_some()
    }
}

fn marker<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let at = line.find(prefix)?;
    line[at + prefix.len()..].strip_suffix("@@").or_else(|| {
        let rest = &line[at + prefix.len()..];
        rest.find("@@").map(|end| &rest[..end])
    })
}

fn first_number(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_rc_and_uptimes() {
        let log = "junk\r\n@@VNV-READY 3.49 0.00@@\r\n@@VNV-BEGIN a@@\r\nline1\r\nline2\r\n\r\n@@VNV-END a rc=0@@\r\n\
                   @@VNV-BEGIN b@@\r\nno newline\r\n@@VNV-END b rc=3@@\r\n@@VNV-BEGIN c@@\r\npartial";
        let r = StepResults::parse(log);
        assert_eq!(r.ready_uptime, Some(3.49));
        assert!(!r.finished());
        assert_eq!(r.steps.len(), 3);
        assert_eq!(r.get("a").unwrap().output, "line1\nline2\n");
        assert!(r.get("a").unwrap().ok());
        assert_eq!(r.get("b").unwrap().output, "no newline");
        assert_eq!(r.get("b").unwrap().rc, Some(3));
        assert_eq!(r.get("c").unwrap().rc, None);
        assert_eq!(r.get("c").unwrap().output, "partial");
        assert!(r.get("d").is_none());
        let done = StepResults::parse("@@VNV-DONE 5.5 1@@\n");
        assert_eq!(done.done_uptime, Some(5.5));
    }
}
