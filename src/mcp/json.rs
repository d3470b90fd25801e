//! A strict JSON parser (RFC 8259 grammar, stricter than I-JSON / RFC 7493) over a complete body.
//!
//! It refuses everything two peers could read differently, so that what the policy judges is what
//! the upstream will see:
//!
//! | refused | [`ErrorKind`] code |
//! | --- | --- |
//! | input that is not UTF-8 | `invalid_utf8` |
//! | a UTF-8 byte order mark at the start | `bom` |
//! | anything but whitespace after the value | `trailing_data` |
//! | comments, single quotes, trailing commas, bare words, any other grammar error | `syntax` |
//! | raw U+0000–U+001F inside a string | `control_char` |
//! | a `\u` escape that is a lone surrogate | `lone_surrogate` |
//! | a number outside the grammar (`01`, `1.`, `+1`, `.5`, `NaN`) | `invalid_number` |
//! | a number that is not finite as f64 (`1E400`) | `number_out_of_range` |
//! | two keys of one object equal after unescaping | `duplicate_key` |
//! | two keys of one object equal after case folding ([`crate::text`]) | `case_fold_collision` |
//! | a key holding a control, format (Cf) or otherwise invisible character | `invisible_key_char` |
//! | more nested arrays/objects than the limit | `too_deep` |
//! | input longer than `u32::MAX` bytes | `too_large` |
//!
//! The parser never recurses (explicit stack, depth checked before every push) and never copies
//! string contents: it builds a flat *tape* of [`Node`]s (one per value and key, each 20 bytes)
//! that [`Value`] handles walk. Escaped strings are decoded on demand ([`JsonStr::decode`]).
//! Key uniqueness is checked per object on close: printable-ASCII keys are compared in place
//! ignoring ASCII case, other keys are folded into one reusable arena (a 64-bit hash of the
//! folded bytes is compared first). Each key marks one of 64 bits of its object, chosen by that
//! hash; only an object where two keys marked the same bit is compared: small objects pairwise,
//! large ones sorted, so a hostile object costs O(n log n).

use std::borrow::Cow;

use crate::text::{fold_str_into, is_forbidden_key_char};

/// Default nesting limit (arrays and objects).
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidUtf8,
    Bom,
    TrailingData,
    Syntax,
    ControlChar,
    LoneSurrogate,
    InvalidNumber,
    NumberOutOfRange,
    DuplicateKey,
    CaseFoldCollision,
    InvisibleKeyChar,
    TooDeep,
    TooLarge,
}

impl ErrorKind {
    /// Stable code, used as the rule in replies, metrics and logs.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::Bom => "bom",
            ErrorKind::TrailingData => "trailing_data",
            ErrorKind::Syntax => "syntax",
            ErrorKind::ControlChar => "control_char",
            ErrorKind::LoneSurrogate => "lone_surrogate",
            ErrorKind::InvalidNumber => "invalid_number",
            ErrorKind::NumberOutOfRange => "number_out_of_range",
            ErrorKind::DuplicateKey => "duplicate_key",
            ErrorKind::CaseFoldCollision => "case_fold_collision",
            ErrorKind::InvisibleKeyChar => "invisible_key_char",
            ErrorKind::TooDeep => "too_deep",
            ErrorKind::TooLarge => "too_large",
        }
    }
}

/// A parse error and the byte offset where it was detected (safe to show: no content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    pub kind: ErrorKind,
    pub offset: usize,
}

impl JsonError {
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl core::fmt::Display for JsonError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} at byte {}", self.kind.code(), self.offset)
    }
}

/// Parser limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Maximum number of nested arrays/objects (the top-level container counts as 1).
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// The type of a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Null,
    True,
    False,
    Number,
    String,
    Key,
    Array,
    Object,
}

/// One tape entry. Strings and keys span their contents (without quotes); numbers their text;
/// containers their whole text. `next` is the index after the subtree; `count` the number of
/// elements or members (for a key: the low half of its folded hash, see [`KeyRec`]).
#[derive(Debug, Clone, Copy)]
pub struct Node {
    tag: Tag,
    escaped: bool,
    start: u32,
    end: u32,
    next: u32,
    count: u32,
}

/// A parsed document: the source text and its tape. Object members are stored as a key node
/// followed by the value's subtree.
#[derive(Debug)]
pub struct Document<'a> {
    src: &'a str,
    nodes: Vec<Node>,
}

/// Parses a complete JSON text.
pub fn parse<'a>(input: &'a [u8], options: &ParseOptions) -> Result<Document<'a>, JsonError> {
    parse_with(input, options, &mut ParseBuffers::default())
}

/// [`parse`] using reusable buffers (see [`parse_str_with`]).
pub fn parse_with<'a>(
    input: &'a [u8],
    options: &ParseOptions,
    buffers: &mut ParseBuffers,
) -> Result<Document<'a>, JsonError> {
    if input.starts_with(b"\xEF\xBB\xBF") {
        return Err(err(ErrorKind::Bom, 0));
    }
    if u32::try_from(input.len()).is_err() {
        return Err(err(ErrorKind::TooLarge, 0));
    }
    let src =
        core::str::from_utf8(input).map_err(|e| err(ErrorKind::InvalidUtf8, e.valid_up_to()))?;
    parse_str_with(src, options, buffers)
}

/// Parses a complete JSON text that is already known to be UTF-8 (a BOM is still refused).
pub fn parse_str<'a>(src: &'a str, options: &ParseOptions) -> Result<Document<'a>, JsonError> {
    parse_str_with(src, options, &mut ParseBuffers::default())
}

/// Working memory of the parser, reusable across parses (see [`parse_str_with`]).
#[derive(Debug, Default)]
pub struct ParseBuffers {
    nodes: Vec<Node>,
    stack: Vec<Frame>,
    keys: Vec<KeyRec>,
    arena: Vec<u8>,
    fold_tmp: String,
}

impl ParseBuffers {
    /// Takes back a document's tape for the next parse.
    pub fn recycle(&mut self, doc: Document<'_>) {
        if doc.nodes.capacity() > self.nodes.capacity() {
            self.nodes = doc.nodes;
        }
    }

    /// Drops every buffer larger than `max_bytes`, so that keeping these buffers between
    /// documents does not keep the memory of an unusually large one.
    pub fn trim(&mut self, max_bytes: usize) {
        fn trim_vec<T>(v: &mut Vec<T>, max_bytes: usize) {
            if v.capacity().saturating_mul(core::mem::size_of::<T>()) > max_bytes {
                *v = Vec::new();
            }
        }
        trim_vec(&mut self.nodes, max_bytes);
        trim_vec(&mut self.stack, max_bytes);
        trim_vec(&mut self.keys, max_bytes);
        trim_vec(&mut self.arena, max_bytes);
        if self.fold_tmp.capacity() > max_bytes {
            self.fold_tmp = String::new();
        }
    }
}

/// [`parse_str`] using (and growing) reusable buffers: parsing many small documents, such as
/// JSON held in strings, then allocates almost nothing.
pub fn parse_str_with<'a>(
    src: &'a str,
    options: &ParseOptions,
    buffers: &mut ParseBuffers,
) -> Result<Document<'a>, JsonError> {
    if src.starts_with('\u{FEFF}') {
        return Err(err(ErrorKind::Bom, 0));
    }
    if u32::try_from(src.len()).is_err() {
        return Err(err(ErrorKind::TooLarge, 0));
    }
    let mut nodes = core::mem::take(&mut buffers.nodes);
    nodes.clear();
    nodes.reserve((src.len() / 8).clamp(4, 4096));
    buffers.stack.clear();
    buffers.keys.clear();
    buffers.arena.clear();
    let mut parser = Parser {
        b: src.as_bytes(),
        src,
        nodes,
        stack: core::mem::take(&mut buffers.stack),
        keys: core::mem::take(&mut buffers.keys),
        arena: core::mem::take(&mut buffers.arena),
        fold_tmp: core::mem::take(&mut buffers.fold_tmp),
        max_depth: options.max_depth,
    };
    let result = parser.run();
    buffers.stack = parser.stack;
    buffers.keys = parser.keys;
    buffers.arena = parser.arena;
    buffers.fold_tmp = parser.fold_tmp;
    match result {
        Ok(()) => Ok(Document {
            src,
            nodes: parser.nodes,
        }),
        Err(e) => {
            buffers.nodes = parser.nodes;
            Err(e)
        }
    }
}

fn err(kind: ErrorKind, offset: usize) -> JsonError {
    JsonError { kind, offset }
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    node: u32,
    object: bool,
    /// Two keys of this object share a bit of `seen`: they may be equal (else none can be).
    suspect: bool,
    count: u32,
    keys_start: u32,
    arena_start: u32,
    /// One bit per key, chosen by the key's hash: equal folded keys set the same bit.
    seen: u64,
}

/// One key of an open object. Its folded form is held up to ASCII case: a printable-ASCII key
/// without escapes folds to its ASCII lower case, so it stays in the source (`start..end` of
/// the input); any other key is folded into the arena (`start..end` of the arena), where it holds
/// no upper-case ASCII. Two keys are then equal after folding exactly when their bytes are equal
/// ignoring ASCII case.
#[derive(Debug, Clone, Copy)]
struct KeyRec {
    /// [`lower_hash`] of the folded key: compared before the bytes.
    hash: u64,
    start: u32,
    end: u32,
    node: u32,
    in_arena: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline]
fn folded_in<'b>(src: &'b [u8], arena: &'b [u8], k: &KeyRec) -> &'b [u8] {
    let bytes = if k.in_arena { arena } else { src };
    bytes
        .get(k.start as usize..k.end as usize)
        .unwrap_or_default()
}

/// `b[i..i + n]` (`n <= 8`) as a little-endian word, missing bytes zero.
#[inline]
fn load_partial(b: &[u8], i: usize, n: usize) -> u64 {
    if let Some(Ok(bytes)) = b.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let v = u64::from_le_bytes(bytes);
        return if n >= 8 {
            v
        } else {
            v & ((1u64 << (n * 8)) - 1)
        };
    }
    b.get(i..i + n.min(8))
        .unwrap_or_default()
        .iter()
        .rev()
        .fold(0, |v, &byte| (v << 8) | u64::from(byte))
}

/// ASCII upper-case letters of `v` lower-cased, every other byte unchanged (exact per byte).
#[inline]
fn lower_word(v: u64) -> u64 {
    let t = v & !HIGHS;
    let ge_a = t.wrapping_add(ONES * (0x80 - u64::from(b'A')));
    let gt_z = t.wrapping_add(ONES * (0x80 - u64::from(b'Z') - 1));
    let upper = ge_a & !gt_z & !v & HIGHS;
    v | (upper >> 2)
}

/// High bit of each byte of `v` that is not printable ASCII (0x20..=0x7E).
#[inline]
fn unprintable_word(v: u64) -> u64 {
    let t = v & !HIGHS;
    (v | t.wrapping_add(ONES) | !t.wrapping_add(ONES * (0x80 - 0x20))) & HIGHS
}

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

const HASH_SEED: u64 = 0x243F_6A88_85A3_08D3;

/// High bits of the first `n` bytes of a word (`n < 8`).
#[inline]
fn first_bytes(n: usize) -> u64 {
    if n == 0 {
        0
    } else {
        u64::MAX >> (64 - 8 * n)
    }
}

#[inline]
fn finish_hash(h: u64, len: usize) -> u64 {
    let h = mix(h, len as u64);
    h ^ (h >> 32)
}

/// A hash of the ASCII lower case of `b[start..start + len]`, and whether those bytes are all
/// printable ASCII. Words of 8 bytes from the start (the last one zero-padded) are mixed, then the
/// length: equal lower-cased bytes hash equally whatever `b` around them. [`scan_key`] computes
/// the same hash while it scans.
#[inline(always)]
fn lower_hash(b: &[u8], start: usize, len: usize) -> (u64, bool) {
    let mut h = HASH_SEED;
    let mut bad = 0;
    let mut i = 0;
    while i + 8 <= len {
        let v = load_partial(b, start + i, 8);
        bad |= unprintable_word(v);
        h = mix(h, lower_word(v));
        i += 8;
    }
    let rest = len - i;
    if rest > 0 {
        let v = load_partial(b, start + i, rest);
        bad |= unprintable_word(v) & first_bytes(rest);
        h = mix(h, lower_word(v));
    }
    (finish_hash(h, len), bad == 0)
}

struct Parser<'a> {
    b: &'a [u8],
    src: &'a str,
    nodes: Vec<Node>,
    stack: Vec<Frame>,
    keys: Vec<KeyRec>,
    /// Folded keys of the open objects, back to back.
    arena: Vec<u8>,
    /// Scratch for folding non-ASCII keys.
    fold_tmp: String,
    max_depth: usize,
}

#[derive(Clone, Copy)]
enum State {
    Value,
    Key,
    AfterValue,
}

/// Objects with at most this many members are checked for duplicates pairwise.
const PAIRWISE_LIMIT: usize = 16;

impl<'a> Parser<'a> {
    fn run(&mut self) -> Result<(), JsonError> {
        let mut pos = skip_ws(self.b, 0);
        let mut state = State::Value;
        loop {
            match state {
                State::Value => {
                    if let Some(top) = self.stack.last_mut() {
                        if !top.object {
                            top.count = top.count.saturating_add(1);
                        }
                    }
                    let Some(&c) = self.b.get(pos) else {
                        return Err(err(ErrorKind::Syntax, pos));
                    };
                    match c {
                        b'{' | b'[' => {
                            let object = c == b'{';
                            self.open(object, pos)?;
                            pos = skip_ws(self.b, pos + 1);
                            let close = if object { b'}' } else { b']' };
                            if self.b.get(pos) == Some(&close) {
                                self.close(pos)?;
                                pos += 1;
                                state = State::AfterValue;
                            } else {
                                state = if object { State::Key } else { State::Value };
                            }
                        }
                        b'"' => {
                            let (end, escaped) = scan_string(self.b, pos + 1)?;
                            self.push_leaf(Tag::String, escaped, pos + 1, end);
                            pos = end + 1;
                            state = State::AfterValue;
                        }
                        b'-' | b'0'..=b'9' => {
                            let end = self.scan_number(pos)?;
                            self.push_leaf(Tag::Number, false, pos, end);
                            pos = end;
                            state = State::AfterValue;
                        }
                        b't' | b'f' | b'n' => {
                            let (word, tag): (&[u8], Tag) = match c {
                                b't' => (b"true", Tag::True),
                                b'f' => (b"false", Tag::False),
                                _ => (b"null", Tag::Null),
                            };
                            if self.b.get(pos..pos + word.len()) != Some(word) {
                                return Err(err(ErrorKind::Syntax, pos));
                            }
                            self.push_leaf(tag, false, pos, pos + word.len());
                            pos += word.len();
                            state = State::AfterValue;
                        }
                        _ => return Err(err(ErrorKind::Syntax, pos)),
                    }
                }
                State::Key => {
                    if self.b.get(pos) != Some(&b'"') {
                        return Err(err(ErrorKind::Syntax, pos));
                    }
                    let (end, escaped, hash) = scan_key(self.b, pos + 1)?;
                    self.key(pos + 1, end, escaped, hash)?;
                    pos = skip_ws(self.b, end + 1);
                    if self.b.get(pos) != Some(&b':') {
                        return Err(err(ErrorKind::Syntax, pos));
                    }
                    pos = skip_ws(self.b, pos + 1);
                    state = State::Value;
                }
                State::AfterValue => {
                    pos = skip_ws(self.b, pos);
                    let Some(top) = self.stack.last() else {
                        break;
                    };
                    let object = top.object;
                    match (self.b.get(pos), object) {
                        (Some(b','), _) => {
                            pos = skip_ws(self.b, pos + 1);
                            state = if object { State::Key } else { State::Value };
                        }
                        (Some(b'}'), true) | (Some(b']'), false) => {
                            self.close(pos)?;
                            pos += 1;
                        }
                        _ => return Err(err(ErrorKind::Syntax, pos)),
                    }
                }
            }
        }
        if pos != self.b.len() {
            return Err(err(ErrorKind::TrailingData, pos));
        }
        Ok(())
    }

    fn push_leaf(&mut self, tag: Tag, escaped: bool, start: usize, end: usize) {
        let next = self.nodes.len() as u32 + 1;
        self.nodes.push(Node {
            tag,
            escaped,
            start: start as u32,
            end: end as u32,
            next,
            count: 0,
        });
    }

    fn open(&mut self, object: bool, pos: usize) -> Result<(), JsonError> {
        if self.stack.len() >= self.max_depth {
            return Err(err(ErrorKind::TooDeep, pos));
        }
        let node = self.nodes.len() as u32;
        self.nodes.push(Node {
            tag: if object { Tag::Object } else { Tag::Array },
            escaped: false,
            start: pos as u32,
            end: pos as u32,
            next: node + 1,
            count: 0,
        });
        self.stack.push(Frame {
            node,
            object,
            suspect: false,
            count: 0,
            keys_start: self.keys.len() as u32,
            arena_start: self.arena.len() as u32,
            seen: 0,
        });
        Ok(())
    }

    /// `pos` is the offset of the closing bracket.
    fn close(&mut self, pos: usize) -> Result<(), JsonError> {
        let Some(frame) = self.stack.pop() else {
            return Err(err(ErrorKind::Syntax, pos));
        };
        let next = self.nodes.len() as u32;
        if let Some(node) = self.nodes.get_mut(frame.node as usize) {
            node.end = pos as u32 + 1;
            node.next = next;
            node.count = frame.count;
        }
        if frame.object {
            if frame.suspect {
                self.check_unique(frame)?;
            }
            self.keys.truncate(frame.keys_start as usize);
            self.arena.truncate(frame.arena_start as usize);
        }
        Ok(())
    }

    /// A key `start..end` of the source; `plain_hash` is its [`lower_hash`] when the scan found it
    /// printable ASCII without escapes (`None`: not known).
    fn key(
        &mut self,
        start: usize,
        end: usize,
        escaped: bool,
        plain_hash: Option<u64>,
    ) -> Result<(), JsonError> {
        let node = self.nodes.len() as u32;
        // Fast path: printable ASCII without escapes folds to its ASCII lower case, which is
        // compared in place (see `KeyRec`).
        let fast = match plain_hash {
            Some(hash) => Some(hash),
            None if !escaped => Some(lower_hash(self.b, start, end - start))
                .filter(|&(_, plain)| plain)
                .map(|(hash, _)| hash),
            None => None,
        };
        let rec = match fast {
            Some(hash) => KeyRec {
                hash,
                start: start as u32,
                end: end as u32,
                node,
                in_arena: false,
            },
            None => self.fold_key(start, end, escaped, node)?,
        };
        if let Some(top) = self.stack.last_mut() {
            top.count = top.count.saturating_add(1);
            let bit = 1u64 << (rec.hash >> 58);
            top.suspect |= top.seen & bit != 0;
            top.seen |= bit;
        }
        // A key node keeps (part of) the folded hash in `count`: see `Document::string_node`.
        self.nodes.push(Node {
            tag: Tag::Key,
            escaped,
            start: start as u32,
            end: end as u32,
            next: node + 1,
            count: rec.hash as u32,
        });
        self.keys.push(rec);
        Ok(())
    }

    /// The slow path of [`Self::key`]: decodes, checks and folds the key into the arena.
    fn fold_key(
        &mut self,
        start: usize,
        end: usize,
        escaped: bool,
        node: u32,
    ) -> Result<KeyRec, JsonError> {
        let raw = self.src.get(start..end).unwrap_or_default();
        let decoded = if escaped {
            Cow::Owned(decode_escaped(raw))
        } else {
            Cow::Borrowed(raw)
        };
        if decoded.chars().any(is_forbidden_key_char) {
            return Err(err(ErrorKind::InvisibleKeyChar, start));
        }
        self.fold_tmp.clear();
        fold_str_into(&decoded, &mut self.fold_tmp);
        let fold_start = self.arena.len();
        self.arena.extend_from_slice(self.fold_tmp.as_bytes());
        let (hash, _) = lower_hash(self.fold_tmp.as_bytes(), 0, self.fold_tmp.len());
        Ok(KeyRec {
            hash,
            start: fold_start as u32,
            end: self.arena.len() as u32,
            node,
            in_arena: true,
        })
    }

    /// The folded key, up to ASCII case (see [`KeyRec`]).
    #[inline]
    fn folded(&self, k: &KeyRec) -> &[u8] {
        folded_in(self.b, &self.arena, k)
    }

    fn check_unique(&mut self, frame: Frame) -> Result<(), JsonError> {
        let start = frame.keys_start as usize;
        let n = self.keys.len().saturating_sub(start);
        if n < 2 {
            return Ok(());
        }
        if n <= PAIRWISE_LIMIT {
            let keys = self.keys.get(start..).unwrap_or_default();
            for (i, a) in keys.iter().enumerate() {
                for b in keys.get(i + 1..).unwrap_or_default() {
                    if a.hash == b.hash && self.folded(a).eq_ignore_ascii_case(self.folded(b)) {
                        return Err(self.collision(a, b));
                    }
                }
            }
            return Ok(());
        }
        let mut keys = core::mem::take(&mut self.keys);
        let result = {
            let segment = keys.get_mut(start..).unwrap_or_default();
            let (src, arena) = (self.b, self.arena.as_slice());
            let folded = |k: &KeyRec| folded_in(src, arena, k);
            // Sorted by FNV-1a of the folded key (this object is dropped after the check): with
            // several colliding pairs, the same one is reported whatever `lower_hash` is.
            for k in segment.iter_mut() {
                k.hash = folded(k).iter().fold(FNV_OFFSET, |h, &b| {
                    (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME)
                });
            }
            // By hash, then folded bytes: equal keys end up adjacent, and a crafted set of
            // colliding hashes still sorts in O(n log n) comparisons.
            segment.sort_unstable_by(|a, b| {
                a.hash.cmp(&b.hash).then_with(|| {
                    let lower = |k: &KeyRec| folded(k).iter().map(u8::to_ascii_lowercase);
                    lower(a).cmp(lower(b))
                })
            });
            match segment.windows(2).find(|w| match w {
                [a, b] => a.hash == b.hash && folded(a).eq_ignore_ascii_case(folded(b)),
                _ => false,
            }) {
                Some([a, b]) => Err(self.collision(a, b)),
                _ => Ok(()),
            }
        };
        self.keys = keys;
        result
    }

    /// Two keys fold to the same string: a plain duplicate or a case-fold collision.
    fn collision(&self, a: &KeyRec, b: &KeyRec) -> JsonError {
        let decoded = |k: &KeyRec| {
            self.nodes
                .get(k.node as usize)
                .map(|n| JsonStr {
                    raw: self
                        .src
                        .get(n.start as usize..n.end as usize)
                        .unwrap_or_default(),
                    escaped: n.escaped,
                })
                .map(|s| s.decode())
        };
        let offset = self
            .nodes
            .get(a.node.max(b.node) as usize)
            .map_or(0, |n| n.start as usize);
        if decoded(a) == decoded(b) {
            err(ErrorKind::DuplicateKey, offset)
        } else {
            err(ErrorKind::CaseFoldCollision, offset)
        }
    }

    fn scan_number(&self, start: usize) -> Result<usize, JsonError> {
        let b = self.b;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = skip_digits(b, i + 1),
            _ => return Err(err(ErrorKind::InvalidNumber, start)),
        }
        let int_digits = i - int_start;
        if b.get(i) == Some(&b'.') {
            let frac = i + 1;
            i = skip_digits(b, frac);
            if i == frac {
                return Err(err(ErrorKind::InvalidNumber, start));
            }
        }
        let mut exponent = false;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            exponent = true;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            i = skip_digits(b, digits);
            if i == digits {
                return Err(err(ErrorKind::InvalidNumber, start));
            }
        }
        // Without an exponent, up to 308 integer digits is below 1e308. Above that bound some
        // parsers (serde_json's default float parsing) overflow where an exact one rounds to
        // f64::MAX: refuse the whole edge so every peer reads the same number.
        if exponent || int_digits > 308 {
            let finite = self
                .src
                .get(start..i)
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(|v| v.is_finite() && v.abs() < 1e308);
            if !finite {
                return Err(err(ErrorKind::NumberOutOfRange, start));
            }
        }
        Ok(i)
    }
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

#[inline]
fn skip_digits(b: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bits flagging `"`, `\` and bytes below 0x20 in `v`. The lowest flagged byte of each test
/// is exact (higher ones may be false positives), so the lowest of their union is the first match.
#[inline(always)]
fn special_bytes(v: u64) -> u64 {
    let quote = v ^ (ONES * u64::from(b'"'));
    let backslash = v ^ (ONES * u64::from(b'\\'));
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
    let control = v.wrapping_sub(ONES * 0x20) & !v;
    (zero_in(quote) | zero_in(backslash) | control) & HIGHS
}

/// Index of the first `"`, `\` or byte below 0x20 at or after `i`, 8 bytes at a time (SWAR).
#[inline]
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let hits = special_bytes(u64::from_le_bytes(bytes));
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Validates a string body starting after its opening quote. Returns the offset of the closing
/// quote and whether the string holds escapes.
#[inline]
fn scan_string(b: &[u8], mut i: usize) -> Result<(usize, bool), JsonError> {
    let mut escaped = false;
    loop {
        i = skip_plain(b, i);
        match b.get(i) {
            Some(b'"') => return Ok((i, escaped)),
            Some(b'\\') => {
                escaped = true;
                i = scan_escape(b, i)?;
            }
            Some(_) => return Err(err(ErrorKind::ControlChar, i)),
            None => return Err(err(ErrorKind::Syntax, i)),
        }
    }
}

/// [`scan_string`] for a key, 8 bytes at a time: also returns the key's [`lower_hash`] when it is
/// printable ASCII without escapes (`None` when it is not, or when the input ends within 8 bytes).
#[inline(always)]
fn scan_key(b: &[u8], start: usize) -> Result<(usize, bool, Option<u64>), JsonError> {
    let mut h = HASH_SEED;
    let mut bad = 0;
    let mut i = start;
    while let Some(Ok(bytes)) = b.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let v = u64::from_le_bytes(bytes);
        let hits = special_bytes(v);
        if hits == 0 {
            bad |= unprintable_word(v);
            h = mix(h, lower_word(v));
            i += 8;
            continue;
        }
        let n = (hits.trailing_zeros() / 8) as usize;
        if b.get(i + n) != Some(&b'"') {
            // An escape or a control character: the general scan takes over from there.
            let (end, escaped) = scan_string(b, i + n)?;
            return Ok((end, escaped, None));
        }
        if n > 0 {
            let w = v & first_bytes(n);
            bad |= unprintable_word(w) & first_bytes(n);
            h = mix(h, lower_word(w));
        }
        let end = i + n;
        let hash = (bad == 0).then(|| finish_hash(h, end - start));
        return Ok((end, false, hash));
    }
    let (end, escaped) = scan_string(b, i)?;
    Ok((end, escaped, None))
}

/// Validates the escape at `b[i] == '\\'`; returns the offset after it.
fn scan_escape(b: &[u8], i: usize) -> Result<usize, JsonError> {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
        Some(b'u') => {
            let unit = hex4(b, i + 2).ok_or(err(ErrorKind::Syntax, i))?;
            match unit {
                0xD800..=0xDBFF => {
                    let low = match (b.get(i + 6), b.get(i + 7)) {
                        (Some(b'\\'), Some(b'u')) => hex4(b, i + 8),
                        _ => None,
                    };
                    match low {
                        Some(0xDC00..=0xDFFF) => Ok(i + 12),
                        _ => Err(err(ErrorKind::LoneSurrogate, i)),
                    }
                }
                0xDC00..=0xDFFF => Err(err(ErrorKind::LoneSurrogate, i)),
                _ => Ok(i + 6),
            }
        }
        _ => Err(err(ErrorKind::Syntax, i)),
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let digits = b.get(i..i + 4)?;
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

/// Decodes the contents of a string already validated by [`scan_string`].
fn decode_escaped(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    decode_escaped_into(raw, &mut out);
    out
}

/// Appends the decoded contents of a validated string to `out`.
fn decode_escaped_into(raw: &str, out: &mut String) {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let run_end = b
            .get(i..)
            .and_then(|rest| rest.iter().position(|&c| c == b'\\'))
            .map_or(b.len(), |p| i + p);
        out.push_str(raw.get(i..run_end).unwrap_or_default());
        i = run_end;
        if i >= b.len() {
            break;
        }
        let c = match b.get(i + 1) {
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = hex4(b, i + 2).unwrap_or(0xFFFD);
                if (0xD800..=0xDBFF).contains(&unit) {
                    let low = hex4(b, i + 8).unwrap_or(0xDC00);
                    i += 6;
                    char::from_u32(
                        0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF),
                    )
                    .unwrap_or('\u{FFFD}')
                } else {
                    char::from_u32(unit).unwrap_or('\u{FFFD}')
                }
            }
            Some(&other) => char::from(other),
            None => break,
        };
        out.push(c);
        i += if b.get(i + 1) == Some(&b'u') { 6 } else { 2 };
    }
}

/// `a == b`, 8 bytes at a time: for the short texts compared here, cheaper than a call to
/// `memcmp` (a byte loop on wasm32).
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .and_then(|c| <[u8; 8]>::try_from(c).ok())
            .map(u64::from_le_bytes)
    };
    let mut i = 0;
    while i + 8 <= a.len() {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    let (a, b) = (
        a.get(i..).unwrap_or_default(),
        b.get(i..).unwrap_or_default(),
    );
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// A string or key of the document, undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// The contents exactly as written between the quotes (escapes not decoded).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True when the string contains at least one escape sequence.
    pub fn is_escaped(&self) -> bool {
        self.escaped
    }

    /// The decoded value; borrowed unless the string holds escapes.
    pub fn decode(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(decode_escaped(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Replaces the contents of `out` with the decoded value.
    pub fn decode_into(&self, out: &mut String) {
        out.clear();
        if self.escaped {
            decode_escaped_into(self.raw, out);
        } else {
            out.push_str(self.raw);
        }
    }

    /// Compares the decoded value with `s` (no allocation for unescaped strings).
    pub fn eq_str(&self, s: &str) -> bool {
        if self.escaped {
            self.decode() == s
        } else {
            same_bytes(self.raw.as_bytes(), s.as_bytes())
        }
    }
}

/// A handle on one value of a [`Document`].
#[derive(Debug, Clone, Copy)]
pub struct Value<'d, 'a> {
    doc: &'d Document<'a>,
    idx: usize,
}

impl<'a> Document<'a> {
    /// The top-level value.
    pub fn root(&self) -> Value<'_, 'a> {
        Value { doc: self, idx: 0 }
    }

    /// The source text.
    pub fn source(&self) -> &'a str {
        self.src
    }

    /// Number of tape entries (values and keys).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn node(&self, idx: usize) -> Option<&Node> {
        self.nodes.get(idx)
    }

    /// The tape entry at `idx` as a string or key, if it is one.
    pub fn str_at(&self, idx: usize) -> Option<JsonStr<'a>> {
        let n = self.node(idx)?;
        matches!(n.tag, Tag::String | Tag::Key).then(|| JsonStr {
            raw: self
                .src
                .get(n.start as usize..n.end as usize)
                .unwrap_or_default(),
            escaped: n.escaped,
        })
    }

    /// The tape entry at `idx` if it is a string or a key: `(key_hash, text)`, where `key_hash`
    /// is `None` for a string value and, for a key, a hash of its text (keys with the same raw
    /// text have the same hash; different keys usually differ).
    #[inline]
    pub fn string_node(&self, idx: usize) -> Option<(Option<u32>, JsonStr<'a>)> {
        let n = self.nodes.get(idx)?;
        let key_hash = match n.tag {
            Tag::Key => Some(n.count),
            Tag::String => None,
            _ => return None,
        };
        let raw = self.src.get(n.start as usize..n.end as usize)?;
        Some((
            key_hash,
            JsonStr {
                raw,
                escaped: n.escaped,
            },
        ))
    }

    /// True when the tape entry at `idx` is an object key.
    pub fn is_key_at(&self, idx: usize) -> bool {
        self.node(idx).is_some_and(|n| n.tag == Tag::Key)
    }

    /// The value at tape index `idx` (a key index yields `None`).
    pub fn value_at(&self, idx: usize) -> Option<Value<'_, 'a>> {
        let n = self.node(idx)?;
        (n.tag != Tag::Key).then_some(Value { doc: self, idx })
    }
}

impl<'d, 'a> Value<'d, 'a> {
    fn node(&self) -> Node {
        self.doc.nodes.get(self.idx).copied().unwrap_or(Node {
            tag: Tag::Null,
            escaped: false,
            start: 0,
            end: 0,
            next: self.idx as u32 + 1,
            count: 0,
        })
    }

    /// The document this value belongs to.
    pub fn document(&self) -> &'d Document<'a> {
        self.doc
    }

    /// Index of this value on the tape.
    pub fn index(&self) -> usize {
        self.idx
    }

    /// Index after this value's subtree on the tape: the tape range `index()..subtree_end()`
    /// holds this value and everything inside it, in document order.
    pub fn subtree_end(&self) -> usize {
        self.node().next as usize
    }

    pub fn kind(&self) -> Kind {
        match self.node().tag {
            Tag::Null | Tag::Key => Kind::Null,
            Tag::True | Tag::False => Kind::Bool,
            Tag::Number => Kind::Number,
            Tag::String => Kind::String,
            Tag::Array => Kind::Array,
            Tag::Object => Kind::Object,
        }
    }

    /// The exact source text of the value (strings include their quotes).
    pub fn raw_text(&self) -> &'a str {
        self.doc.src.get(self.span()).unwrap_or_default()
    }

    /// Where the value is in the source, in bytes (strings with their quotes).
    pub fn span(&self) -> core::ops::Range<usize> {
        let n = self.node();
        let (start, end) = match n.tag {
            Tag::String | Tag::Key => (n.start.saturating_sub(1), n.end.saturating_add(1)),
            _ => (n.start, n.end),
        };
        start as usize..end as usize
    }

    pub fn as_str(&self) -> Option<JsonStr<'a>> {
        (self.node().tag == Tag::String)
            .then(|| self.doc.str_at(self.idx))
            .flatten()
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.node().tag {
            Tag::True => Some(true),
            Tag::False => Some(false),
            _ => None,
        }
    }

    /// Number of array elements or object members.
    pub fn len(&self) -> usize {
        self.node().count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Object members in document order (empty for non-objects).
    pub fn entries(&self) -> Entries<'d, 'a> {
        let n = self.node();
        let (pos, end) = if n.tag == Tag::Object {
            (self.idx + 1, n.next as usize)
        } else {
            (0, 0)
        };
        Entries {
            doc: self.doc,
            pos,
            end,
        }
    }

    /// Array elements in document order (empty for non-arrays).
    pub fn items(&self) -> Items<'d, 'a> {
        let n = self.node();
        let (pos, end) = if n.tag == Tag::Array {
            (self.idx + 1, n.next as usize)
        } else {
            (0, 0)
        };
        Items {
            doc: self.doc,
            pos,
            end,
        }
    }

    /// The member whose decoded key equals `key` exactly (keys are unique).
    pub fn get(&self, key: &str) -> Option<Value<'d, 'a>> {
        self.entries().find(|(k, _)| k.eq_str(key)).map(|(_, v)| v)
    }

    /// [`Self::get`] of each of `keys`, in one pass over the members.
    pub fn members<const N: usize>(&self, keys: [&str; N]) -> [Option<Value<'d, 'a>>; N] {
        let mut found = [None; N];
        for (k, v) in self.entries() {
            let name = k.decode();
            let slot = keys
                .iter()
                .position(|key| same_bytes(key.as_bytes(), name.as_bytes()));
            if let Some(f) = slot.and_then(|i| found.get_mut(i)) {
                if f.is_none() {
                    *f = Some(v);
                }
            }
        }
        found
    }
}

/// Iterator over `(key, value)` members of an object.
pub struct Entries<'d, 'a> {
    doc: &'d Document<'a>,
    pos: usize,
    end: usize,
}

impl<'d, 'a> Iterator for Entries<'d, 'a> {
    type Item = (JsonStr<'a>, Value<'d, 'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let key = self.doc.str_at(self.pos)?;
        let value = Value {
            doc: self.doc,
            idx: self.pos + 1,
        };
        self.pos = value.subtree_end().max(self.pos + 2);
        Some((key, value))
    }
}

/// Iterator over the elements of an array.
pub struct Items<'d, 'a> {
    doc: &'d Document<'a>,
    pos: usize,
    end: usize,
}

impl<'d, 'a> Iterator for Items<'d, 'a> {
    type Item = Value<'d, 'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let value = Value {
            doc: self.doc,
            idx: self.pos,
        };
        self.pos = value.subtree_end().max(self.pos + 1);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(s: &str) -> Document<'_> {
        parse(s.as_bytes(), &ParseOptions::default()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn code(s: &[u8]) -> &'static str {
        match parse(s, &ParseOptions::default()) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn accepts_valid_json() {
        for s in [
            "{}",
            "[]",
            " {\"a\" : [1, -0, 0.5, 1e5, 1E+2, -1.5e-3, true, false, null, \"x\"] } \n",
            "\"just a string\"",
            "0",
            "1.0e307",
            "1e-400",
            "[[[[]]]]",
            "{\"a\":{\"a\":{\"a\":1}}}",
            "{\"\\ud83d\\ude00\":\"\\u00e9\\n\\\"\\/\"}",
            "{\"caf\u{e9}\":\"\u{1f600}\"}",
            "{\"a\":1,\"b\":2,\"A_\":3}",
            "{\"x\":\"\\u0000 is fine in a value\"}",
            "{\"x\":\"\u{feff}\u{200b} also fine in a value\"}",
        ] {
            parse_ok(s);
        }
        let digits308 = format!("[{}]", "9".repeat(308));
        parse_ok(&digits308);
    }

    #[test]
    fn error_codes() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xEF\xBB\xBF{}", "bom"),
            (b"{\"a\":\"\xff\"}", "invalid_utf8"),
            (b"{\"a\":\"\xc3\"}", "invalid_utf8"),
            (b"{\"a\":\"\xed\xa0\x80\"}", "invalid_utf8"),
            (b"{} x", "trailing_data"),
            (b"{}{}", "trailing_data"),
            (b"{}\0", "trailing_data"),
            (b"{} // c", "trailing_data"),
            (b"{/* c */}", "syntax"),
            (b"{\"a\":1,}", "syntax"),
            (b"[1,]", "syntax"),
            (b"{'a':1}", "syntax"),
            (b"{a:1}", "syntax"),
            (b"", "syntax"),
            (b"   ", "syntax"),
            (b"[", "syntax"),
            (b"{\"a\"", "syntax"),
            (b"{\"a\":}", "syntax"),
            (b"{\"a\" 1}", "syntax"),
            (b"[1 2]", "syntax"),
            (b"[tru]", "syntax"),
            (b"[True]", "syntax"),
            (b"[NaN]", "syntax"),
            (b"[Infinity]", "syntax"),
            (b"[\"a\\x\"]", "syntax"),
            (b"[\"\\u12\"]", "syntax"),
            (b"[\"abc", "syntax"),
            (b"[\"a\x01\"]", "control_char"),
            (b"[\"a\n\"]", "control_char"),
            (b"[\"\\ud800\"]", "lone_surrogate"),
            (b"[\"\\udc00\"]", "lone_surrogate"),
            (b"[\"\\ud800\\u0041\"]", "lone_surrogate"),
            (b"[\"\\ud800x\"]", "lone_surrogate"),
            (b"[01]", "syntax"),
            (b"[1.]", "invalid_number"),
            (b"[.5]", "syntax"),
            (b"[+1]", "syntax"),
            (b"[-]", "invalid_number"),
            (b"[1e]", "invalid_number"),
            (b"[0x10]", "syntax"),
            (b"[1E400]", "number_out_of_range"),
            (b"[-1e309]", "number_out_of_range"),
            (b"[1.7976931348623158e308]", "number_out_of_range"),
            (b"[1e308]", "number_out_of_range"),
            (b"[1e99999999999999999999]", "number_out_of_range"),
            (b"{\"a\":1,\"a\":2}", "duplicate_key"),
            (b"{\"a\":1,\"\\u0061\":2}", "duplicate_key"),
            (b"{\"a\":1,\"A\":2}", "case_fold_collision"),
            (b"{\"params\":1,\"Params\":2}", "case_fold_collision"),
            (b"{\"a\\u0000\":1}", "invisible_key_char"),
            (b"{\"a\\u200b\":1}", "invisible_key_char"),
            (b"{\"\\ufeffa\":1}", "invisible_key_char"),
            (b"{\"a\xe2\x80\x8b\":1}", "invisible_key_char"),
            (b"{\"a\\u007f\":1}", "invisible_key_char"),
            (b"{\"a\\u0085\":1}", "invisible_key_char"),
            (b"{\"a\\u202e\":1}", "invisible_key_char"),
            (b"{\"a\\u2066\":1}", "invisible_key_char"),
            (b"{\"a\\u00ad\":1}", "invisible_key_char"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                code(input),
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let digits309 = format!("[{}]", "9".repeat(309));
        assert_eq!(code(digits309.as_bytes()), "number_out_of_range");
    }

    #[test]
    fn duplicates_among_plain_and_folded_keys_are_found() {
        // Small (pairwise) and large (sorted) objects; the colliding pair is a plain key and
        // an escaped or non-ASCII one, in both orders.
        for filler in [0usize, 3, 40] {
            for (a, b, expected) in [
                ("Key", "k\\u0065y", "case_fold_collision"),
                ("key", "k\\u0065y", "duplicate_key"),
                ("STRASSE", "stra\u{df}e", "case_fold_collision"),
                ("\u{17f}ecret", "SECRET", "case_fold_collision"),
                (
                    "long_key_name_x",
                    "LONG_KEY_NAME_\\u0058",
                    "case_fold_collision",
                ),
                ("long_key_name_x", "long_key_name_\\u0078", "duplicate_key"),
                ("long_key_name_x", "long_key_name_\\u0079", "ok"),
            ] {
                for (first, second) in [(a, b), (b, a)] {
                    let mut s = String::from("{");
                    for i in 0..filler {
                        s.push_str(&format!("\"f{i}\":{i},"));
                    }
                    s.push_str(&format!("\"{first}\":1,\"m\":2,\"{second}\":3}}"));
                    assert_eq!(code(s.as_bytes()), expected, "{s}");
                }
            }
        }
    }

    #[test]
    fn duplicates_in_large_objects_are_found() {
        let mut s = String::from("{");
        for i in 0..1000 {
            s.push_str(&format!("\"k{i}\":{i},"));
        }
        s.push_str("\"K500\":1}");
        assert_eq!(code(s.as_bytes()), "case_fold_collision");
        let mut s = String::from("{");
        for i in 0..1000 {
            s.push_str(&format!("\"k{i}\":{i},"));
        }
        s.push_str("\"k999\":1}");
        assert_eq!(code(s.as_bytes()), "duplicate_key");
        let mut ok = String::from("{");
        for i in 0..1000 {
            ok.push_str(&format!("\"k{i}\":{{\"k{i}\":1}},"));
        }
        ok.push_str("\"z\":1}");
        assert_eq!(code(ok.as_bytes()), "ok");
    }

    #[test]
    fn same_key_in_sibling_and_nested_objects_is_fine() {
        parse_ok("{\"a\":{\"a\":1},\"b\":{\"a\":2},\"c\":[{\"a\":1},{\"a\":2}]}");
        assert_eq!(code(b"{\"a\":{\"b\":1,\"b\":1}}"), "duplicate_key");
        assert_eq!(
            code(b"[{\"b\":1},{\"b\":1,\"B\":1}]"),
            "case_fold_collision"
        );
    }

    #[test]
    fn depth_limit_is_exact() {
        let opts = ParseOptions { max_depth: 5 };
        let ok = "[[[[{\"a\":1}]]]]";
        assert!(parse(ok.as_bytes(), &opts).is_ok());
        let deep = "[[[[[[]]]]]]";
        assert_eq!(
            parse(deep.as_bytes(), &opts).unwrap_err().kind,
            ErrorKind::TooDeep
        );
        let huge = "[".repeat(1_000_000);
        assert_eq!(code(huge.as_bytes()), "too_deep");
        let zero = ParseOptions { max_depth: 0 };
        assert!(parse(b"1", &zero).is_ok());
        assert!(parse(b"[]", &zero).is_err());
    }

    #[test]
    fn tape_navigation() {
        let doc = parse_ok(
            "{\"a\":[1,{\"b\":\"x\\ny\"},[]],\"c\":\"plain\",\"d\":{},\"e\":null,\"f\":-1.5e3}",
        );
        let root = doc.root();
        assert_eq!(root.kind(), Kind::Object);
        assert_eq!(root.len(), 5);
        let keys: Vec<_> = root
            .entries()
            .map(|(k, _)| k.decode().into_owned())
            .collect();
        assert_eq!(keys, ["a", "c", "d", "e", "f"]);
        let a = root.get("a").unwrap();
        assert_eq!(a.len(), 3);
        let items: Vec<_> = a.items().map(|v| v.kind()).collect();
        assert_eq!(items, [Kind::Number, Kind::Object, Kind::Array]);
        let b = a.items().nth(1).unwrap().get("b").unwrap();
        assert_eq!(b.as_str().unwrap().decode(), "x\ny");
        assert_eq!(b.raw_text(), "\"x\\ny\"");
        assert!(root.get("c").unwrap().as_str().unwrap().eq_str("plain"));
        assert!(root.get("d").unwrap().is_empty());
        assert_eq!(root.get("e").unwrap().kind(), Kind::Null);
        assert_eq!(root.get("f").unwrap().raw_text(), "-1.5e3");
        assert!(root.get("missing").is_none());
        assert_eq!(root.subtree_end(), doc.node_count());
    }

    #[test]
    fn decodes_escapes() {
        let doc = parse_ok(r#"["\u0070assword", "a\\b\"c\/\b\f\n\r\t", "\ud83d\ude00\u00e9"]"#);
        let v: Vec<_> = doc
            .root()
            .items()
            .map(|v| v.as_str().unwrap().decode().into_owned())
            .collect();
        assert_eq!(
            v,
            ["password", "a\\b\"c/\u{8}\u{c}\n\r\t", "\u{1f600}\u{e9}"]
        );
    }

    #[test]
    fn swar_byte_classes_are_exact() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                for filler in [b'a', b'Z', 0x00, 0x7f, 0x80, 0xff] {
                    let mut bytes = [filler; 8];
                    bytes[pos] = b;
                    let v = u64::from_le_bytes(bytes);
                    let lower = lower_word(v).to_le_bytes();
                    let bad = unprintable_word(v).to_le_bytes();
                    assert_eq!(lower[pos], b.to_ascii_lowercase(), "{b:#x}");
                    assert_eq!(bad[pos] == 0x80, !(0x20..0x7f).contains(&b), "{b:#x}");
                }
            }
        }
    }

    #[test]
    fn key_hash_is_the_same_on_every_path() {
        let keys = [
            "",
            "a",
            "A",
            "id",
            "ID",
            "Name",
            "page_token",
            "PAGE_TOKEN",
            "abcdefgh",
            "ABCDEFGH",
            "abcdefghi",
            "0123456789abcdef",
            "0123456789ABCDEFx",
            "with space",
            "x~}|{",
        ];
        for key in keys {
            let lower = key.to_ascii_lowercase();
            let (expected, plain) = lower_hash(lower.as_bytes(), 0, lower.len());
            assert!(plain, "{key:?}");
            for tail in ["\":1}", "\""] {
                let src = format!("\"{key}{tail}");
                let (end, escaped, hash) = scan_key(src.as_bytes(), 1).unwrap();
                assert_eq!((end, escaped), (1 + key.len(), false));
                let (raw_hash, plain) = lower_hash(src.as_bytes(), 1, key.len());
                assert!(plain);
                assert_eq!(raw_hash, expected, "{key:?}");
                assert!(hash.is_none_or(|h| h == expected), "{key:?}");
            }
        }
        for unusual in ["caf\u{e9}", "tab\u{7f}", "\u{80}abcdefgh"] {
            let src = format!("\"{unusual}\":1, \"padding\": 2}}");
            let (_, _, hash) = scan_key(src.as_bytes(), 1).unwrap();
            assert_eq!(hash, None, "{unusual:?}");
            assert!(!lower_hash(src.as_bytes(), 1, unusual.len()).1);
        }
        // Equal after folding: one in place, one in the arena.
        assert_eq!(
            code(b"{\"Stra\\u00dfe\":1,\"strasse\":2}"),
            "case_fold_collision"
        );
        assert_eq!(
            code(b"{\"\\u017fecret\":1,\"SECRET\":2}"),
            "case_fold_collision"
        );
        assert_eq!(code(b"{\"k\":1,\"\\u212a\":2}"), "case_fold_collision");
        assert_eq!(
            code(b"{\"abcdefghij\":1,\"ABCDEFGHI\\u004a\":2}"),
            "case_fold_collision"
        );
        assert_eq!(
            code(b"{\"abcdefghij\":1,\"abcdefghi\\u006a\":2}"),
            "duplicate_key"
        );
        assert_eq!(code(b"{\"abcdefghij\":1,\"abcdefghi\\u006b\":2}"), "ok");
    }

    #[test]
    fn swar_scan_matches_bytewise_scan() {
        let mut input = Vec::new();
        for len in 0..40usize {
            for special in [b'"', b'\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xff] {
                for at in 0..=len {
                    input.clear();
                    input.extend(std::iter::repeat_n(b'a', len));
                    if at < len {
                        input[at] = special;
                    }
                    let expected = input
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                        .unwrap_or(input.len());
                    assert_eq!(skip_plain(&input, 0), expected);
                }
            }
        }
    }
}
