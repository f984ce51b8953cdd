//! Keys and values on the command line and on screen: parsed from text, hex or a file;
//! shown as text with the unprintable bytes escaped, or as JSON.

use std::fmt::Write;

use crate::Failure;

/// The bytes an argument names: `x:00cafe` and `X64'00cafe'` are hex, `@path` is the
/// file's bytes, anything else its UTF-8 text.
pub fn parse(arg: &str) -> Result<Vec<u8>, Failure> {
    if let Some(hex) = arg.strip_prefix("x:") {
        return from_hex(hex, arg);
    }
    if let Some(hex) = arg
        .strip_prefix("X64'")
        .and_then(|rest| rest.strip_suffix('\''))
    {
        return from_hex(hex, arg);
    }
    if let Some(path) = arg.strip_prefix('@') {
        return std::fs::read(path).map_err(|e| Failure::Usage(format!("{path}: read: {e}")));
    }
    Ok(arg.as_bytes().to_vec())
}

fn from_hex(hex: &str, arg: &str) -> Result<Vec<u8>, Failure> {
    let bad = || {
        Failure::Usage(format!(
            "{arg:?}: hex must be an even number of digits 0-9, a-f"
        ))
    };
    if !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// `bytes` as text: printable ASCII as it is, a backslash doubled, anything else `\xNN`.
pub fn show(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// `bytes` as hex digits.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Adds `bytes` to `o` as `name` (UTF-8 text) or `name_hex` (anything else).
pub fn to_json(o: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => o.insert(name.to_owned(), text.into()),
        Err(_) => o.insert(format!("{name}_hex"), hex(bytes).into()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        assert_eq!(parse("apple").ok(), Some(b"apple".to_vec()));
        assert_eq!(parse("x:00cafe").ok(), Some(vec![0, 0xca, 0xfe]));
        assert_eq!(parse("X64'00CAFE'").ok(), Some(vec![0, 0xca, 0xfe]));
        assert_eq!(parse("x:").ok(), Some(Vec::new()));
        for bad in ["x:0", "x:zz", "X64'0g'", "x:é0"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("@/nonexistent/file").is_err());
    }

    #[test]
    fn bytes_show() {
        assert_eq!(show(b"a b\\c"), "a b\\\\c");
        assert_eq!(show(&[0, b'x', 0xff, b'\n']), "\\x00x\\xff\\x0a");
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }
}
