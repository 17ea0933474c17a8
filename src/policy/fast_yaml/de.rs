//! serde's data model over the scanner's events, as serde-saphyr gives it to the same
//! `Deserialize` types — `Spanned` locations included (its `__yaml_spanned` protocol). Where a
//! scalar's type is not certain (null, numbers, YAML 1.1 booleans, a quoted `"true"` for a
//! `bool`), or a type asks for something the subset does not give, the answer is [`Outside`]
//! and the file goes to serde-saphyr.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use super::scan::{Event, Mark, Outside, Scanner};

use crate::policy::source::{SPANNED_MARKER, SPANNED_NEWTYPE as SPANNED};

impl fmt::Display for Outside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("outside the fast YAML subset")
    }
}

impl std::error::Error for Outside {}

impl de::Error for Outside {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Outside
    }
}

/// What the next node is.
enum Kind {
    Map,
    Seq,
    Scalar,
}

/// The deserializer: a scanner, one node at a time.
pub struct Deserializer<'a> {
    scan: Scanner<'a>,
}

impl<'a> Deserializer<'a> {
    /// A deserializer over `text`.
    pub fn new(text: &'a str) -> Result<Self, Outside> {
        Ok(Self {
            scan: Scanner::new(text)?,
        })
    }

    /// Ends the document: nothing may follow the value read.
    pub fn end(mut self) -> Result<(), Outside> {
        match self.scan.next_event()? {
            Event::End => Ok(()),
            _ => Err(Outside),
        }
    }

    /// The next scalar, taken; `Outside` if the next node is not a scalar.
    fn scalar(&mut self) -> Result<(Cow<'a, str>, bool), Outside> {
        match self.scan.next_event()? {
            Event::Scalar { text, plain, .. } => Ok((text, plain)),
            _ => Err(Outside),
        }
    }

    /// The next scalar as a string, unless a plain one may resolve to something else.
    fn string(&mut self) -> Result<Cow<'a, str>, Outside> {
        let (text, plain) = self.scalar()?;
        if plain && !plain_is_string(&text) {
            return Err(Outside);
        }
        Ok(text)
    }

    /// Skips one node, nested collections included.
    fn skip(&mut self) -> Result<(), Outside> {
        let mut depth = 0usize;
        loop {
            match self.scan.next_event()? {
                Event::MapStart(_) | Event::SeqStart(_) => depth += 1,
                Event::MapEnd | Event::SeqEnd => depth = depth.checked_sub(1).ok_or(Outside)?,
                Event::Scalar { .. } => {}
                Event::End => return Err(Outside),
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

/// A plain scalar that YAML's core schema (and serde-saphyr's YAML 1.1 leniencies) leave a
/// string for sure: it starts with a letter, `/` or `_` (the scanner refuses other starts but
/// digits) and is no keyword; one that starts with a digit only if it cannot be a number
/// (`2026-12-01T00:00:00Z`).
fn plain_is_string(text: &str) -> bool {
    match text.bytes().next() {
        None => false,
        Some(b) if b.is_ascii_digit() => text.bytes().any(|b| {
            !(b.is_ascii_hexdigit()
                || matches!(
                    b,
                    b'+' | b'-' | b'.' | b':' | b'_' | b'x' | b'X' | b'o' | b'O'
                ))
        }),
        Some(_) => !is_keyword(text),
    }
}

/// Null and the booleans of YAML 1.2 and 1.1, in any case.
fn is_keyword(text: &str) -> bool {
    const KEYWORDS: [&str; 11] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf",
    ];
    text.len() <= 5 && KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(text))
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// `0` or a decimal without a leading zero that fits a `u64`.
fn decimal(text: &str) -> Option<u64> {
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    if !digits || leading_zero || text.is_empty() || text.len() > 18 {
        return None;
    }
    text.parse().ok()
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Outside;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        let kind = match self.scan.peek()? {
            Event::MapStart(_) => Kind::Map,
            Event::SeqStart(_) => Kind::Seq,
            Event::Scalar { .. } => Kind::Scalar,
            _ => return Err(Outside),
        };
        match kind {
            Kind::Map => self.deserialize_map(visitor),
            Kind::Seq => self.deserialize_seq(visitor),
            Kind::Scalar => {
                let (text, plain) = self.scalar()?;
                if !plain {
                    return visit_text(text, visitor);
                }
                match (text.as_ref(), decimal(&text)) {
                    (_, Some(n)) => visitor.visit_u64(n),
                    ("true", _) => visitor.visit_bool(true),
                    ("false", _) => visitor.visit_bool(false),
                    (t, _) if t.starts_with(|c: char| c.is_ascii_digit()) => Err(Outside),
                    (t, _) if plain_is_string(t) => visit_text(text, visitor),
                    _ => Err(Outside),
                }
            }
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        match self.scalar()? {
            (t, true) if t == "true" => visitor.visit_bool(true),
            (t, true) if t == "false" => visitor.visit_bool(false),
            _ => Err(Outside),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        let text = self.string()?;
        visit_text(text, visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        let none = match self.scan.peek()? {
            Event::End => true,
            Event::Scalar {
                text, plain: true, ..
            } if is_null(text) => {
                self.scalar()?;
                true
            }
            _ => false,
        };
        if none {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Outside> {
        if name != SPANNED {
            return visitor.visit_newtype_struct(self);
        }
        let mark = match self.scan.peek()? {
            Event::MapStart(mark) | Event::SeqStart(mark) | Event::Scalar { mark, .. } => *mark,
            _ => return Err(Outside),
        };
        visitor.visit_newtype_struct(SpannedDe { de: self, mark })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        let Event::SeqStart(_) = self.scan.next_event()? else {
            return Err(Outside);
        };
        Entries::read(self, |access| visitor.visit_seq(access))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Outside> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        let Event::MapStart(_) = self.scan.next_event()? else {
            return Err(Outside);
        };
        Entries::read(self, |access| visitor.visit_map(access))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Outside> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Outside> {
        let text = self.string()?;
        visitor.visit_enum(UnitVariant(text))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        self.skip()?;
        visitor.visit_unit()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Outside> {
        Err(Outside)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Outside> {
        Err(Outside)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Outside> {
        Err(Outside)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
    }
}

fn visit_text<'de, V: Visitor<'de>>(text: Cow<'de, str>, visitor: V) -> Result<V::Value, Outside> {
    match text {
        Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
        Cow::Owned(s) => visitor.visit_string(s),
    }
}

/// The entries of a sequence or a mapping, up to its end event.
struct Entries<'d, 'a> {
    de: &'d mut Deserializer<'a>,
    ended: bool,
}

impl<'d, 'a> Entries<'d, 'a> {
    /// Visits the entries of the collection just opened; a visitor that stops before its end
    /// event leaves the file to serde-saphyr.
    fn read<T>(
        de: &'d mut Deserializer<'a>,
        visit: impl FnOnce(&mut Self) -> Result<T, Outside>,
    ) -> Result<T, Outside> {
        let mut access = Self { de, ended: false };
        let value = visit(&mut access)?;
        if access.ended {
            Ok(value)
        } else {
            Err(Outside)
        }
    }

    /// Whether the collection ends here (its end event is taken).
    fn at_end(&mut self) -> Result<bool, Outside> {
        if matches!(self.de.scan.peek()?, Event::MapEnd | Event::SeqEnd) {
            self.de.scan.next_event()?;
            self.ended = true;
        }
        Ok(self.ended)
    }
}

impl<'de> SeqAccess<'de> for Entries<'_, 'de> {
    type Error = Outside;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Outside> {
        if self.at_end()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Outside;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Outside> {
        if self.at_end()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Outside> {
        seed.deserialize(&mut *self.de)
    }
}

/// An enum written as its variant's name.
struct UnitVariant<'a>(Cow<'a, str>);

impl<'de> EnumAccess<'de> for UnitVariant<'de> {
    type Error = Outside;
    type Variant = UnitOnly;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, UnitOnly), Outside> {
        let name: de::value::CowStrDeserializer<'de, Outside> = self.0.into_deserializer();
        seed.deserialize(name).map(|v| (v, UnitOnly))
    }
}

/// Only unit variants are written as a bare name.
struct UnitOnly;

impl<'de> de::VariantAccess<'de> for UnitOnly {
    type Error = Outside;

    fn unit_variant(self) -> Result<(), Outside> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _: T) -> Result<T::Value, Outside> {
        Err(Outside)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Outside> {
        Err(Outside)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Outside> {
        Err(Outside)
    }
}

/// `Spanned<T>` as serde-saphyr hands it over: a deserializer that shows it as a struct.
struct SpannedDe<'d, 'a> {
    de: &'d mut Deserializer<'a>,
    mark: Mark,
}

impl<'de> de::Deserializer<'de> for SpannedDe<'_, 'de> {
    type Error = Outside;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        visitor.visit_map(SpannedAccess {
            de: self.de,
            mark: self.mark,
            state: 0,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The struct view of `Spanned<T>`: a map of the marker, `value`, and the
/// `referenced` and `defined` locations (the same here: the subset has no aliases).
struct SpannedAccess<'d, 'a> {
    de: &'d mut Deserializer<'a>,
    mark: Mark,
    state: u8,
}

impl<'de> MapAccess<'de> for SpannedAccess<'_, 'de> {
    type Error = Outside;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Outside> {
        let key = match self.state {
            0 => SPANNED_MARKER,
            1 => "value",
            2 => "referenced",
            3 => "defined",
            _ => return Ok(None),
        };
        self.state += 1;
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Outside> {
        match self.state {
            1 => seed.deserialize(true.into_deserializer()),
            2 => seed.deserialize(&mut *self.de),
            3 | 4 => seed.deserialize(Location(self.mark)),
            _ => Err(Outside),
        }
    }
}

/// A location as serde-saphyr's `Location` reads itself: `{ line, column, span, source_id }`,
/// the span `{ offset, len, byte_info: (offset, len) }` (lengths are not tracked: 0).
struct Location(Mark);

impl<'de> de::Deserializer<'de> for Location {
    type Error = Outside;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Outside> {
        Err(Outside)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Outside> {
        let m = self.0;
        visitor.visit_map(Fields {
            fields: [
                ("line", Field::Number(m.line)),
                ("column", Field::Number(m.column)),
                ("span", Field::Span(m)),
                ("source_id", Field::Number(0)),
            ],
            next: 0,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[derive(Clone, Copy)]
enum Field {
    Number(u32),
    Span(Mark),
    ByteInfo(u32),
}

/// A fixed list of named fields, as a map.
struct Fields<const N: usize> {
    fields: [(&'static str, Field); N],
    next: usize,
}

impl<'de, const N: usize> MapAccess<'de> for Fields<N> {
    type Error = Outside;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Outside> {
        let Some((name, _)) = self.fields.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Outside> {
        let (_, field) = self.fields.get(self.next.wrapping_sub(1)).ok_or(Outside)?;
        seed.deserialize(*field)
    }
}

impl<'de> de::Deserializer<'de> for Field {
    type Error = Outside;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Outside> {
        match self {
            Self::Number(n) => visitor.visit_u32(n),
            Self::Span(m) => visitor.visit_map(Fields {
                fields: [
                    ("offset", Field::Number(m.chars)),
                    ("len", Field::Number(0)),
                    ("byte_info", Field::ByteInfo(m.byte)),
                ],
                next: 0,
            }),
            Self::ByteInfo(byte) => {
                visitor.visit_seq(de::value::SeqDeserializer::new([byte, 0].into_iter()))
            }
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
