//! The event scanner of the fast path: block YAML as operators write policies, one event at a
//! time, in the order serde-saphyr's parser gives them. Anything outside the subset — and
//! anything it is not sure of — is [`Outside`], which sends the whole file to serde-saphyr.
//!
//! The subset: block mappings and sequences indented with spaces (a sequence may sit at its
//! key's indent), flow sequences and maps (over several lines too, each continuation line
//! deeper than the first), plain scalars on one line, single- and double-quoted scalars on
//! one line (a few escapes), `#` comments and blank lines. Not in it: tabs, CR, control
//! characters, document markers and directives, anchors, aliases, tags, block scalars (`|`,
//! `>`), multi-line scalars, explicit keys (`?`), merge keys, duplicate keys, and the bounds
//! of the budget
//! `load.rs` gives serde-saphyr (depth, node count, key length).

use std::borrow::Cow;
use std::collections::VecDeque;

use rustc_hash::FxHashSet;

mod text;

/// The text is outside the subset (or is not valid YAML): the caller falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outside;

/// Where a node starts, as serde-saphyr reports it (1-based line and character column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub line: u32,
    pub column: u32,
    /// Character offset from the start of the text.
    pub chars: u32,
    /// Byte offset from the start of the text.
    pub byte: u32,
}

/// One parser event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    MapStart(Mark),
    MapEnd,
    SeqStart(Mark),
    SeqEnd,
    /// A scalar; `plain` when written without quotes (only plain scalars resolve to
    /// null, booleans and numbers).
    Scalar {
        text: Cow<'a, str>,
        plain: bool,
        mark: Mark,
    },
    /// The end of the (only) document.
    End,
}

/// Depth of nested collections beyond which the file goes to serde-saphyr (its budget: 64).
const MAX_DEPTH: usize = 48;
/// Events beyond which the file goes to serde-saphyr (its budget: 8M nodes, 16M events).
const MAX_EVENTS: usize = 7_500_000;
/// Longest key taken here (serde-saphyr's simple-key lookahead: 1,024 characters).
const MAX_KEY_BYTES: usize = 1_000;
/// Keys of a mapping compared by a linear scan before a hash set takes over.
const LINEAR_KEYS: usize = 16;

#[derive(Debug)]
enum Frame<'a> {
    Map { indent: usize, keys: Keys<'a> },
    Seq { indent: usize },
}

/// Where a mapping's keys so far are, to refuse duplicates: `key_stack[from..]` of the
/// scanner while they are few (no allocation per mapping), a hash set beyond.
#[derive(Debug)]
struct Keys<'a> {
    from: usize,
    many: Option<FxHashSet<&'a str>>,
}

impl<'a> Keys<'a> {
    fn new(stack: &[&'a str]) -> Self {
        Self {
            from: stack.len(),
            many: None,
        }
    }

    /// Adds `key`; `Outside` if the mapping has it already. The mapping must be the
    /// innermost open one (its keys on top of `stack`).
    fn insert(&mut self, stack: &mut Vec<&'a str>, key: &'a str) -> Result<(), Outside> {
        if let Some(many) = &mut self.many {
            return if many.insert(key) {
                Ok(())
            } else {
                Err(Outside)
            };
        }
        if stack.get(self.from..).is_some_and(|few| few.contains(&key)) {
            return Err(Outside);
        }
        stack.push(key);
        if stack.len() - self.from > LINEAR_KEYS {
            self.many = Some(stack.drain(self.from..).collect());
        }
        Ok(())
    }
}

/// What the scanner does on the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// A value of a block mapping whose keys sit at `indent` is next on this line (or below).
    MapValue(usize),
    /// A block sequence entry whose `-` sits at `indent` is next on this line (or below).
    SeqItem(usize),
    /// A node just ended: the next line says what comes.
    AfterValue,
    Done,
}

/// The scanner: text, position and the open block collections.
pub struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: u32,
    line_start: usize,
    /// Character offset of `line_start` (differs from it only in non-ASCII text).
    line_chars: usize,
    ascii: bool,
    frames: Vec<Frame<'a>>,
    /// The keys of the open mappings (see [`Keys`]).
    key_stack: Vec<&'a str>,
    queue: VecDeque<Event<'a>>,
    state: State,
    events: usize,
    /// The indent of the line the current flow collection opened on: its continuation lines
    /// are indented deeper.
    flow_indent: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner over `text`; `Outside` at once for characters the subset never takes.
    pub fn new(text: &'a str) -> Result<Self, Outside> {
        let ascii = text.is_ascii();
        // Tabs, CR and other control characters, a BOM, and what YAML does not print.
        if text.bytes().any(|b| (b < 0x20 && b != b'\n') || b == 0x7f) {
            return Err(Outside);
        }
        if !ascii && text.chars().any(|c| !printable(c)) {
            return Err(Outside);
        }
        Ok(Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            line: 1,
            line_start: 0,
            line_chars: 0,
            ascii,
            frames: Vec::new(),
            key_stack: Vec::new(),
            queue: VecDeque::new(),
            state: State::Start,
            events: 0,
            flow_indent: 0,
        })
    }

    /// The next event, left in place.
    pub fn peek(&mut self) -> Result<&Event<'a>, Outside> {
        while self.queue.is_empty() {
            self.fill()?;
        }
        self.queue.front().ok_or(Outside)
    }

    /// The next event.
    pub fn next_event(&mut self) -> Result<Event<'a>, Outside> {
        while self.queue.is_empty() {
            self.fill()?;
        }
        self.queue.pop_front().ok_or(Outside)
    }

    fn push(&mut self, event: Event<'a>) -> Result<(), Outside> {
        self.events += 1;
        if self.events > MAX_EVENTS {
            return Err(Outside);
        }
        self.queue.push_back(event);
        Ok(())
    }

    fn fill(&mut self) -> Result<(), Outside> {
        match self.state {
            State::Start => self.start(),
            State::MapValue(indent) => self.map_value(indent),
            State::SeqItem(indent) => self.seq_item(indent),
            State::AfterValue => self.after_value(),
            State::Done => Err(Outside),
        }
    }

    // ------------------------------------------------------------------ block structure

    fn start(&mut self) -> Result<(), Outside> {
        match self.skip_blank() {
            None => {
                self.state = State::Done;
                self.push(Event::End)
            }
            Some(indent) => {
                if self.text[self.pos..].starts_with("---") || self.byte() == Some(b'%') {
                    return Err(Outside);
                }
                self.open_block(indent)
            }
        }
    }

    /// Opens the block collection whose first entry is at `pos` (column `indent`).
    fn open_block(&mut self, indent: usize) -> Result<(), Outside> {
        if self.frames.len() >= MAX_DEPTH {
            return Err(Outside);
        }
        let mark = self.mark();
        self.open_block_at(indent, mark)
    }

    /// A sequence at its key's indent: serde-saphyr places it at its first item, not at
    /// the dash (an item that starts on a later line is left to it).
    fn open_compact(&mut self, indent: usize) -> Result<(), Outside> {
        let dash = self.pos;
        self.pos += 1;
        self.skip_spaces();
        if self.at_line_end() || self.frames.len() >= MAX_DEPTH {
            return Err(Outside);
        }
        let mark = self.mark();
        self.pos = dash;
        self.open_block_at(indent, mark)
    }

    fn open_block_at(&mut self, indent: usize, mark: Mark) -> Result<(), Outside> {
        if self.at_dash() {
            self.frames.push(Frame::Seq { indent });
            self.push(Event::SeqStart(mark))?;
            self.dash()
        } else {
            let keys = Keys::new(&self.key_stack);
            self.frames.push(Frame::Map { indent, keys });
            self.push(Event::MapStart(mark))?;
            self.key(indent)
        }
    }

    /// After a node: closes the collections the next line leaves, then starts its entry.
    fn after_value(&mut self) -> Result<(), Outside> {
        let next = self.skip_blank();
        loop {
            match (self.frames.last(), next) {
                (None, None) => {
                    self.state = State::Done;
                    return self.push(Event::End);
                }
                (None, Some(_)) => return Err(Outside),
                (Some(Frame::Map { indent, .. }), Some(at)) if at == *indent => {
                    let indent = *indent;
                    if self.at_dash() {
                        return Err(Outside);
                    }
                    return self.key(indent);
                }
                (Some(Frame::Seq { indent }), Some(at)) if at == *indent && self.at_dash() => {
                    return self.dash();
                }
                (Some(frame), Some(at)) if at > frame_indent(frame) => return Err(Outside),
                (Some(_), _) => {
                    let end = match self.frames.pop() {
                        Some(Frame::Map { keys, .. }) => {
                            self.key_stack.truncate(keys.from);
                            Event::MapEnd
                        }
                        _ => Event::SeqEnd,
                    };
                    self.push(end)?;
                }
            }
        }
    }

    /// A mapping key at `pos`, in the mapping at `indent`: pushes it, the value comes next.
    fn key(&mut self, indent: usize) -> Result<(), Outside> {
        let mark = self.mark();
        let (text, plain) = match self.byte() {
            Some(b'"' | b'\'') => self.quoted()?,
            _ => (Cow::Borrowed(self.plain_key()?), true),
        };
        // `key: value` or `key:` at the end of the line, with nothing between key and colon.
        if self.byte() != Some(b':') || !self.space_or_eol(self.pos + 1) {
            return Err(Outside);
        }
        self.pos += 1;
        let Cow::Borrowed(name) = text else {
            return Err(Outside); // an escaped key: compared by serde-saphyr
        };
        if name.len() > MAX_KEY_BYTES || (plain && name == "<<") {
            return Err(Outside);
        }
        match self.frames.last_mut() {
            Some(Frame::Map { keys, .. }) => keys.insert(&mut self.key_stack, name)?,
            _ => return Err(Outside),
        }
        self.state = State::MapValue(indent);
        self.push(Event::Scalar { text, plain, mark })
    }

    /// A `-` entry at `pos`: its item comes next.
    fn dash(&mut self) -> Result<(), Outside> {
        let indent = self.pos - self.line_start;
        self.pos += 1;
        self.state = State::SeqItem(indent);
        Ok(())
    }

    /// The value after `key:` of a mapping at `indent`.
    fn map_value(&mut self, indent: usize) -> Result<(), Outside> {
        self.skip_spaces();
        if self.at_line_end() {
            let mark = self.mark();
            return match self.skip_blank() {
                Some(at) if at > indent => self.open_block(at),
                Some(at) if at == indent && self.at_dash() => self.open_compact(at),
                _ => self.null(mark),
            };
        }
        match self.byte() {
            Some(b'[' | b'{') => self.flow_line(),
            _ => {
                self.inline_scalar()?;
                self.state = State::AfterValue;
                self.end_of_line()
            }
        }
    }

    /// The item after `-` of a sequence whose dashes sit at `indent`.
    fn seq_item(&mut self, indent: usize) -> Result<(), Outside> {
        self.skip_spaces();
        if self.at_line_end() {
            let mark = self.mark();
            return match self.skip_blank() {
                Some(at) if at > indent => self.open_block(at),
                _ => self.null(mark),
            };
        }
        match self.byte() {
            Some(b'[' | b'{') => self.flow_line(),
            _ if self.at_dash() => Err(Outside),
            _ if self.inline_key_follows()? => {
                let at = self.pos - self.line_start;
                self.open_block(at)
            }
            _ => {
                self.inline_scalar()?;
                self.state = State::AfterValue;
                self.end_of_line()
            }
        }
    }

    /// An empty value: a null plain scalar.
    fn null(&mut self, mark: Mark) -> Result<(), Outside> {
        self.state = State::AfterValue;
        self.push(Event::Scalar {
            text: Cow::Borrowed(""),
            plain: true,
            mark,
        })
    }

    /// Whether the scalar at `pos` is a mapping key (`- name: x`); `pos` is left in place.
    fn inline_key_follows(&mut self) -> Result<bool, Outside> {
        let (pos, line) = (self.pos, self.line);
        let found = match self.byte() {
            Some(b'"' | b'\'') => self.quoted().is_ok(),
            _ => self.plain_key().is_ok(),
        } && self.byte() == Some(b':')
            && self.space_or_eol(self.pos + 1);
        if self.line != line {
            return Err(Outside);
        }
        self.pos = pos;
        Ok(found)
    }

    /// A scalar value on one line, in block context.
    fn inline_scalar(&mut self) -> Result<(), Outside> {
        let mark = self.mark();
        let (text, plain) = match self.byte() {
            Some(b'"' | b'\'') => self.quoted()?,
            _ => (Cow::Borrowed(self.plain_value()?), true),
        };
        self.push(Event::Scalar { text, plain, mark })
    }

    /// A flow collection that must close on this line, then the end of the line.
    fn flow_line(&mut self) -> Result<(), Outside> {
        self.flow_indent = self.indent_here();
        self.flow_node(self.frames.len())?;
        self.state = State::AfterValue;
        self.end_of_line()
    }

    // ------------------------------------------------------------------ flow collections

    fn flow_node(&mut self, depth: usize) -> Result<(), Outside> {
        if depth >= MAX_DEPTH {
            return Err(Outside);
        }
        let mark = self.mark();
        match self.byte() {
            Some(b'[') => {
                self.pos += 1;
                self.push(Event::SeqStart(mark))?;
                self.flow_entries(b']', depth, |s, depth| s.flow_node(depth))?;
                self.push(Event::SeqEnd)
            }
            Some(b'{') => {
                self.pos += 1;
                self.push(Event::MapStart(mark))?;
                let mut keys = Keys::new(&self.key_stack);
                let from = keys.from;
                self.flow_entries(b'}', depth, |s, depth| s.flow_pair(&mut keys, depth))?;
                self.key_stack.truncate(from);
                self.push(Event::MapEnd)
            }
            Some(b'"' | b'\'') => {
                let (text, plain) = self.quoted()?;
                self.push(Event::Scalar { text, plain, mark })
            }
            _ => {
                let text = Cow::Borrowed(self.plain_flow()?);
                self.push(Event::Scalar {
                    text,
                    plain: true,
                    mark,
                })
            }
        }
    }

    /// `entry, entry, ...` up to `close`; no trailing comma, no empty entry.
    fn flow_entries(
        &mut self,
        close: u8,
        depth: usize,
        mut entry: impl FnMut(&mut Self, usize) -> Result<(), Outside>,
    ) -> Result<(), Outside> {
        self.flow_space()?;
        if self.byte() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.flow_space()?;
            entry(self, depth + 1)?;
            self.flow_space()?;
            match self.byte() {
                Some(b',') => self.pos += 1,
                Some(b) if b == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Outside),
            }
        }
    }

    /// Spaces, comments and line breaks inside a flow collection; a line it continues on
    /// must be indented deeper than the line the collection opened on.
    fn flow_space(&mut self) -> Result<(), Outside> {
        loop {
            self.skip_spaces();
            match self.byte() {
                Some(b'#') => {
                    if !matches!(self.bytes.get(self.pos.wrapping_sub(1)), Some(b' ' | b'\n')) {
                        return Err(Outside);
                    }
                    let rest = &self.bytes[self.pos..];
                    self.pos += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                }
                Some(b'\n') => {
                    self.new_line();
                    let indent = self.indent_here();
                    let blank = matches!(
                        self.bytes.get(self.line_start + indent),
                        None | Some(b'\n' | b'#')
                    );
                    if !blank && indent <= self.flow_indent {
                        return Err(Outside);
                    }
                }
                None => return Err(Outside),
                Some(_) => return Ok(()),
            }
        }
    }

    /// `key: value` in a flow map.
    fn flow_pair(&mut self, keys: &mut Keys<'a>, depth: usize) -> Result<(), Outside> {
        let mark = self.mark();
        let (text, plain) = match self.byte() {
            Some(b'"' | b'\'') => self.quoted()?,
            _ => (Cow::Borrowed(self.plain_flow()?), true),
        };
        let Cow::Borrowed(name) = text else {
            return Err(Outside);
        };
        if self.byte() != Some(b':') || self.bytes.get(self.pos + 1) != Some(&b' ') {
            return Err(Outside);
        }
        if name.len() > MAX_KEY_BYTES || (plain && name == "<<") {
            return Err(Outside);
        }
        keys.insert(&mut self.key_stack, name)?;
        self.pos += 1;
        self.push(Event::Scalar { text, plain, mark })?;
        self.flow_space()?;
        self.flow_node(depth)
    }
}

fn frame_indent(frame: &Frame<'_>) -> usize {
    match frame {
        Frame::Map { indent, .. } | Frame::Seq { indent } => *indent,
    }
}

/// YAML's printable characters (c-printable), minus the byte-order mark.
fn printable(c: char) -> bool {
    matches!(c, '\n' | '\u{20}'..='\u{7e}' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && c != '\u{feff}'
}
