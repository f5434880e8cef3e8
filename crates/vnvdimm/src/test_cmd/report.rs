//! Machine-readable results of `vnvdimm test`: JUnit XML (what GitHub Actions, GitLab,
//! Jenkins and Buildkite render) and KTAP (the kernel's own test-output format, as
//! kselftest and KUnit print it).

use std::fmt::Write as _;
use std::time::Duration;

/// One finished scenario (or script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    pub time: Duration,
    /// What the run printed: the guest session, API calls and console tail on failure.
    pub output: String,
}

/// The JUnit XML document; `suite` names the testsuite (e.g. `vnvdimm.tcg`).
pub fn junit(suite: &str, outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| !o.passed).count();
    let total: f64 = outcomes.iter().map(|o| o.time.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"vnvdimm\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">",
        outcomes.len()
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total:.3}\">",
        escape(suite),
        outcomes.len()
    );
    for o in outcomes {
        let _ = write!(
            xml,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            escape(suite),
            escape(&o.name),
            o.time.as_secs_f64()
        );
        if o.passed {
            xml.push_str("/>\n");
            continue;
        }
        let _ = writeln!(xml, ">");
        let _ = writeln!(xml, "      <failure message=\"{}\">{}</failure>", escape(&first_panic_line(&o.output)), escape(&o.output));
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// The KTAP report: version line, plan, one result line each; a failure's output follows
/// its result as `#` diagnostic lines.
pub fn ktap(outcomes: &[Outcome]) -> String {
    let mut out = format!("KTAP version 1\n1..{}\n", outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        let _ = writeln!(out, "{} {} {}", if o.passed { "ok" } else { "not ok" }, i + 1, o.name);
        if !o.passed {
            for line in o.output.lines() {
                let _ = writeln!(out, "# {line}");
            }
        }
    }
    out
}

/// The failure's headline: the panic message's first line, else the output's last line.
fn first_panic_line(output: &str) -> String {
    let mut lines = output.lines();
    let after_panic = lines.by_ref().find(|l| l.contains("panicked at")).and_then(|_| lines.next());
    after_panic.or_else(|| output.lines().rev().find(|l| !l.trim().is_empty())).unwrap_or("failed").trim().to_string()
}

/// XML text and attribute escaping; characters XML 1.0 forbids (most controls, which a
/// console log can hold) become U+FFFD.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes() -> Vec<Outcome> {
        vec![
            Outcome { name: "s1_a".into(), passed: true, time: Duration::from_millis(1500), output: String::new() },
            Outcome {
                name: "s2_<b>".into(),
                passed: false,
                time: Duration::from_secs(2),
                output: "boot\nthread 'main' panicked at x.rs:1:1:\nbadblocks \"0 8\" & more\x1b[0m\n".into(),
            },
        ]
    }

    #[test]
    fn junit_counts_escapes_and_carries_the_failure() {
        let xml = junit("vnvdimm.tcg", &outcomes());
        assert!(xml.contains("<testsuites name=\"vnvdimm\" tests=\"2\" failures=\"1\" time=\"3.500\">"), "{xml}");
        assert!(xml.contains("<testcase classname=\"vnvdimm.tcg\" name=\"s1_a\" time=\"1.500\"/>"), "{xml}");
        assert!(xml.contains("name=\"s2_&lt;b&gt;\""), "{xml}");
        assert!(xml.contains("<failure message=\"badblocks &quot;0 8&quot; &amp; more\u{FFFD}[0m\">"), "{xml}");
        assert!(!xml.contains('\x1b'), "no control characters in XML");
    }

    #[test]
    fn ktap_has_version_plan_results_and_diagnostics() {
        let tap = ktap(&outcomes());
        let lines: Vec<&str> = tap.lines().collect();
        assert_eq!(&lines[..4], ["KTAP version 1", "1..2", "ok 1 s1_a", "not ok 2 s2_<b>"]);
        assert!(lines[4..].iter().all(|l| l.starts_with("# ")), "{tap}");
        assert!(tap.contains("# badblocks"));
    }
}

/// The JUnit document against what Jenkins' junit-10.xsd (the schema GitLab, GitHub
/// Actions' reporters and Buildkite read) requires: well-formed XML, `testsuites` >
/// `testsuite` with `name` and `tests`, each `testcase` with `name`, counts that agree.
#[cfg(test)]
mod schema {
    use quick_xml::events::Event;
    use quick_xml::Reader;

    use super::*;

    fn attrs(e: &quick_xml::events::BytesStart<'_>) -> std::collections::BTreeMap<String, String> {
        e.attributes()
            .map(|a| {
                let a = a.expect("well-formed attribute");
                (String::from_utf8_lossy(a.key.as_ref()).into_owned(), a.unescape_value().expect("valid escapes").into_owned())
            })
            .collect()
    }

    #[test]
    fn junit_parses_and_has_what_the_schema_requires() {
        let outcomes = vec![
            Outcome { name: "ok_one".into(), passed: true, time: Duration::from_millis(10), output: String::new() },
            Outcome { name: "bad & <one>".into(), passed: false, time: Duration::from_secs(1), output: "x\u{1}y </failure> ]]>".into() },
        ];
        let xml = junit("vnvdimm.tcg", &outcomes);
        let mut reader = Reader::from_str(&xml);
        let (mut path, mut cases, mut failures, mut suite_tests) = (Vec::<String>::new(), 0, 0, None);
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testsuite" => {
                    let a = attrs(&e);
                    assert!(a.contains_key("name"), "{a:?}");
                    suite_tests = a.get("tests").map(|t| t.parse::<usize>().unwrap());
                    assert_eq!(a.get("failures").map(String::as_str), Some("1"));
                    path.push("testsuite".into());
                }
                Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                    assert_eq!(path.last().map(String::as_str), Some("testsuite"), "testcase inside a testsuite");
                    let a = attrs(&e);
                    assert!(a.contains_key("name") && a.contains_key("classname") && a.contains_key("time"), "{a:?}");
                    cases += 1;
                }
                Event::Start(e) if e.name().as_ref() == b"failure" => {
                    assert!(attrs(&e).contains_key("message"));
                    failures += 1;
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!((cases, failures, suite_tests), (2, 1, Some(2)));
    }
}
