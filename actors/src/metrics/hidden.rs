//! Capabilities whose series are no longer exported. metrics-exporter-prometheus (0.18) keeps
//! every series it has seen and offers no way to remove one (its only removal is an idle
//! timeout for every series of a kind, which would also drop the series registered at zero
//! that dashboards rely on). So a forgotten capability's series stay in the recorder's memory,
//! about 60 per capability, and are left out of `/metrics` here: the rendered text loses every
//! line labelled with a hidden capability. Process-wide, like the recorder.

use std::collections::BTreeSet;

use parking_lot::RwLock;

use crate::capability::Capability;

/// The hidden capabilities' label text (`capability="NAME"`).
static HIDDEN: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// The label a series of `cap` carries in the text format (capability names need no escaping:
/// [`Capability::new`] allows none of `"`, `\` or a newline).
fn label(cap: &Capability) -> String {
    format!("capability=\"{}\"", cap.as_str())
}

/// Stops exporting the series of `cap` (an operator forgot it).
pub fn hide_capability(cap: &Capability) {
    HIDDEN.write().insert(label(cap));
}

/// Exports the series of `cap` again (it was registered anew).
#[cfg(test)]
pub(crate) fn show_capability(cap: &Capability) {
    show_name(cap.as_str());
}

/// Exports the series of the capability named `name` again (its board opened anew).
pub(crate) fn show_name(name: &str) {
    let label = format!("capability=\"{name}\"");
    if HIDDEN.read().contains(&label) {
        HIDDEN.write().remove(&label);
    }
}

/// `rendered` (Prometheus text format) without the lines of hidden capabilities.
pub fn filter(rendered: String) -> String {
    let hidden = HIDDEN.read();
    if hidden.is_empty() {
        return rendered;
    }
    let mut out = String::with_capacity(rendered.len());
    for line in rendered.lines() {
        // A label follows `{` or `,`: `capability="a"` must not hide `sub_capability="a"`.
        let is_hidden = hidden.iter().any(|l| {
            line.match_indices(l.as_str())
                .any(|(i, _)| matches!(i.checked_sub(1).map(|j| line.as_bytes()[j]), Some(b'{' | b',')))
        });
        if !is_hidden {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hidden_capabilitys_lines_go() {
        let text = "# TYPE x counter\nx{capability=\"gone-1\",outcome=\"success\"} 1\nx{capability=\"gone-10\"} 2\n\
                    x{outcome=\"a\",capability=\"gone-1\"} 3\nx{capability=\"kept\"} 4\ny{sub_capability=\"gone-1\"} 5\n";
        let gone = Capability::new("gone-1").expect("valid");
        hide_capability(&gone);
        let out = filter(text.to_string());
        assert_eq!(
            out,
            "# TYPE x counter\nx{capability=\"gone-10\"} 2\nx{capability=\"kept\"} 4\ny{sub_capability=\"gone-1\"} 5\n"
        );
        show_capability(&gone);
        assert_eq!(filter(text.to_string()), text);
    }
}
