//! What changed between two configuration texts, line by line: the lines only the old one has
//! (`-`) and only the new one has (`+`), each with its line number, from a longest common
//! subsequence. Configurations are small; past [`MAX_CELLS`] it only counts the lines.

/// The most cells (old lines × new lines) the table may have (16 MiB of u32).
const MAX_CELLS: usize = 4 << 20;
/// The most changed lines shown.
const MAX_SHOWN: usize = 200;

/// The changed lines of `old` → `new`, one a line (`- 12: text`, `+ 12: text`); empty when the
/// texts have the same lines.
pub fn changed_lines(old: &str, new: &str) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        return vec![format!(
            "({} lines → {} lines: too long to compare line by line)",
            a.len(),
            b.len()
        )];
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let width = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len()
            && (j == b.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
        {
            out.push(format!("- {}: {}", i + 1, a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}: {}", j + 1, b[j]));
            j += 1;
        }
    }
    if out.len() > MAX_SHOWN {
        let more = out.len() - MAX_SHOWN;
        out.truncate(MAX_SHOWN);
        out.push(format!("(and {more} more changed lines)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_changed_lines_with_their_numbers() {
        let old = "[upstream.api]\nbackends = [\"127.0.0.1:8001\"]\nkeep = 1\n";
        let new = "[upstream.api]\nbackends = [\"127.0.0.1:8002\"]\nkeep = 1\nadded = 2\n";
        assert_eq!(
            changed_lines(old, new),
            [
                "- 2: backends = [\"127.0.0.1:8001\"]",
                "+ 2: backends = [\"127.0.0.1:8002\"]",
                "+ 4: added = 2"
            ]
        );
        assert!(changed_lines(old, old).is_empty());
        assert_eq!(changed_lines("", "a\n"), ["+ 1: a"]);
        assert_eq!(changed_lines("a\n", ""), ["- 1: a"]);
    }
}
