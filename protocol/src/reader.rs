//! A strict reader for the small JSON documents of the wire (the sync page).
//!
//! Hand-written rather than derived: serde's generated visitors cost the filter's module several
//! kilobytes for a page it decodes a few times a minute. It reads exactly what guardctl writes:
//! objects, arrays, strings without escapes (every string of the wire is ASCII of a grammar that
//! has no character JSON must escape), unsigned integers, `true`, `false` and `null`. Anything
//! else, a duplicate member included, is an error; the caller calls it a shape error.

/// The input did not have the shape the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

pub type Read<T> = Result<T, Malformed>;

pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Read<()> {
        self.eat(byte).then_some(()).ok_or(Malformed)
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        self.skip_whitespace();
        let found = self
            .bytes
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(word));
        if found {
            self.at += word.len();
        }
        found
    }

    /// Only whitespace is left.
    pub fn end(mut self) -> Read<()> {
        self.skip_whitespace();
        (self.at == self.bytes.len()).then_some(()).ok_or(Malformed)
    }

    /// A string without escapes or control characters.
    pub fn string(&mut self) -> Read<&'a str> {
        self.expect(b'"')?;
        let rest = self.bytes.get(self.at..).ok_or(Malformed)?;
        let len = rest.iter().position(|&b| b == b'"').ok_or(Malformed)?;
        let raw = rest.get(..len).ok_or(Malformed)?;
        if raw.iter().any(|&b| b == b'\\' || b < 0x20) {
            return Err(Malformed);
        }
        self.at += len + 1;
        core::str::from_utf8(raw).map_err(|_| Malformed)
    }

    /// An unsigned integer that fits 64 bits, written without sign, fraction or exponent.
    pub fn u64(&mut self) -> Read<u64> {
        self.skip_whitespace();
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let number = rest.get(..digits).unwrap_or_default();
        let leading_zero = digits > 1 && number.first() == Some(&b'0');
        let continues = matches!(rest.get(digits), Some(b'.' | b'e' | b'E'));
        if digits == 0 || leading_zero || continues {
            return Err(Malformed);
        }
        let value = number.iter().try_fold(0u64, |value, &digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        });
        self.at += digits;
        value.ok_or(Malformed)
    }

    pub fn bool(&mut self) -> Read<bool> {
        if self.literal(b"true") {
            Ok(true)
        } else if self.literal(b"false") {
            Ok(false)
        } else {
            Err(Malformed)
        }
    }

    /// `null`, or a value read by `read`.
    pub fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Read<T>) -> Read<Option<T>> {
        if self.literal(b"null") {
            Ok(None)
        } else {
            read(self).map(Some)
        }
    }

    /// An object whose members are read by `member(reader, name)`, which must read the value
    /// of every name it knows and refuse the others. `names` lists the known names in the bit
    /// order `member` is given them; a name seen twice is refused. Returns the names seen, as
    /// bits (bit `i` for `names[i]`).
    pub fn object(
        &mut self,
        names: &[&str],
        mut member: impl FnMut(&mut Self, usize) -> Read<()>,
    ) -> Read<u64> {
        self.expect(b'{')?;
        let mut seen: u64 = 0;
        if self.eat(b'}') {
            return Ok(seen);
        }
        loop {
            let name = self.string()?;
            let index = names.iter().position(|&n| n == name).ok_or(Malformed)?;
            let bit = 1u64.checked_shl(u32::try_from(index).map_err(|_| Malformed)?);
            let bit = bit.ok_or(Malformed)?;
            if seen & bit != 0 {
                return Err(Malformed);
            }
            seen |= bit;
            self.expect(b':')?;
            member(self, index)?;
            if !self.eat(b',') {
                return self.expect(b'}').map(|()| seen);
            }
        }
    }

    /// An array whose elements are read by `element`.
    pub fn array<T>(&mut self, mut element: impl FnMut(&mut Self) -> Read<T>) -> Read<Vec<T>> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        if self.eat(b']') {
            return Ok(out);
        }
        loop {
            out.push(element(self)?);
            if !self.eat(b',') {
                self.expect(b']')?;
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unsigned_integers_that_fit() {
        let read = |s: &str| Reader::new(s.as_bytes()).u64();
        assert_eq!(read("0"), Ok(0));
        assert_eq!(read(" 18446744073709551615"), Ok(u64::MAX));
        for bad in ["18446744073709551616", "-1", "01", "1.0", "1e3", "", "x"] {
            assert_eq!(read(bad), Err(Malformed), "{bad}");
        }
    }

    #[test]
    fn strings_have_no_escapes() {
        let read = |s: &str| Reader::new(s.as_bytes()).string().map(str::to_owned);
        assert_eq!(read(r#""e1""#), Ok("e1".into()));
        assert_eq!(read(r#""é""#), Ok("é".into()));
        for bad in [r#""e\u0031""#, "\"a\tb\"", r#""open"#, "e1"] {
            assert_eq!(read(bad), Err(Malformed), "{bad}");
        }
    }

    #[test]
    fn objects_refuse_unknown_and_repeated_members() {
        let read = |s: &str| {
            let mut reader = Reader::new(s.as_bytes());
            let mut sum = 0;
            reader.object(&["a", "b"], |r, _| {
                sum += r.u64()?;
                Ok(())
            })?;
            reader.end().map(|()| sum)
        };
        assert_eq!(read(r#" { "a" : 1 , "b":2 } "#), Ok(3));
        assert_eq!(read("{}"), Ok(0));
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"c":1}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            "{",
        ] {
            assert_eq!(read(bad), Err(Malformed), "{bad}");
        }
    }

    #[test]
    fn arrays_and_literals() {
        let mut reader = Reader::new(b"[true,false , null]");
        let read = reader.array(|r| r.nullable(Reader::bool));
        assert_eq!(read, Ok(vec![Some(true), Some(false), None]));
        assert_eq!(Reader::new(b"[1,]").array(Reader::u64), Err(Malformed));
        assert_eq!(Reader::new(b"[]").array(Reader::u64), Ok(vec![]));
    }
}
