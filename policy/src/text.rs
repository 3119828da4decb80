//! Building the short strings of the hot path (shared-data keys, cluster names, ids) without
//! `format!`: its machinery costs the filter more wasm instructions than the copying itself.

/// The parts, joined.
pub fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// Appends `value` as `width` lower-case hex digits (the low `4 * width` bits).
pub fn push_hex(out: &mut String, value: u64, width: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for i in (0..width).rev() {
        let digit = value.checked_shr(4 * i).unwrap_or(0) & 0xf;
        out.push(char::from(DIGITS[digit as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_and_hex_agree_with_format() {
        assert_eq!(concat(&["warden:rl:", "vk:a", ":req"]), format!("warden:rl:{}:req", "vk:a"));
        assert_eq!(concat(&[]), "");
        for (value, width) in [(0u64, 12), (0x1234_5678_9abc, 12), (u64::MAX, 16), (255, 2), (0xabc, 1)] {
            let mut out = String::new();
            push_hex(&mut out, value, width);
            let full = format!("{value:0w$x}", w = width as usize);
            assert_eq!(out, full[full.len() - width as usize..], "{value:x} in {width}");
        }
    }
}
