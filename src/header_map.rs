//! The proxy-wasm header-map wire format, decoded without a way to panic: the host hands a map
//! as `count`, then `count` pairs of (name length, value length) as little-endian u32, then each
//! name and value followed by a NUL. Values are HTTP bytes, not necessarily UTF-8 (RFC 9110
//! allows obs-text, and Envoy passes it through): they are decoded lossily, which keeps every
//! ASCII character, so a token in them is still seen. The SDK's own `get_map` unwraps UTF-8 and
//! would trap the VM on such a request.

/// The pairs of a serialized header map; `None` when the bytes are not a well-formed map.
pub fn decode(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(raw) as usize)
    };
    let count = u32_at(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for n in 0..count {
        let sizes = 4 + n * 8;
        let (name_len, value_len) = (u32_at(sizes)?, u32_at(sizes + 4)?);
        let name_end = data.checked_add(name_len)?;
        let name = bytes.get(data..name_end)?;
        data = name_end.checked_add(1)?;
        let value_end = data.checked_add(value_len)?;
        let value = bytes.get(data..value_end)?;
        data = value_end.checked_add(1)?;
        pairs.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            out.extend((name.len() as u32).to_le_bytes());
            out.extend((value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend(*name);
            out.push(0);
            out.extend(*value);
            out.push(0);
        }
        out
    }

    #[test]
    fn decodes_pairs_and_keeps_ascii_of_non_utf8_values() {
        let bytes = encode(&[
            (b":path", b"/api/mcp"),
            (b"user-agent", b"caf\xe9 amt_"),
            (b"x-empty", b""),
        ]);
        let pairs = decode(&bytes).unwrap();
        assert_eq!(pairs[0], (":path".into(), "/api/mcp".into()));
        assert_eq!(pairs[1], ("user-agent".into(), "caf\u{fffd} amt_".into()));
        assert_eq!(pairs[2], ("x-empty".into(), String::new()));
        assert_eq!(decode(b""), Some(Vec::new()));
    }

    #[test]
    fn malformed_maps_are_refused_not_trusted() {
        let good = encode(&[(b"a", b"b"), (b"cc", b"dd")]);
        for cut in 1..good.len() - 1 {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(&u32::MAX.to_le_bytes()), None, "a huge count");
        let mut lying = good.clone();
        lying[4] = 200; // the first name claims 200 bytes
        assert_eq!(decode(&lying), None);
    }
}
