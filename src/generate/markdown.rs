//! The small subset of Markdown that docs/config.md uses, as man(7) roff, so that lbproxy.toml(5)
//! is generated from the one configuration reference instead of being a second copy.
//!
//! Blocks: `##`/`###` headings (`.SH`/`.SS`; the `#` title is left to the caller), paragraphs,
//! `-` and `1.` list items with indented continuation lines, fenced code blocks (no fill), and
//! tables. A table becomes a tagged list, one `.TP` per row: the first cell is the tag, middle
//! cells follow it in parentheses under their header (`workers (default: "auto")`), the last cell
//! is the text. Inline: `code` and **strong** in bold, `[text](link)` as its text.

/// Converts `markdown` into man(7) body text (everything after `.SH DESCRIPTION`).
pub fn to_roff(markdown: &str) -> String {
    let mut out = Roff::default();
    let mut lines = markdown.lines().peekable();
    let mut paragraph: Vec<&str> = Vec::new();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_end();
        let block_start = trimmed.starts_with('#')
            || trimmed.starts_with("```")
            || trimmed.starts_with('|')
            || list_item(trimmed).is_some();
        if trimmed.is_empty() || block_start {
            out.paragraph(&paragraph);
            paragraph.clear();
        }
        if trimmed.is_empty() {
            continue;
        }
        if let Some(heading) = trimmed.strip_prefix("### ") {
            out.macro_with_text(".SS", heading);
        } else if let Some(heading) = trimmed.strip_prefix("## ") {
            out.macro_with_text(".SH", heading);
        } else if trimmed.starts_with("# ") {
            // The document title: the caller writes NAME and the .TH line instead.
        } else if trimmed.starts_with("```") {
            let mut code = Vec::new();
            for line in lines.by_ref() {
                if line.trim_end().starts_with("```") {
                    break;
                }
                code.push(line);
            }
            out.code_block(&code);
        } else if trimmed.starts_with('|') {
            let mut rows = vec![trimmed];
            while let Some(next) = lines.next_if(|l| l.trim_start().starts_with('|')) {
                rows.push(next.trim());
            }
            out.table(&rows);
        } else if let Some((marker, first)) = list_item(trimmed) {
            let mut item = vec![first];
            while let Some(next) = lines.next_if(|l| l.starts_with("  ") && !l.trim().is_empty()) {
                item.push(next.trim());
            }
            out.list_item(&marker, &item);
        } else {
            paragraph.push(trimmed);
        }
    }
    out.paragraph(&paragraph);
    out.text
}

/// `- text` → ("\(bu", text); `3. text` → ("3.", text).
fn list_item(line: &str) -> Option<(String, &str)> {
    if let Some(rest) = line.strip_prefix("- ") {
        return Some((r"\(bu".to_owned(), rest));
    }
    let digits = line.find(|c: char| !c.is_ascii_digit())?;
    let rest = line[digits..].strip_prefix(". ")?;
    (digits > 0).then(|| (format!("{}.", &line[..digits]), rest))
}

#[derive(Default)]
struct Roff {
    text: String,
}

impl Roff {
    /// A text line, never taken for a request even when it starts with `.` or `'`.
    fn text_line(&mut self, roff_text: &str) {
        if roff_text.starts_with('.') || roff_text.starts_with('\'') {
            self.text.push_str(r"\&");
        }
        self.text.push_str(roff_text);
        self.text.push('\n');
    }

    fn request(&mut self, request: &str) {
        self.text.push_str(request);
        self.text.push('\n');
    }

    /// `.SH` / `.SS` with the heading on the next line (so it needs no quoting).
    fn macro_with_text(&mut self, request: &str, markdown: &str) {
        self.request(request);
        self.text_line(&inline(markdown));
    }

    fn paragraph(&mut self, lines: &[&str]) {
        if lines.is_empty() {
            return;
        }
        self.request(".PP");
        self.text_line(&inline(&lines.join(" ")));
    }

    fn list_item(&mut self, marker: &str, lines: &[&str]) {
        let indent = if marker == r"\(bu" { 2 } else { 4 };
        self.request(&format!(".IP {marker} {indent}"));
        self.text_line(&inline(&lines.join(" ")));
    }

    fn code_block(&mut self, lines: &[&str]) {
        self.request(".PP");
        self.request(".RS 4");
        self.request(".nf");
        for line in lines {
            self.text_line(&escape(line, true));
        }
        self.request(".fi");
        self.request(".RE");
    }

    fn table(&mut self, rows: &[&str]) {
        let mut rows = rows.iter().map(|row| cells(row));
        let Some(header) = rows.next() else { return };
        for row in rows {
            if row
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
            {
                continue; // the |---|---| line
            }
            let Some((text, tag_cells)) = row.split_last() else {
                continue;
            };
            let mut tag = inline(tag_cells.first().copied().unwrap_or(""));
            for (name, value) in header.iter().zip(tag_cells).skip(1) {
                tag.push_str(&format!(" ({}: {})", name.to_lowercase(), inline(value)));
            }
            self.request(".TP");
            self.text_line(&tag);
            self.text_line(&inline(text));
        }
    }
}

/// The cells of a `| a | b |` row, trimmed; a `|` inside backticks does not split.
fn cells(row: &str) -> Vec<&str> {
    let inner = row.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = Vec::new();
    let (mut start, mut in_code) = (0, false);
    for (i, c) in inner.char_indices() {
        match c {
            '`' => in_code = !in_code,
            '|' if !in_code => {
                cells.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    cells.push(inner[start..].trim());
    cells
}

/// Inline Markdown → roff: `code` and **strong** in bold, links as their text.
fn inline(markdown: &str) -> String {
    let mut out = String::new();
    let mut rest = markdown;
    let mut strong = false;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix('`') {
            if let Some(end) = after.find('`') {
                out.push_str(&format!(r"\fB{}\fP", escape(&after[..end], true)));
                rest = &after[end + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix("**") {
            strong = !strong;
            out.push_str(if strong { r"\fB" } else { r"\fP" });
            rest = after;
            continue;
        }
        if let Some((text, after)) = link(rest) {
            out.push_str(&inline(text));
            rest = after;
            continue;
        }
        out.push_str(&escape(&rest[..c.len_utf8()], false));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `[text](target)rest` → (text, rest).
fn link(markdown: &str) -> Option<(&str, &str)> {
    let after_open = markdown.strip_prefix('[')?;
    let close = after_open.find("](")?;
    let text = &after_open[..close];
    if text.contains('[') {
        return None;
    }
    let target_and_rest = &after_open[close + 2..];
    let end = target_and_rest.find(')')?;
    Some((text, &target_and_rest[end + 1..]))
}

/// Escapes roff's special characters. In literal text (`code`) a `-` is a minus sign, `'` a
/// straight quote; in prose a `-` stays a hyphen.
fn escape(text: &str, literal: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str(r"\e"),
            '-' if literal => out.push_str(r"\-"),
            '\'' if literal => out.push_str(r"\(aq"),
            '"' if literal => out.push_str(r"\(dq"),
            '—' => out.push_str(r"\(em"),
            '–' => out.push_str(r"\(en"),
            '→' => out.push_str(r"\(->"),
            'µ' => out.push_str(r"\(mc"),
            '×' => out.push_str(r"\(mu"),
            '§' => out.push_str(r"\(sc"),
            '…' => out.push_str("..."),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_paragraphs_and_inline_markup() {
        let roff = to_roff(
            "# Title\n\nSee [`the file`](x.md) and **this**:\na `-c` flag.\n\n## `[runtime]`\n\n### Sub\n",
        );
        assert_eq!(
            roff,
            ".PP\nSee \\fBthe file\\fP and \\fBthis\\fP: a \\fB\\-c\\fP flag.\n\
             .SH\n\\fB[runtime]\\fP\n.SS\nSub\n"
        );
    }

    #[test]
    fn table_rows_become_tagged_paragraphs() {
        let roff = to_roff(
            "| Key | Default | Meaning |\n|---|---|---|\n| `workers` | `\"auto\"` | Threads. |\n",
        );
        assert_eq!(
            roff,
            ".TP\n\\fBworkers\\fP (default: \\fB\\(dqauto\\(dq\\fP)\nThreads.\n"
        );
    }

    #[test]
    fn lists_join_continuation_lines() {
        let roff = to_roff("1. First\n   more.\n2. Second.\n- **A** b\n  c\n");
        assert_eq!(
            roff,
            ".IP 1. 4\nFirst more.\n.IP 2. 4\nSecond.\n.IP \\(bu 2\n\\fBA\\fP b c\n"
        );
    }

    #[test]
    fn code_blocks_are_unfilled_and_escaped() {
        let roff = to_roff("```toml\n.dot = 'x' # a\\b\n```\nafter\n");
        assert_eq!(
            roff,
            ".PP\n.RS 4\n.nf\n\\&.dot = \\(aqx\\(aq # a\\eb\n.fi\n.RE\n.PP\nafter\n"
        );
    }

    #[test]
    fn the_whole_configuration_reference_converts() {
        let roff = to_roff(include_str!("../../docs/config.md"));
        for section in [
            "[runtime]",
            "[upstream.NAME]",
            "Environment overlays",
            "Errors",
        ] {
            assert!(roff.contains(section), "{section} missing");
        }
        assert!(roff.contains("\\fBmax_idle_per_backend\\fP (default: \\fB64\\fP)"));
        assert!(!roff.contains("```"), "every code fence closed");
        assert!(!roff.contains("|---"), "every table converted");
        assert!(
            roff.lines().all(|l| !l.starts_with('\'')),
            "no line taken for a request"
        );
    }
}
