//! Cutting kept items out of a policy file's text: block layouts copy line for line, flow
//! layouts are refused.

use super::{CutError, FileText};
use crate::policy::load::parse_doc;
use crate::policy::slice::FileSlice;

/// The slice text of `text` keeping the rules at `rules` (and nothing else).
fn rules(text: &str, rules: &[usize]) -> Result<String, CutError> {
    let doc = parse_doc("p.yaml", text).unwrap();
    let kept = FileSlice {
        rules: rules.to_vec(),
        ..FileSlice::default()
    };
    Ok(FileText::new("p.yaml", text, &doc)?.cut(&kept, ""))
}

#[test]
fn block_items_keep_their_inner_comments_and_lose_those_between_items() {
    let text = "rules:\n  - name: a\n    # about a\n    from: [web]\n    to: [db]\n\n  # about b\n  - name: b\n    from: [web]\n    to: [db]\ntests: []\n";

    assert_eq!(
        rules(text, &[0]).unwrap(),
        "rules:\n  - name: a\n    # about a\n    from: [web]\n    to: [db]\n"
    );
    assert_eq!(
        rules(text, &[1]).unwrap(),
        "rules:\n  - name: b\n    from: [web]\n    to: [db]\n"
    );
}

#[test]
fn indentless_items_and_a_dash_on_its_own_line_are_whole_items() {
    let text =
        "rules:\n- name: a\n  from: [web]\n  to: [db]\n-\n  name: b\n  from: [web]\n  to: [db]\n";

    assert_eq!(
        rules(text, &[1]).unwrap(),
        "rules:\n-\n  name: b\n  from: [web]\n  to: [db]\n"
    );
}

#[test]
fn flow_style_lists_are_refused_with_their_line() {
    let one_line = "rules: [{name: a, from: [web], to: [db]}, {name: b, from: [web], to: [db]}]\n";
    let two_a_line =
        "rules:\n  - {name: a, from: [web], to: [db]}\n  - {name: b, from: [web], to: [db]}\n";

    let err = rules(one_line, &[1]).unwrap_err().to_string();
    assert!(err.starts_with("p.yaml:1: "), "{err}");
    assert!(rules(two_a_line, &[1]).is_ok());
}
