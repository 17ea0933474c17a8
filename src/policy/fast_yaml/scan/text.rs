//! The characters of a line for the scanner (`super`): scalars, spaces, comments, line ends
//! and where a node starts.

use std::borrow::Cow;

use super::{Mark, Outside, Scanner};

impl<'a> Scanner<'a> {
    /// A plain key: up to `:` followed by a space or the end of the line.
    pub(super) fn plain_key(&mut self) -> Result<&'a str, Outside> {
        let start = self.pos;
        self.plain_start()?;
        let rest = &self.bytes[start..];
        let mut end = 0;
        while end < rest.len() {
            match rest[end] {
                b'\n' => return Err(Outside),
                b':' if matches!(rest.get(end + 1), None | Some(b' ' | b'\n')) => break,
                b'#' if end.checked_sub(1).and_then(|i| rest.get(i)) == Some(&b' ') => {
                    return Err(Outside);
                }
                _ => end += 1,
            }
        }
        let raw = &self.text[start..start + end];
        if raw.ends_with(' ') {
            return Err(Outside); // `key : value`
        }
        self.pos = start + end;
        Ok(raw)
    }

    /// A plain value in block context: to the end of the line or a ` #` comment.
    pub(super) fn plain_value(&mut self) -> Result<&'a str, Outside> {
        let start = self.pos;
        self.plain_start()?;
        let rest = &self.bytes[start..];
        let mut end = 0;
        while end < rest.len() {
            match rest[end] {
                b'\n' => break,
                b'#' if end.checked_sub(1).and_then(|i| rest.get(i)) == Some(&b' ') => break,
                // `a: b: c` is an error; serde-saphyr says which.
                b':' if matches!(rest.get(end + 1), None | Some(b' ' | b'\n')) => {
                    return Err(Outside);
                }
                _ => end += 1,
            }
        }
        let raw = self.text[start..start + end].trim_end_matches(' ');
        self.pos = start + raw.len();
        Ok(raw)
    }

    /// A plain scalar in a flow collection, on one line: up to `,`, a bracket, `: ` or a
    /// comment.
    pub(super) fn plain_flow(&mut self) -> Result<&'a str, Outside> {
        let start = self.pos;
        self.plain_start()?;
        let rest = &self.bytes[start..];
        let mut end = 0;
        while end < rest.len() {
            match rest[end] {
                b'\n' | b',' | b'[' | b']' | b'{' | b'}' => break,
                b'#' if end.checked_sub(1).and_then(|i| rest.get(i)) == Some(&b' ') => break,
                // `: ` ends a key; a `:` inside (`spiffe://a.org/x`) belongs to the scalar.
                b':' => match rest.get(end + 1) {
                    Some(b' ') => break,
                    Some(b) if !matches!(b, b'\n' | b',' | b'[' | b']' | b'{' | b'}') => end += 1,
                    _ => return Err(Outside),
                },
                _ => end += 1,
            }
        }
        let raw = self.text[start..start + end].trim_end_matches(' ');
        if raw.is_empty() {
            return Err(Outside);
        }
        self.pos = start + raw.len();
        Ok(raw)
    }

    /// A plain scalar starts with a letter, a digit, `/` or `_` here; every indicator and
    /// every other start (`-1`, `.5`, `~`, `*`, `&`, `!`, `<<`, non-ASCII) goes to serde-saphyr.
    pub(super) fn plain_start(&self) -> Result<(), Outside> {
        match self.byte() {
            Some(b) if b.is_ascii_alphanumeric() || b == b'/' || b == b'_' => Ok(()),
            _ => Err(Outside),
        }
    }

    /// A quoted scalar that closes on its line.
    pub(super) fn quoted(&mut self) -> Result<(Cow<'a, str>, bool), Outside> {
        let quote = self.byte().ok_or(Outside)?;
        let start = self.pos + 1;
        let mut i = start;
        let mut owned: Option<String> = None;
        let mut from = start;
        loop {
            let b = *self.bytes.get(i).ok_or(Outside)?;
            match b {
                b'\n' => return Err(Outside),
                b'\'' if quote == b'\'' => {
                    if self.bytes.get(i + 1) == Some(&b'\'') {
                        let s = owned.get_or_insert_with(String::new);
                        s.push_str(&self.text[from..=i]);
                        i += 2;
                        from = i;
                        continue;
                    }
                    break;
                }
                b'"' if quote == b'"' => break,
                b'\\' if quote == b'"' => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[from..i]);
                    s.push(match self.bytes.get(i + 1) {
                        Some(b'\\') => '\\',
                        Some(b'"') => '"',
                        Some(b'/') => '/',
                        Some(b'n') => '\n',
                        Some(b't') => '\t',
                        _ => return Err(Outside),
                    });
                    i += 2;
                    from = i;
                    continue;
                }
                _ => i += 1,
            }
        }
        let text = match owned {
            Some(mut s) => {
                s.push_str(&self.text[from..i]);
                Cow::Owned(s)
            }
            None => Cow::Borrowed(&self.text[start..i]),
        };
        self.pos = i + 1;
        Ok((text, false))
    }

    pub(super) fn byte(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub(super) fn space_or_eol(&self, at: usize) -> bool {
        matches!(self.bytes.get(at), None | Some(b' ' | b'\n'))
    }

    /// A `-` entry indicator: `-` then a space or the end of the line.
    pub(super) fn at_dash(&self) -> bool {
        self.byte() == Some(b'-') && self.space_or_eol(self.pos + 1)
    }

    pub(super) fn skip_spaces(&mut self) {
        while self.byte() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// The rest of the line is empty or a comment.
    pub(super) fn at_line_end(&self) -> bool {
        matches!(self.byte(), None | Some(b'\n' | b'#'))
    }

    /// Spaces and an optional comment, then the line ends; `Outside` if anything else follows.
    pub(super) fn end_of_line(&mut self) -> Result<(), Outside> {
        self.skip_spaces();
        match self.byte() {
            None | Some(b'\n') => Ok(()),
            // A comment needs a space before it; `"a"#b` is an error.
            Some(b'#')
                if self.pos.checked_sub(1).and_then(|i| self.bytes.get(i)) == Some(&b' ') =>
            {
                Ok(())
            }
            _ => Err(Outside),
        }
    }

    /// Moves to the first character of the next line that holds content (not blank, not a
    /// comment), from anywhere in the current line's trailing space or comment; its indent,
    /// or `None` at the end of the text. Idempotent at a content character.
    pub(super) fn skip_blank(&mut self) -> Option<usize> {
        loop {
            self.skip_spaces();
            match self.byte() {
                None => return None,
                Some(b'#') => {
                    let rest = &self.bytes[self.pos..];
                    self.pos += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                }
                Some(b'\n') => self.new_line(),
                Some(_) if self.pos == self.line_start + self.indent_here() => {
                    return Some(self.pos - self.line_start);
                }
                // Content after other content on a line already read: not reached in the
                // subset (callers end each line first); leave it to serde-saphyr.
                Some(_) => return Some(usize::MAX),
            }
        }
    }

    /// The number of spaces that open the current line.
    pub(super) fn indent_here(&self) -> usize {
        self.bytes[self.line_start..]
            .iter()
            .take_while(|&&b| b == b' ')
            .count()
    }

    /// Past the `\n` at `pos`.
    pub(super) fn new_line(&mut self) {
        if !self.ascii {
            self.line_chars += self.text[self.line_start..=self.pos].chars().count();
        }
        self.pos += 1;
        self.line += 1;
        self.line_start = self.pos;
    }

    pub(super) fn mark(&self) -> Mark {
        let (column, chars) = if self.ascii {
            (self.pos - self.line_start, self.pos)
        } else {
            let column = self.text[self.line_start..self.pos].chars().count();
            (column, self.line_chars + column)
        };
        Mark {
            line: self.line,
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
            chars: u32::try_from(chars).unwrap_or(u32::MAX),
            byte: u32::try_from(self.pos).unwrap_or(u32::MAX),
        }
    }
}
